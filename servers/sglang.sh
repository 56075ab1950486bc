#!/usr/bin/env bash
# servers/sglang.sh RECIPE [options]: start a sglang recipe, keep it serving until Ctrl-C (e.g. servers/sglang.sh llama3.1-8b-eagle3 --dry-run)
exec "$(dirname "$0")/serve.sh" sglang "$@"
