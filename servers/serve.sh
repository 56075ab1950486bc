#!/usr/bin/env bash
# servers/serve.sh ENGINE RECIPE [loadgen serve options]: what servers/<engine>.sh call, the same
# code as `loadgen serve --engine ENGINE` (the loadgen on PATH, else python3 -m loadgen).
set -euo pipefail
engine="$1"; shift
if command -v loadgen >/dev/null; then
    exec loadgen serve --engine "$engine" "$@"
fi
exec python3 -m loadgen serve --engine "$engine" "$@"
