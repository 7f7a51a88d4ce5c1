// attention_avx512_kernels.hpp - AVX-512 F attention kernels (attention_kernels.hpp), written once
// and compiled twice: into the library (attention_avx512.cpp, native instructions under a target
// attribute, used only where CPUID reports them) and into a test against SIMD Everywhere's
// portable AVX-512 (tests/ops/attention_avx512_test.cpp), which holds them to the reference on
// machines without AVX-512. The AVX2 kernels' register tiles with twice the lanes: head_dim and
// v_dim multiples of 16. The includer provides the intrinsics and defines:
//   FRUGAL_AVX512     the function attribute (a target("avx512f...") list, or nothing);
//   FRUGAL_AVX512_NS  the namespace the kernels go into (distinct per includer).
// Private to lib/ops and its tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "ops/attention_kernels.hpp"

namespace FRUGAL_AVX512_NS {

FRUGAL_AVX512 inline __m256 low_half(__m512 v) { return _mm512_castps512_ps256(v); }
FRUGAL_AVX512 inline __m256 high_half(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); // AVX-512 F only (no DQ)
}

// The four totals {Σ a[0], Σ a[1], Σ a[2], Σ a[3]}.
FRUGAL_AVX512 inline __m128 hsum4(const __m512 * a) {
    __m256 h[4];
    for (int i = 0; i < 4; ++i) h[i] = _mm256_add_ps(low_half(a[i]), high_half(a[i]));
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3])); // per 128-bit half
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

FRUGAL_AVX512 inline float hsum(__m512 v) {
    const __m256 h = _mm256_add_ps(low_half(v), high_half(v));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

FRUGAL_AVX512 inline float hmax(__m512 v) {
    const __m256 h = _mm256_max_ps(low_half(v), high_half(v));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 2^x for x <= 0, below 2^-125 zero: simd_exp.hpp's exp2_nonpositive on 16 lanes (the same
// degree-7 polynomial of 2^f, |f| <= 1/2, with n added to the exponent field).
FRUGAL_AVX512 inline __m512 exp2_nonpositive(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-125.f);
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.525273380405984e-05f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.540353039338161e-04f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.333355814642844e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866482158e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265069591007e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471805599453e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
    const __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
    const __m512 y = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
    return _mm512_maskz_mov_ps(__mmask16(~tiny), y);
}

// s[r, j] for an R × J tile: dot products along head_dim, R·J accumulators (16 for 4 × 4, with
// 4 q and 1 k vectors: 21 of the 32 registers).
template <int R, int J>
FRUGAL_AVX512 inline void scores_tile(const float * q, int64_t hd, const float * k, int64_t k_row, float * s,
                                      int64_t ld_s) {
    static_assert(J == 1 || J == 4);
    __m512 acc[R][J];
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
        #pragma GCC unroll 4
        for (int j = 0; j < J; ++j) acc[r][j] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d += 16) {
        __m512 qv[R];
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) qv[r] = _mm512_loadu_ps(q + r * hd + d);
        #pragma GCC unroll 4
        for (int j = 0; j < J; ++j) {
            const __m512 kv = _mm512_loadu_ps(k + j * k_row + d);
            #pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(qv[r], kv, acc[r][j]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
        if constexpr (J == 4)
            _mm_storeu_ps(s + r * ld_s, hsum4(acc[r]));
        else
            s[r * ld_s] = hsum(acc[r][0]);
    }
}

template <int J>
FRUGAL_AVX512 inline void scores_keys(const float * q, int64_t rows, int64_t hd, const float * k, int64_t k_row,
                                      float * s, int64_t ld_s) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) scores_tile<4, J>(q + r * hd, hd, k, k_row, s + r * ld_s, ld_s);
    switch (rows - r) {
    case 3: scores_tile<3, J>(q + r * hd, hd, k, k_row, s + r * ld_s, ld_s); break;
    case 2: scores_tile<2, J>(q + r * hd, hd, k, k_row, s + r * ld_s, ld_s); break;
    case 1: scores_tile<1, J>(q + r * hd, hd, k, k_row, s + r * ld_s, ld_s); break;
    default: break;
    }
}

FRUGAL_AVX512 inline void scores(const float * q, int64_t rows, int64_t hd, const float * k, int64_t k_row, int64_t n,
                                 float * s, int64_t ld_s) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) scores_keys<4>(q, rows, hd, k + j * k_row, k_row, s + j, ld_s);
    for (; j < n; ++j) scores_keys<1>(q, rows, hd, k + j * k_row, k_row, s + j, ld_s);
}

