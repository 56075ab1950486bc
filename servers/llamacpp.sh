#!/usr/bin/env bash
# servers/llamacpp.sh RECIPE [options]: start a llamacpp recipe, keep it serving until Ctrl-C (e.g. servers/llamacpp.sh llama3.1-8b-draft --dry-run)
exec "$(dirname "$0")/serve.sh" llamacpp "$@"
