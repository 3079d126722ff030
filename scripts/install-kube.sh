#!/usr/bin/env bash
# Build a pinned Kubernetes control plane (kube-apiserver, kube-controller-manager, kubectl v1.31.0) and etcd
# (v3.5.21) into .tools/kube-v1.31.0-etcd-v3.5.21/bin/ (git-ignored), idempotently.
#
# tests/kube/ starts them on loopback as a real API server for the tests. Only package registries are
# reachable from CI, so all four come from source through the Go module proxy, built by go_build_module
# (scripts/go-build-module.sh): a throwaway wrapper module that requires the pinned release and starts from
# its go.sum, so the proxy's checksum database pins the sources and a new upload cannot change what is built.
#
# - k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/client-go, ...) with ./staging/...
#   directories, which a module from the proxy does not have: each becomes the published module k8s.io/<name>
#   v0.31.0 (the list comes from the upstream go.mod's replace directives). The three commands are built by
#   one `go build`, which compiles their common dependencies once. The version stamps are the ones the
#   upstream release build sets (hack/lib/version.sh), so `kube-apiserver --version` says v1.31.0.
# - etcd is the main package of go.etcd.io/etcd/server/v3; its ../api, ../client/... replaces are dropped and
#   the sibling versions its go.mod requires (v3.5.21) stand.
#
# Static builds (CGO_ENABLED=0), like the upstream releases, and reproducible: the same four files whatever
# the caches held. On two cores with empty Go module and build caches (a fresh machine) the build took 5
# minutes (about 750 MB of modules, 2.8 GB of build cache); with warm caches 20 s; a rerun with the pinned
# binaries in place does nothing.
set -euo pipefail

KUBE_MODULE="k8s.io/kubernetes"
KUBE_VERSION="v1.31.0"
ETCD_MODULE="go.etcd.io/etcd/server/v3"
ETCD_VERSION="v3.5.21"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${root}/.tools/kube-${KUBE_VERSION}-etcd-${ETCD_VERSION}/bin"

# Kubernetes publishes the staging modules of release v1.M.P as v0.M.P.
staging_version="v0.${KUBE_VERSION#v1.}"
kube_minor="${KUBE_VERSION#v1.}"
kube_minor="${kube_minor%%.*}"

KUBE_COMMANDS=(kube-apiserver kube-controller-manager kubectl)

first_line() {
    "$@" 2>/dev/null | head -n 1 || true
}

# reports NAME EXPECTED ARGS...: NAME is in bin_dir and the first line it prints for ARGS is EXPECTED.
reports() {
    local binary="${bin_dir}/$1" expected="$2"
    shift 2
    [[ -x "${binary}" && "$(first_line "${binary}" "$@")" == "${expected}" ]]
}

kube_ok() {
    reports kube-apiserver "Kubernetes ${KUBE_VERSION}" --version \
        && reports kube-controller-manager "Kubernetes ${KUBE_VERSION}" --version \
        && reports kubectl "Client Version: ${KUBE_VERSION}" version --client
}

etcd_ok() {
    reports etcd "etcd Version: ${ETCD_VERSION#v}" --version
}

report() {
    echo "${KUBE_COMMANDS[*]} ${KUBE_VERSION} and etcd ${ETCD_VERSION} $1 at ${bin_dir#"${root}"/}"
}

if kube_ok && etcd_ok; then
    report "already"
    exit 0
fi

for tool in go python3; do
    command -v "${tool}" >/dev/null || { echo "install-kube.sh needs ${tool}" >&2; exit 1; }
done

# shellcheck source=scripts/go-build-module.sh
source "${root}/scripts/go-build-module.sh"
mkdir -p "${bin_dir}"
started="${SECONDS}"
echo "building the kube binaries and etcd from the Go module proxy: about 5 minutes on a fresh two-core" \
    "machine (allow 10 on a slow one), 20 s with warm Go caches"

fail() {
    echo "install-kube.sh: $*" >&2
    exit 1
}

if ! kube_ok; then
    packages=()
    for command in "${KUBE_COMMANDS[@]}"; do
        packages+=("${KUBE_MODULE}/cmd/${command}")
    done
    echo "building ${KUBE_MODULE}@${KUBE_VERSION}: ${packages[*]#"${KUBE_MODULE}/"}"
    stamp=""
    for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        stamp+=" -X ${package}.gitVersion=${KUBE_VERSION} -X ${package}.gitMajor=1"
        stamp+=" -X ${package}.gitMinor=${kube_minor} -X ${package}.gitTreeState=clean"
    done
    go_build_module "${KUBE_MODULE}" "${KUBE_VERSION}" "${packages[*]}" "${bin_dir}/" "${stamp}" \
        "${staging_version}" || fail "building ${KUBE_MODULE}@${KUBE_VERSION} failed"
    kube_ok || fail "the built ${KUBE_COMMANDS[*]} do not all report ${KUBE_VERSION}"
fi

if ! etcd_ok; then
    echo "building ${ETCD_MODULE}@${ETCD_VERSION}"
    go_build_module "${ETCD_MODULE}" "${ETCD_VERSION}" "${ETCD_MODULE}" "${bin_dir}/etcd" \
        || fail "building ${ETCD_MODULE}@${ETCD_VERSION} failed"
    etcd_ok || fail "the built etcd does not report ${ETCD_VERSION}"
fi

report "installed in $((SECONDS - started)) s"
