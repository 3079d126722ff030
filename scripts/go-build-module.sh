# shellcheck shell=bash
# Sourced by the install-*.sh scripts that build a pinned tool from the Go module proxy (only package
# registries are reachable from CI). Needs go and python3.
#
# go_build_module MODULE VERSION PACKAGE OUTPUT [LDFLAGS]: build PACKAGE (MODULE or a package inside it) at
# MODULE@VERSION into OUTPUT, through a throwaway wrapper module that requires it, copies its own replace
# directives (without them the build picks other dependencies) and starts from its go.sum (which the
# proxy's checksum database already pins, so a new upload cannot change what is built).

go_build_module() {
    local module="$1" version="$2" package="$3" output="$4" ldflags="-s -w ${5:-}"
    local dir upstream upstream_mod upstream_dir
    dir="$(mktemp -d)"
    # Static binaries like the upstream releases; -mod=mod lets the wrapper's go.mod/go.sum be filled in.
    export CGO_ENABLED=0 GOFLAGS="-mod=mod" GOTOOLCHAIN="local"
    upstream="$(cd "${dir}" && go mod download -json "${module}@${version}")"
    upstream_mod="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"${upstream}")"
    upstream_dir="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' <<<"${upstream}")"
    (
        cd "${dir}" || exit 1
        go mod init "wrapper.local/${module##*/}" 2>/dev/null
        go mod edit -require="${module}@${version}"
        go mod edit -json "${upstream_mod}" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    rhs = new["Path"] + ("@" + new["Version"] if new.get("Version") else "")
    print(f"-replace={lhs}={rhs}")
' | xargs -r go mod edit
        cp "${upstream_dir}/go.sum" go.sum
        chmod u+w go.sum
        go build -trimpath -ldflags "${ldflags}" -o "${output}.tmp" "${package}"
    )
    rm -rf "${dir}"
    mv -f "${output}.tmp" "${output}"
}
