#!/usr/bin/env bash
# Set up everything from nothing (uv, the locked virtualenv, helm) and run every check and test.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v uv >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
fi
export UV_PYTHON_DOWNLOADS=never  # use the machine's Python 3.11/3.12; never fetch one

# The Job's shell script is tested under every shell and awk it may meet: dash, bash and busybox (the packer
# image), mawk (Debian's awk), gawk and busybox awk.
if ! command -v busybox >/dev/null || ! command -v dash >/dev/null || ! command -v gawk >/dev/null \
    || ! command -v mawk >/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq busybox dash gawk mawk >/dev/null
fi

uv sync --locked --quiet
bash scripts/install-helm.sh
# Real packer and its Amazon plugin for the end-to-end container test (built once, cached in .tools/).
bash scripts/install-packer.sh
# Real promtool for the chart's alert rules (tests/deploy/test_monitoring.py; built once, cached in .tools/).
bash scripts/install-promtool.sh

echo "== ruff"
uv run ruff check .
uv run ruff format --check .
echo "== mypy --strict"
uv run mypy
echo "== CRD in sync with the models"
uv run python scripts/gen_crd.py --check
echo "== pytest"
uv run pytest "$@"
