#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (CPU only) for loadgen's end-to-end tests, from the llama.cpp
# source that the llama-cpp-python sdist on PyPI vendors. About 8-10 minutes on two cores the first
# time; the result is cached, and a later call returns at once.
#
#   usage: scripts/build_llama_server.sh
#   env:   LOADGEN_LLAMA_CPP_PYTHON_VERSION  sdist version (default 0.3.36)
#          LOADGEN_LLAMA_DIR                 cache folder
#                                            (default ~/.cache/loadgen/llama-server-<version>)
#          LOADGEN_BUILD_JOBS                parallel compile jobs (default: nproc)
#          LOADGEN_GGML_NATIVE               ON (default): tuned for this CPU, so the cache only
#                                            suits this machine; OFF for a portable binary
#
# The cache folder gets the binary `llama-server`, the vocab-only GGUF `ggml-vocab-llama-bpe.gguf`
# (the Llama 3 tokenizer), the chat template `meta-llama-Llama-3.1-8B-Instruct.jinja`, the build
# log and, under src/, the server's source (tools/server, common) to look endpoints and flags up.
# The binary's path is the last line printed. Needs python3 with pip, cmake and a C++ compiler.
set -euo pipefail

version=${LOADGEN_LLAMA_CPP_PYTHON_VERSION:-0.3.36}
dir=${LOADGEN_LLAMA_DIR:-$HOME/.cache/loadgen/llama-server-$version}
vocab=ggml-vocab-llama-bpe.gguf
template=meta-llama-Llama-3.1-8B-Instruct.jinja

die() { echo "build_llama_server: error: $*" >&2; exit 1; }

# The cache is complete only when all three files are there (the binary is copied last).
if [[ -x $dir/llama-server && -f $dir/$vocab && -f $dir/$template ]]; then
    echo "$dir/llama-server"
    exit 0
fi

command -v cmake >/dev/null 2>&1 || die "cmake not found (install it, e.g. apt-get install cmake)"
cxx=${CXX:-}
if [[ -z $cxx ]]; then
    for c in c++ g++ clang++; do
        if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
    done
fi
[[ -n $cxx ]] && command -v "$cxx" >/dev/null 2>&1 \
    || die "no C++ compiler found (install g++ or clang++, or set CXX)"
command -v python3 >/dev/null 2>&1 || die "python3 not found"
python3 -m pip --version >/dev/null 2>&1 || die "pip not found for python3 (python3 -m pip)"

mkdir -p "$dir"
log=$dir/build.log
: >"$log"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    echo "build_llama_server: error: $* (log: $log); its last lines:" >&2
    tail -n 40 "$log" >&2
    exit 1
}

echo "building llama-server from llama-cpp-python==$version into $dir (~8-10 min on 2 cores; log: $log)" >&2
start=$(date +%s)

python3 -m pip download --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version" \
    >>"$log" 2>&1 || fail "could not download the llama-cpp-python==$version sdist from PyPI"
tar -xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work" >>"$log" 2>&1 \
    || fail "could not unpack the sdist"
src=$work/llama_cpp_python-$version/vendor/llama.cpp
[[ -f $src/CMakeLists.txt ]] || fail "the sdist holds no vendor/llama.cpp"

# LLAMA_USE_PREBUILT_UI=OFF: otherwise the build downloads the web UI. LLAMA_OPENSSL=OFF: the server
# only ever listens on loopback here. Static, so the binary can be moved on its own.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DGGML_NATIVE="${LOADGEN_GGML_NATIVE:-ON}" -DBUILD_SHARED_LIBS=OFF >>"$log" 2>&1 || fail "cmake configure failed"
cmake --build "$work/build" --target llama-server -j"${LOADGEN_BUILD_JOBS:-$(nproc)}" >>"$log" 2>&1 \
    || fail "compiling llama-server failed"

cp "$src/models/$vocab" "$dir/$vocab" || fail "the sdist has no models/$vocab"
cp "$src/models/templates/$template" "$dir/$template" || fail "the sdist has no models/templates/$template"
# Keep the server's source and its chat/argument code (3 MB), to read endpoints and flags from.
rm -rf "$dir/src" && mkdir -p "$dir/src/tools" \
    && cp -r "$src/tools/server" "$dir/src/tools/server" && cp -r "$src/common" "$dir/src/common" \
    || fail "could not keep the server source"
cp "$work/build/bin/llama-server" "$dir/llama-server.tmp" && mv "$dir/llama-server.tmp" "$dir/llama-server" \
    || fail "no llama-server binary after the build"

echo "built in $(( $(date +%s) - start )) s" >&2
echo "$dir/llama-server"
