#!/usr/bin/env bash
# Build pinned packer and packer-plugin-amazon binaries into .tools/packer/ (git-ignored), idempotently.
#
# Only package registries are reachable from CI, so both come from source through the Go module proxy.
# Their go.mod files carry `replace` directives, which `go install module@version` refuses, so each is
# built from a throwaway wrapper module that requires the pinned version and copies those directives.
# The module proxy's checksum database pins the sources: a new upload cannot change what the tests run.
#
# Layout (all under .tools/packer/):
#   v1.11.2/packer                                        the packer binary
#   plugins/amazon/v1.3.4/packer-plugin-amazon            the plugin as built
#   plugins-home/github.com/hashicorp/amazon/packer-plugin-amazon_v1.3.4_x5.0_linux_amd64{,_SHA256SUM}
#                                                         the plugin installed for packer; export
#                                                         PACKER_PLUGIN_PATH=.tools/packer/plugins-home
#
# A full build takes about 10 minutes on two cores; reruns reuse the default Go build cache.
set -euo pipefail

PACKER_MODULE="github.com/hashicorp/packer"
PACKER_VERSION="v1.11.2"
PLUGIN_MODULE="github.com/hashicorp/packer-plugin-amazon"
PLUGIN_VERSION="v1.3.4"
PLUGIN_SOURCE="github.com/hashicorp/amazon"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${root}/.tools/packer"
packer="${tools}/${PACKER_VERSION}/packer"
plugin="${tools}/plugins/amazon/${PLUGIN_VERSION}/packer-plugin-amazon"
plugin_home="${tools}/plugins-home"

# Packer must never phone home or look for plugins elsewhere while this script runs it.
export CHECKPOINT_DISABLE=1
export PACKER_PLUGIN_PATH="${plugin_home}"

packer_ok() {
    [[ -x "${packer}" ]] && [[ "$("${packer}" version 2>/dev/null)" == "Packer ${PACKER_VERSION}" ]]
}

plugin_ok() {
    [[ -x "${plugin}" ]] && [[ "$("${plugin}" describe 2>/dev/null)" == *"\"version\":\"${PLUGIN_VERSION#v}\""* ]]
}

plugin_installed() {
    packer_ok && [[ "$("${packer}" plugins installed 2>/dev/null)" \
        == *"/${PLUGIN_SOURCE}/packer-plugin-amazon_${PLUGIN_VERSION}_x5."* ]]
}

report() {
    echo "packer ${PACKER_VERSION}: ${packer#"${root}"/}"
    echo "amazon plugin ${PLUGIN_VERSION}: ${plugin#"${root}"/}"
    echo "PACKER_PLUGIN_PATH=${plugin_home#"${root}"/}"
    "${packer}" plugins installed | sed "s|^${root}/|  |"
}

if packer_ok && plugin_ok && plugin_installed; then
    report
    exit 0
fi

for tool in go python3; do
    command -v "${tool}" >/dev/null || { echo "install-packer.sh needs ${tool}" >&2; exit 1; }
done

# shellcheck source=scripts/go-build-module.sh
source "${root}/scripts/go-build-module.sh"

# build MODULE VERSION OUTPUT: the main package at the root of MODULE@VERSION.
build() {
    echo "building $1@$2 (this takes a few minutes the first time)"
    go_build_module "$1" "$2" "$1" "$3"
}

if ! packer_ok; then
    mkdir -p "$(dirname "${packer}")"
    build "${PACKER_MODULE}" "${PACKER_VERSION}" "${packer}"
    packer_ok || { echo "built packer does not report ${PACKER_VERSION}" >&2; exit 1; }
fi

if ! plugin_ok; then
    mkdir -p "$(dirname "${plugin}")"
    build "${PLUGIN_MODULE}" "${PLUGIN_VERSION}" "${plugin}"
    plugin_ok || { echo "built amazon plugin does not report ${PLUGIN_VERSION}" >&2; exit 1; }
fi

# `plugins install --path` names the binary by packer's convention
# (packer-plugin-amazon_v1.3.4_x5.0_linux_amd64) and writes its _SHA256SUM file, without any network.
mkdir -p "${plugin_home}"
"${packer}" plugins install --path "${plugin}" "${PLUGIN_SOURCE}"
plugin_installed || { echo "packer does not list the installed amazon plugin" >&2; exit 1; }

report
