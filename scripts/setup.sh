#!/usr/bin/env bash
# Installs the Debian 12 packages frugal needs to build and test, if any are missing.
# Idempotent; uses sudo when not root. FRUGAL_SKIP_APT=1 skips it (e.g. on another distro).
set -euo pipefail

packages=(
    build-essential cmake ninja-build ccache pkg-config git
    libeigen3-dev libdnnl-dev libfmt-dev doctest-dev   # the design's four
    ocl-icd-opencl-dev                                   # oneDNN's CMake config requires OpenCL (only a Recommends of libdnnl-dev)
    libcli11-dev                                         # CLI argument parsing
    libpcre2-dev                                         # byte-level BPE pre-tokenizer regexes (Unicode)
    libutf8proc-dev                                      # Unicode NFC for tokenizers that normalise (Qwen)
    libcurl4-openssl-dev libssl-dev                      # frugal pull: HTTPS download, SHA-256
    nlohmann-json3-dev                                   # tokenizer.json / tokenizer_config.json; test vectors
    abigail-tools                                        # tests: abidiff against the committed ABI baseline
    libsimde-dev                                         # tests: the AVX-512 kernels, emulated on any x86-64
    python3 python3-numpy                                # tests: local HTTP server, model generator
    python3-setuptools python3-wheel python3-venv        # tests: offline pip install of bindings/python
    golang-go                                            # bindings/go: the Go package's tests (cgo, Go 1.19)
)
# bindings/rust: Debian's cargo (Rust 1.63) unless a Rust toolchain (e.g. rustup's) is already there
command -v cargo >/dev/null 2>&1 || [[ -x $HOME/.cargo/bin/cargo ]] || packages+=(cargo)

if [[ "${FRUGAL_SKIP_APT:-0}" == 1 ]]; then exit 0; fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then exit 0; fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
