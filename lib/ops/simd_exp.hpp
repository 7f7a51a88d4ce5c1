// simd_exp.hpp - private to lib/ops: exponentials on 8 floats for the AVX2 kernels (attention's
// softmax, SwiGLU) and e^x on 16 for the AVX-512 SwiGLU, the same operations per lane (equal
// results). Each function carries its target attribute; callers check the CPU first.
#pragma once

#include <cstddef>

namespace frugal::ops::detail {
// 2^f = Σ (ln2)^i / i! · f^i, i = 7..0 (Horner order): degree 7, |f| <= 1/2, truncation error
// < 6e-9, below float rounding. Every width's exp2_nonpositive uses these.
inline constexpr float k_exp2_taylor[] = {1.525273380405984e-05f, 1.540353039338161e-04f, 1.333355814642844e-03f,
                                          9.618129107628477e-03f, 5.550410866482158e-02f, 2.402265069591007e-01f,
                                          6.931471805599453e-01f, 1.f};
// exp_nonpositive's range reduction x = n·ln2 + r: ln2 in a high part with 9 significant bits (its
// products with n are exact) and the rest; below k_exp_lowest it returns 0.
inline constexpr float k_log2e = 1.44269504088896341f, k_ln2_hi = 0.693359375f, k_ln2_lo = -2.12194440e-4f,
                       k_exp_lowest = -86.f;
} // namespace frugal::ops::detail

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define FRUGAL_SIMD_EXP_TARGET __attribute__((target("avx2,fma")))

namespace frugal::ops::detail {

// 2^n · 2^f for integral n in [-125, 0] and |f| <= 1/2: k_exp2_taylor's polynomial of 2^f with n
// added to its exponent field.
FRUGAL_SIMD_EXP_TARGET inline __m256 pow2_split(__m256 n, __m256 f) {
    __m256 p = _mm256_set1_ps(k_exp2_taylor[0]);
    for (size_t i = 1; i < sizeof k_exp2_taylor / sizeof k_exp2_taylor[0]; ++i)
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(k_exp2_taylor[i]));
    // p in [0.70, 1.42] times 2^n, n >= -125: the exponent field stays normal.
    const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

// 2^x for x <= 0; below 2^-125 it returns 0.
FRUGAL_SIMD_EXP_TARGET inline __m256 exp2_nonpositive(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-125.f);
    const __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_andnot_ps(tiny, pow2_split(n, _mm256_sub_ps(x, n)));
}

// e^x for x <= 0; below e^-86 (2^-124) it returns 0. The reduction x = n·ln2 + r keeps r exact
// to float precision (ln2 split in a high part whose products with n are exact and a low part),
// so the error is the polynomial's and one rounding of r·log2(e), about 1 ulp; scaling x by
// log2(e) first would lose up to 8e-6 relative near the bottom of the range.
FRUGAL_SIMD_EXP_TARGET inline __m256 exp_nonpositive(__m256 x) {
    const __m256 lo = _mm256_set1_ps(k_exp_lowest);
    const __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(k_log2e)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k_ln2_hi), x); // exact
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k_ln2_lo), r);
    const __m256 f = _mm256_mul_ps(r, _mm256_set1_ps(k_log2e));
    return _mm256_andnot_ps(tiny, pow2_split(n, f));
}

#define FRUGAL_SIMD_EXP_TARGET_512 __attribute__((target("avx512f,avx2,fma")))

// pow2_split and exp_nonpositive on 16 lanes, operation for operation (the constants above are
// shared; the steps are written per width because each function needs its own target attribute:
// a template over the register type would carry AVX-512's into the AVX2 instantiation, where the
// compiler could then emit EVEX code that an AVX2-only CPU cannot run).
FRUGAL_SIMD_EXP_TARGET_512 inline __m512 pow2_split(__m512 n, __m512 f) {
    __m512 p = _mm512_set1_ps(k_exp2_taylor[0]);
    for (size_t i = 1; i < sizeof k_exp2_taylor / sizeof k_exp2_taylor[0]; ++i)
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(k_exp2_taylor[i]));
    const __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
}

FRUGAL_SIMD_EXP_TARGET_512 inline __m512 exp_nonpositive(__m512 x) {
    const __m512 lo = _mm512_set1_ps(k_exp_lowest);
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(k_log2e)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k_ln2_hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k_ln2_lo), r);
    const __m512 f = _mm512_mul_ps(r, _mm512_set1_ps(k_log2e));
    return _mm512_maskz_mov_ps(__mmask16(~tiny), pow2_split(n, f));
}

#undef FRUGAL_SIMD_EXP_TARGET_512

} // namespace frugal::ops::detail

#undef FRUGAL_SIMD_EXP_TARGET
#endif
