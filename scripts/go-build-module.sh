# shellcheck shell=bash
# Sourced by the install-*.sh scripts that build a pinned tool from the Go module proxy (only package
# registries are reachable from CI). Needs go and python3.
#
# go_build_module MODULE VERSION PACKAGES OUTPUT [LDFLAGS] [LOCAL_VERSION]: build PACKAGES (MODULE or
# packages inside it) at MODULE@VERSION into OUTPUT, through a throwaway wrapper module that requires it,
# copies its own replace directives (without them the build picks other dependencies) and starts from its
# go.sum (which the proxy's checksum database already pins, so a new upload cannot change what is built).
#
# PACKAGES is one package, or several separated by spaces: then they are built by one `go build` (sharing
# the work their common dependencies need) and OUTPUT is a directory that receives one binary per package,
# named after its last path element.
#
# A replace directive whose target is a directory of the upstream repository (kubernetes' `k8s.io/api =>
# ./staging/src/k8s.io/api`, etcd's `go.etcd.io/etcd/api/v3 => ../api`) cannot apply to a module from the
# proxy, whose zip holds no such directory. With LOCAL_VERSION each becomes OLD@LOCAL_VERSION (kubernetes
# publishes its staging directories as the modules k8s.io/<name> v0.<minor>.<patch>); without it they are
# dropped and the version the upstream go.mod requires stands (etcd requires its siblings at the release's
# versions).

go_build_module() {
    local module="$1" version="$2" packages="$3" output="$4" ldflags="-s -w ${5:-}"
    local local_version="${6:-}"
    local dir upstream upstream_mod upstream_dir binary
    local -a package_list
    read -r -a package_list <<<"${packages}"
    dir="$(mktemp -d)"
    # Static binaries like the upstream releases; -mod=mod lets the wrapper's go.mod/go.sum be filled in.
    export CGO_ENABLED=0 GOFLAGS="-mod=mod" GOTOOLCHAIN="local"
    # On failure, the JSON on stdout carries go's error.
    upstream="$(cd "${dir}" && go mod download -json "${module}@${version}")" \
        || { echo "${upstream}" >&2; rm -rf "${dir}"; return 1; }
    upstream_mod="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"${upstream}")"
    upstream_dir="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' <<<"${upstream}")"
    # Built next to OUTPUT, then moved in place: an interrupted build never leaves a half-written binary.
    rm -rf "${output%/}.tmp"
    # Every step says `|| exit 1`: errexit does not apply inside a subshell on the left of `||`.
    (
        cd "${dir}" || exit 1
        go mod init "wrapper.local/${module##*/}" 2>/dev/null || exit 1
        go mod edit -require="${module}@${version}" || exit 1
        go mod edit -json "${upstream_mod}" | python3 -c '
import json, sys
local_version = sys.argv[1]
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    if new.get("Version"):
        print("-replace=" + lhs + "=" + new["Path"] + "@" + new["Version"])
    elif local_version:  # a directory of the upstream repository: its published module instead
        print("-replace=" + lhs + "=" + old["Path"] + "@" + local_version)
' "${local_version}" | xargs -r go mod edit || exit 1
        cp "${upstream_dir}/go.sum" go.sum && chmod u+w go.sum || exit 1
        if [[ "${#package_list[@]}" -gt 1 ]]; then
            go build -trimpath -ldflags "${ldflags}" -o "${output%/}.tmp/" "${package_list[@]}"
        else
            go build -trimpath -ldflags "${ldflags}" -o "${output}.tmp" "${package_list[@]}"
        fi
    ) || { rm -rf "${dir}" "${output%/}.tmp"; return 1; }
    rm -rf "${dir}"
    if [[ "${#package_list[@]}" -gt 1 ]]; then
        mkdir -p "${output}"
        for binary in "${output%/}.tmp"/*; do
            mv -f "${binary}" "${output%/}/"
        done
        rmdir "${output%/}.tmp"
    else
        mv -f "${output}.tmp" "${output}"
    fi
}
