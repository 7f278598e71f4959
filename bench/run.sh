#!/usr/bin/env bash
# `make bench`: every benchmark in one run on this machine.  See bench/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/run.py "$@"
