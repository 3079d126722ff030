#!/usr/bin/env bash
# Build Metacontroller v4.17.2 into .tools/metacontroller-v4.17.2/ (git-ignored), idempotently:
# bin/metacontroller, and next to bin/ its CRDs as the release ships them (metacontroller-crds-v1.yaml, from
# manifests/production/ of the same source).
#
# tests/kube/ runs it against the tests' kube-apiserver, so the project's CompositeController is driven by the
# real controller. Its module is not served by the Go module proxy, so the source comes from
# ../shared/vendor/metacontroller-v4.17.2.tar.gz (a `git archive` of the tag; its sha256 is checked below and
# in ../shared/vendor/README.md) or, where that archive is absent, from a clone of the upstream tag (its commit
# is checked). Its dependencies are ordinary modules from the proxy, pinned by the go.sum inside the source.
#
# Built as the release is (goreleaser: CGO_ENABLED=0, `-s -w`, main.version set), with -trimpath and the local
# Go (GOTOOLCHAIN=local: no toolchain is downloaded; the module's `go` line needs Go 1.26.4 or newer). On two
# busy cores with empty Go caches the build took 2.5 minutes (210 MB of modules, 0.9 GB of build cache); with
# warm caches 3 s; a rerun with the binary in place does nothing. The result is moved into place only when
# complete.
set -euo pipefail

VERSION="v4.17.2"
COMMIT="76b818bdc67ba56570abe5f69f714d56c0ff5c52"
ARCHIVE_SHA256="71242194978649546c50f6970bc117b883699a46c66f4eb16298bcdbb8b722a3"
UPSTREAM="https://github.com/metacontroller/metacontroller.git"
CRDS="metacontroller-crds-v1.yaml"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
archive="${METACONTROLLER_ARCHIVE:-${root}/../shared/vendor/metacontroller-${VERSION}.tar.gz}"
dest="${root}/.tools/metacontroller-${VERSION}"

if [[ -x "${dest}/bin/metacontroller" && -f "${dest}/${CRDS}" ]]; then
    echo "metacontroller ${VERSION} already at ${dest#"${root}"/}"
    exit 0
fi

fail() {
    echo "install-metacontroller.sh: $*" >&2
    exit 1
}

command -v go >/dev/null || fail "needs go (1.26.4 or newer)"
started="${SECONDS}"
work="$(mktemp -d)"
trap 'rm -rf "${work}" "${dest}.tmp"' EXIT

if [[ -f "${archive}" ]]; then
    echo "metacontroller ${VERSION} from ${archive}"
    sum="$(sha256sum "${archive}" | cut -d' ' -f1)"
    [[ "${sum}" == "${ARCHIVE_SHA256}" ]] || fail "${archive}: sha256 ${sum}, expected ${ARCHIVE_SHA256}"
    tar -xzf "${archive}" -C "${work}"
    source_dir="${work}/metacontroller-${VERSION#v}"
else
    command -v git >/dev/null || fail "no ${archive}, and no git to clone ${UPSTREAM}"
    echo "no ${archive}: cloning ${UPSTREAM} at ${VERSION}"
    source_dir="${work}/metacontroller"
    git -c advice.detachedHead=false clone --quiet --depth 1 --branch "${VERSION}" "${UPSTREAM}" "${source_dir}" \
        || fail "cannot clone ${UPSTREAM} (no network?); put the archive at ${archive}"
    head="$(git -C "${source_dir}" rev-parse HEAD)"
    [[ "${head}" == "${COMMIT}" ]] || fail "tag ${VERSION} of ${UPSTREAM} is ${head}, expected ${COMMIT}"
fi
[[ -f "${source_dir}/go.mod" ]] || fail "no go.mod in ${source_dir}"

# The module's `go` line is a minimum; GOTOOLCHAIN=local turns a too-old Go into a clear error here instead of
# a download that CI cannot make.
needed="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "${source_dir}/go.mod")"
have="$(go env GOVERSION)"
have="${have#go}"
if [[ "$(printf '%s\n%s\n' "${needed}" "${have}" | sort -V | head -n 1)" != "${needed}" ]]; then
    fail "Metacontroller ${VERSION} needs Go ${needed} or newer (its go.mod); this Go is ${have}"
fi

echo "building metacontroller ${VERSION}: about 3 minutes on a fresh two-core machine, seconds with warm Go caches"
mkdir -p "${dest}.tmp/bin"
(
    cd "${source_dir}"
    export CGO_ENABLED=0 GOFLAGS="-mod=mod" GOTOOLCHAIN="local"
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION#v} -X main.commit=${COMMIT}" \
        -o "${dest}.tmp/bin/metacontroller" ./pkg/cmd/metacontroller
) || fail "go build of metacontroller ${VERSION} failed"
cp "${source_dir}/manifests/production/${CRDS}" "${dest}.tmp/${CRDS}"
rm -rf "${dest}"
mv "${dest}.tmp" "${dest}"
echo "metacontroller ${VERSION} installed at ${dest#"${root}"/} in $((SECONDS - started)) s"
