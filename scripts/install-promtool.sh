#!/usr/bin/env bash
# Put promtool (Prometheus' own rule checker) at .tools/bin/promtool (git-ignored), idempotently.
#
# tests/deploy/test_monitoring.py runs `promtool check rules` and `promtool test rules` on the PrometheusRule
# the chart renders, so the alerts are parsed by the same code Prometheus loads them with.
#
# Debian's `prometheus` package ships promtool (2.42 on bookworm, which every check here needs): installed with
# apt-get in about 10 s, it is linked in place. Only where apt-get cannot install it (no root, no Debian) is
# promtool built from source, which takes about 8 minutes on two cores the first time (PROMTOOL_FROM_SOURCE=1
# forces that route). The source build goes through the Go module proxy
# (the module's go.mod has no `replace` directives; a throwaway wrapper module requires the pinned version and
# starts from its go.sum). The proxy's checksum database pins the sources: a new upload cannot change what the
# tests run. Module v0.316.0 is Prometheus 3.16.0.
#
# The first build takes about 8 minutes on two cores; a rerun with the pinned binary in place does nothing, and
# a fresh clone on a machine that built it before relinks from the Go build cache in seconds.
set -euo pipefail

PROMETHEUS_MODULE="github.com/prometheus/prometheus"
PROMETHEUS_VERSION="v0.316.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${root}/.tools/bin"
promtool="${bin_dir}/promtool"

installed_version() {
    "${promtool}" --version 2>/dev/null | head -n 1 || true
}

wanted="promtool, version ${PROMETHEUS_VERSION} "
if [[ -x "${promtool}" && "$(installed_version)" == "${wanted}"* ]]; then
    echo "promtool ${PROMETHEUS_VERSION} already at ${promtool#"${root}"/}"
    exit 0
fi

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1
}

if [[ "${PROMTOOL_FROM_SOURCE:-0}" != "1" ]]; then
    if ! command -v promtool >/dev/null && command -v apt-get >/dev/null && [[ "$(id -u)" == "0" ]]; then
        echo "installing Debian's prometheus package for its promtool"
        # A fresh machine may have no package lists yet: update once if the first try fails.
        { apt_install prometheus || { apt-get update -qq >/dev/null && apt_install prometheus; }; } \
            || echo "apt-get could not install prometheus; building promtool from source" >&2
    fi
    if command -v promtool >/dev/null; then
        mkdir -p "${bin_dir}"
        ln -sfn "$(command -v promtool)" "${promtool}"
        echo "linked $(installed_version) at ${promtool#"${root}"/}"
        exit 0
    fi
fi

for tool in go python3; do
    command -v "${tool}" >/dev/null || { echo "install-promtool.sh needs ${tool}" >&2; exit 1; }
done

# shellcheck source=scripts/go-build-module.sh
source "${root}/scripts/go-build-module.sh"
echo "building ${PROMETHEUS_MODULE}/cmd/promtool@${PROMETHEUS_VERSION} (about 8 minutes the first time)"
mkdir -p "${bin_dir}"
go_build_module "${PROMETHEUS_MODULE}" "${PROMETHEUS_VERSION}" "${PROMETHEUS_MODULE}/cmd/promtool" "${promtool}" \
    "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}"
[[ "$(installed_version)" == "${wanted}"* ]] || { echo "built promtool does not report ${PROMETHEUS_VERSION}" >&2; exit 1; }
echo "installed $(installed_version) at ${promtool#"${root}"/}"
