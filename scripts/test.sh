#!/usr/bin/env bash
# Sets up, builds and runs every test: the README's test command, and what CI runs.
#   1. apt packages (scripts/setup.sh)
#   2. the llama.cpp peer from ../shared/tools when that folder exists (parity tests skip without it)
#   3. the loader fuzz test, the C ABI tests, the deepseek2 tests (their llama.cpp fixtures when
#      ../shared is there) and the tokenizer.json tests under ASan + UBSan (preset asan)
#   4. the concurrency test of the C ABI under ThreadSanitizer (preset tsan)
#   5. release build with warnings as errors (preset ci); the model and C ABI tests on the float
#      prefill GEMM this CPU does not take by default (BF16 or F32, ops/matmul.hpp; the types q8
#      takes go through q8 by default on AVX2 and AVX-512 VNNI CPUs, ops/q8_gemm.hpp); on AVX-512
#      CPUs the same tests on the AVX2 kernels (FRUGAL_MAX_CPU_ISA=avx2, ops/quant.hpp), and where
#      the CPU also has AVX-VNNI on those with it (FRUGAL_MAX_CPU_ISA=avx2_vnni); then the
#      whole ctest suite, bindings and out-of-tree consumers included (its summary is the last
#      thing printed)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${FRUGAL_JOBS:-2}
"$root/scripts/setup.sh"
# Node oracles for some tests (@huggingface/jinja); never fails, those cases skip without it.
"$root/scripts/setup-node-tools.sh"

shared=${FRUGAL_SHARED_DIR:-$root/../shared}
if [[ -x $shared/tools/setup-peer.sh ]]; then
    "$shared/tools/setup-peer.sh" || echo "test.sh: llama.cpp peer setup failed; parity tests will be skipped" >&2
else
    echo "test.sh: $shared/tools not found; tests that need ../shared will be skipped" >&2
fi

# ccache keys on paths relative to the checkout, so fresh clones elsewhere reuse the cache.
export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
cd "$root"
cmake --preset asan -DFRUGAL_SHARED_DIR="$shared" >/dev/null
asan_tests=(gguf_fuzz_test capi_test deepseek2_test tokenizer_hf_test)
cmake --build --preset asan -j "$jobs" --target "${asan_tests[@]}"
# Exit 77: no ../shared/tools or peer, and the fixture-based cases skip themselves.
tests/models/make_parity_fixtures.sh build/asan/tests/fixtures/parity "$shared" || [[ $? == 77 ]]
for t in "${asan_tests[@]}"; do
    echo "== $t (ASan + UBSan)"
    # the Hugging Face comparison runs node; the release suite has it
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 FRUGAL_SHARED_DIR="$shared" "build/asan/tests/$t" \
        --test-case-exclude="*Hugging Face's tokenizers agree*"
done

# The Python binding frees handles in random orders with the GC in between, 1000 times, against the
# ASan library. libstdc++ is preloaded with ASan so that C++ exceptions thrown inside libfrugal are
# intercepted in a python process; CPython's own exit-time leaks are not ours (detect_leaks=0).
echo "== Python binding lifetimes (ASan + UBSan)"
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" ASAN_OPTIONS=detect_leaks=0 \
    FRUGAL_LIBRARY="$root/build/asan/capi/libfrugal.so" FRUGAL_SHARED_DIR="$shared" \
    python3 "$root/bindings/python/tests/lifetime_asan.py"

# The C ABI's threading contract under ThreadSanitizer (docs/ABI.md).
cmake --preset tsan -DFRUGAL_SHARED_DIR="$shared" >/dev/null
cmake --build --preset tsan -j "$jobs" --target concurrency_test
echo "== concurrency_test (TSan)"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" FRUGAL_SHARED_DIR="$shared" build/tsan/tests/concurrency_test

cmake --preset ci -DFRUGAL_SHARED_DIR="$shared" >/dev/null
cmake --build --preset ci -j "$jobs"
# CPUs with native BF16 (AVX512-BF16, AMX) prefill the types q8 does not take through BF16 by
# default, others through F32; the other path runs too (emulated in F32 where the CPU has no
# BF16), so both are tested here.
other_prefill=bf16
grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && other_prefill=f32
echo "== model and C ABI tests with FRUGAL_PREFILL_GEMM=$other_prefill"
FRUGAL_PREFILL_GEMM=$other_prefill ctest --preset ci -j "$jobs" -L "models|capi" --output-on-failure
# An AVX-512 CPU runs them once more as an AVX2-only CPU would: every kernel choice, and oneDNN's,
# capped at AVX2, held to llama.cpp's logits the same way.
if grep -qw avx512f /proc/cpuinfo; then
    echo "== model and C ABI tests with FRUGAL_MAX_CPU_ISA=avx2"
    FRUGAL_MAX_CPU_ISA=avx2 ctest --preset ci -j "$jobs" -L "models|capi" -E '^consumers$' --output-on-failure
    # ... and as one with AVX-VNNI but no AVX-512 (Intel's client cores): the q8 kernel's VNNI build.
    if grep -qw avx_vnni /proc/cpuinfo; then
        echo "== model and C ABI tests with FRUGAL_MAX_CPU_ISA=avx2_vnni"
        FRUGAL_MAX_CPU_ISA=avx2_vnni ctest --preset ci -j "$jobs" -L "models|capi" -E '^consumers$' --output-on-failure
    fi
fi
ctest --preset ci -j "$jobs"
