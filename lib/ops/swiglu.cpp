#include "ops/swiglu.hpp"

// GCC 12's AVX-512 headers build "undefined" pass-through operands as `__m512 __Y = __Y;`, which
// -W(maybe-)uninitialized reports once inlined here (as in quant_avx512.cpp): a false positive in
// the compiler's own header, silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/quant.hpp"
#include "ops/simd_exp.hpp"
#include "util/profile.hpp"

namespace frugal::ops {
namespace {

void swiglu_portable(const float * gate, const float * up, float * out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

#if defined(__x86_64__) || defined(__i386__)
// silu(g) = g · σ(g) with t = e^-|g| (never overflows): σ(g) = 1 / (1 + t) for g >= 0 and
// t / (1 + t) below. Decode runs this on one thread per layer (n_ff is under the parallel
// threshold): libm's expf made it 1.3-2 % of a decode step.
__attribute__((target("avx2,fma"))) void swiglu_avx2(const float * gate, const float * up, float * out, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.f), one = _mm256_set1_ps(1.f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 t = detail::exp_nonpositive(_mm256_or_ps(g, sign)); // e^-|g|
        const __m256 num = _mm256_blendv_ps(one, t, g);                 // t where g's sign bit is set
        const __m256 s = _mm256_div_ps(num, _mm256_add_ps(one, t));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, s), _mm256_loadu_ps(up + i)));
    }
    swiglu_portable(gate + i, up + i, out + i, n - i);
}

// swiglu_avx2's operations on 16 lanes, its loop for the rest: the same results, at twice the
// rate (Zen 5, 1 thread: 2.6 -> 5.1 G elements/s; it was 3.6 % of a Q4_0 1.5B pp512).
__attribute__((target("avx512f,avx2,fma"))) void swiglu_avx512(const float * gate, const float * up, float * out,
                                                                int64_t n) {
    const __m512 one = _mm512_set1_ps(1.f);
    const __m512i sign = _mm512_set1_epi32(int32_t(0x80000000u));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate + i);
        const __m512 t = detail::exp_nonpositive(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(g), sign)));
        const __mmask16 negative = _mm512_cmplt_epi32_mask(_mm512_castps_si512(g), _mm512_setzero_si512()); // sign bit
        const __m512 num = _mm512_mask_mov_ps(one, negative, t);
        const __m512 s = _mm512_div_ps(num, _mm512_add_ps(one, t));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(g, s), _mm512_loadu_ps(up + i)));
    }
    swiglu_avx2(gate + i, up + i, out + i, n - i);
}
#endif

using kernel_fn = void (*)(const float *, const float *, float *, int64_t);

// The CPU checks and their test switch (detail::force_scalar) are the quant kernels'.
kernel_fn kernel_here() {
#if defined(__x86_64__) || defined(__i386__)
    if (!detail::avx2_active()) return swiglu_portable;
    return detail::avx512f_supported() ? swiglu_avx512 : swiglu_avx2;
#else
    return swiglu_portable;
#endif
}

constexpr int64_t k_parallel_from = 16384; // elements; fewer run on the calling thread

} // namespace

namespace detail {
std::vector<swiglu_kernel> swiglu_kernels_for_tests() {
#if defined(__x86_64__) || defined(__i386__)
    std::vector<swiglu_kernel> k;
    if (avx2_active()) k.push_back(swiglu_avx2);
    if (avx2_active() && avx512f_supported()) k.push_back(swiglu_avx512);
    return k;
#else
    return {};
#endif
}
} // namespace detail

void swiglu(const float * gate, const float * up, float * out, int64_t n, int n_threads) {
    const profile::scope timed(profile::op::activation);
    const kernel_fn kernel = kernel_here();
    constexpr int64_t k_chunk = 4096; // elements per task
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n > k_parallel_from)
    for (int64_t i = 0; i < n; i += k_chunk) kernel(gate + i, up + i, out + i, std::min(k_chunk, n - i));
}

void swiglu_rows(const float * gate, int64_t ld_gate, const float * up, int64_t ld_up, float * out, int64_t ld_out,
                 int64_t m, int64_t n, int n_threads) {
    const profile::scope timed(profile::op::activation);
    const kernel_fn kernel = kernel_here();
#pragma omp parallel for num_threads(n_threads) schedule(static) if (m * n > k_parallel_from)
    for (int64_t i = 0; i < m; ++i) kernel(gate + i * ld_gate, up + i * ld_up, out + i * ld_out, n);
}

} // namespace frugal::ops
