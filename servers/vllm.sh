#!/usr/bin/env bash
# servers/vllm.sh RECIPE [options]: start a vllm recipe, keep it serving until Ctrl-C (e.g. servers/vllm.sh llama3.1-8b-eagle3 --dry-run)
exec "$(dirname "$0")/serve.sh" vllm "$@"
