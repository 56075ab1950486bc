#!/usr/bin/env bash
# servers/trtllm.sh RECIPE [options]: start a trtllm recipe, keep it serving until Ctrl-C (e.g. servers/trtllm.sh llama3.1-8b-eagle3 --dry-run)
exec "$(dirname "$0")/serve.sh" trtllm "$@"
