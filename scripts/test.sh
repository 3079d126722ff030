#!/usr/bin/env bash
# Set up everything from nothing (uv, the locked virtualenv, helm) and run every check and test.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v uv >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
fi
export UV_PYTHON_DOWNLOADS=never  # use the machine's Python 3.11/3.12; never fetch one

# Tools some tests need beyond Python: every shell and awk the Job's script may meet (dash, bash and busybox
# in the packer image; mawk, Debian's awk; gawk; busybox awk), and jq and curl for the README walkthrough.
# They come from apt-get. Where apt-get is missing or not permitted, the tests that need a missing tool are
# skipped with that reason; CI (.ci/run) sets CI_REQUIRE_TOOLS=1, which makes a missing tool an error.
install_with_apt() {
    command -v apt-get >/dev/null || return 1
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
    else
        command -v sudo >/dev/null || return 1
        sudo apt-get update -qq && sudo apt-get install -y -qq "$@" >/dev/null
    fi
}
missing=()
for tool in busybox dash gawk mawk jq curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ] && ! install_with_apt "${missing[@]}"; then
    if [ "${CI_REQUIRE_TOOLS:-}" = 1 ]; then
        echo "error: could not install ${missing[*]} with apt-get, and CI_REQUIRE_TOOLS=1 needs them" >&2
        exit 1
    fi
    echo "note: ${missing[*]} not installed (apt-get missing or not permitted): the tests that need them are" \
        "skipped; install them to run everything" >&2
fi

uv sync --locked --quiet
bash scripts/install-helm.sh
# Real packer and its Amazon plugin for the end-to-end container test (built once, cached in .tools/).
bash scripts/install-packer.sh
# Real promtool for the chart's alert rules (tests/deploy/test_monitoring.py; built once, cached in .tools/).
bash scripts/install-promtool.sh
# etcd, kube-apiserver, kube-controller-manager and kubectl for tests/kube/ (built once, cached in .tools/).
bash scripts/install-kube.sh
# Metacontroller v4.17.2 for tests/kube/ (from ../shared/vendor's source archive; built once, cached in .tools/).
bash scripts/install-metacontroller.sh

echo "== ruff"
uv run ruff check .
uv run ruff format --check .
echo "== mypy --strict"
uv run mypy
echo "== CRD in sync with the models"
uv run python scripts/gen_crd.py --check
echo "== examples/ in sync with the hook's answers"
uv run python scripts/gen_examples.py --check
echo "== pytest"
uv run pytest "$@"