// The AVX2 kernel's steps on 16 lanes; the last partial vector of s is masked (its masked lanes
// count as −inf for the max and come out as 0).
FRUGAL_AVX512 inline void softmax_row(float * s, int64_t visible, int64_t n, float & m, float & l, float * o,
                                      int64_t vd) {
    const int64_t full = visible & ~int64_t(15);
    const __mmask16 tail = __mmask16((1u << (visible - full)) - 1);
    __m512 mv = _mm512_set1_ps(m);
    for (int64_t j = 0; j < full; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(s + j));
    if (tail)
        mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), tail,
                                                    s + full));
    const float mx = hmax(mv);
    mv = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < full; j += 16) {
        const __m512 y = exp2_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv));
        _mm512_storeu_ps(s + j, y);
        sum = _mm512_add_ps(sum, y);
    }
    if (tail) {
        const __m512 y = _mm512_maskz_mov_ps(tail, exp2_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + full), mv)));
        _mm512_mask_storeu_ps(s + full, tail, y);
        sum = _mm512_add_ps(sum, y);
    }
    std::fill(s + visible, s + n, 0.f);
    // α = 2^(m − m'): exactly 1 when the max did not move, 0 on the row's first block (m = −inf).
    const __m512 alpha = exp2_nonpositive(_mm512_set1_ps(m - mx));
    const float a = _mm512_cvtss_f32(alpha);
    l = l * a + hsum(sum);
    m = mx;
    if (a != 1.f)
        for (int64_t e = 0; e < vd; e += 16) _mm512_storeu_ps(o + e, _mm512_mul_ps(alpha, _mm512_loadu_ps(o + e)));
}

// o[r, 16·NV columns] += p · v for an R-row tile: the accumulators stay in registers over all n
// keys (4 × 4: 16 accumulators, 4 v vectors and a broadcast).
template <int R, int NV>
FRUGAL_AVX512 inline void accumulate_tile(const float * p, int64_t ld_p, const float * v, int64_t v_row, int64_t n,
                                          float * o, int64_t vd) {
    __m512 acc[R][NV];
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
        #pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) acc[r][i] = _mm512_loadu_ps(o + r * vd + 16 * i);
    for (int64_t j = 0; j < n; ++j) {
        __m512 vv[NV];
        #pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) vv[i] = _mm512_loadu_ps(v + j * v_row + 16 * i);
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            const __m512 w = _mm512_set1_ps(p[r * ld_p + j]);
            #pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) acc[r][i] = _mm512_fmadd_ps(w, vv[i], acc[r][i]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
        #pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) _mm512_storeu_ps(o + r * vd + 16 * i, acc[r][i]);
}

template <int NV>
FRUGAL_AVX512 inline void accumulate_cols(const float * p, int64_t ld_p, int64_t rows, const float * v, int64_t v_row,
                                          int64_t n, float * o, int64_t vd) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) accumulate_tile<4, NV>(p + r * ld_p, ld_p, v, v_row, n, o + r * vd, vd);
    switch (rows - r) {
    case 3: accumulate_tile<3, NV>(p + r * ld_p, ld_p, v, v_row, n, o + r * vd, vd); break;
    case 2: accumulate_tile<2, NV>(p + r * ld_p, ld_p, v, v_row, n, o + r * vd, vd); break;
    case 1: accumulate_tile<1, NV>(p + r * ld_p, ld_p, v, v_row, n, o + r * vd, vd); break;
    default: break;
    }
}

FRUGAL_AVX512 inline void accumulate(const float * p, int64_t ld_p, int64_t rows, const float * v, int64_t v_row,
                                     int64_t n, float * o, int64_t vd) {
    int64_t e = 0;
    for (; e + 64 <= vd; e += 64) accumulate_cols<4>(p, ld_p, rows, v + e, v_row, n, o + e, vd);
    for (; e < vd; e += 16) accumulate_cols<1>(p, ld_p, rows, v + e, v_row, n, o + e, vd);
}

// cols is a multiple of 16.
FRUGAL_AVX512 inline void widen(const uint16_t * src, int64_t src_row, int64_t n, int64_t cols, float * dst) {
    for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < cols; c += 16) {
            const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(src + j * src_row + c));
            _mm512_storeu_ps(dst + j * cols + c, _mm512_cvtph_ps(halves));
        }
}

inline constexpr frugal::ops::detail::attention_kernels kernels{16, scores, softmax_row, accumulate, widen};

} // namespace FRUGAL_AVX512_NS
