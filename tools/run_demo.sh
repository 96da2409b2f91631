#!/usr/bin/env bash
# `make demo` entry point: see tools/demo/run_demo.py for what it does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PY:-.venv/bin/python}" tools/demo/run_demo.py "$@"
