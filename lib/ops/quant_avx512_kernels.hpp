// quant_avx512_kernels.hpp - AVX-512 (F, BW, VNNI) decode kernels, written once and compiled
// twice: into the library (quant_avx512.cpp, native instructions under a target attribute, run
// only where CPUID reports them) and into a test against SIMD Everywhere's portable AVX-512
// (tests/ops/quant_avx512_test.cpp), which checks them bit for bit against the AVX2 kernels on
// machines without AVX-512. The includer provides the intrinsics and defines:
//   FRUGAL_AVX512     the function attribute (a target("avx512...") list, or nothing);
//   FRUGAL_AVX512_NS  the namespace the kernels go into (distinct per includer: the two builds
//                     must not merge at link time).
// Private to lib/ops and its tests.
#pragma once

#include <cstddef>
#include <cstdint>

#include "frugal/dtype.hpp"

namespace FRUGAL_AVX512_NS {

using frugal::block_q8_0;
using frugal::k_qk;

// The AVX2 kernels' horizontal sum, in the same order (so the results match to the bit).
FRUGAL_AVX512 inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

FRUGAL_AVX512 inline float half(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

// 32 quants of block b and of block b + 1 in one register (b in the low 256 bits).
FRUGAL_AVX512 inline __m512i quant_pair(const block_q8_0 * b) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b[0].qs));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b[1].qs));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Each 32-bit lane: the sum of 4 consecutive products w·x (exact). vpdpbusd multiplies unsigned
// by signed bytes, so |w| meets x with w's sign (|w| <= 128, |x| <= 127): the same four-product
// sums the AVX2 kernels build with vpmaddubsw + vpmaddwd, which never saturate on these ranges.
FRUGAL_AVX512 inline __m512i dot_lanes(__m512i w, __m512i x) {
    const __m512i x_signed = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), x_signed);
}

// Q8_0 rows against one Q8_0 activation row: out[r] = <w row r, act> for r < rows, rows
// w_stride bytes apart, n elements each. Two blocks per step, block b in lanes 0-7 and b + 1 in
// lanes 8-15: exactly the AVX2 kernel's two accumulators (even and odd blocks), with the same
// scale products dw·dx and the same final sum, so the results are bit-identical to it. Rows go
// one after another, each prefetched 2 KiB ahead (see quant_avx2.cpp); the activation stays in L1.
FRUGAL_AVX512 inline void dot_rows_q8_0(const std::byte * w, size_t w_stride, int64_t rows, const void * act,
                                        int64_t n, float * out) {
    const auto * a = static_cast<const block_q8_0 *>(act);
    const int64_t nb = n / k_qk;
    for (int64_t r = 0; r < rows; ++r) {
        const auto * wb = reinterpret_cast<const block_q8_0 *>(w + size_t(r) * w_stride);
        __m512 acc = _mm512_setzero_ps(); // lanes 0-7: even blocks, 8-15: odd blocks
        int64_t ib = 0;
        for (; ib + 2 <= nb; ib += 2) {
            _mm_prefetch(reinterpret_cast<const char *>(wb + ib) + 2048, _MM_HINT_T0);
            const __m512i p = dot_lanes(quant_pair(wb + ib), quant_pair(a + ib));
            const __m512 scale = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(half(wb[ib].d) * half(a[ib].d)),
                                                      _mm512_set1_ps(half(wb[ib + 1].d) * half(a[ib + 1].d)));
            acc = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(p), acc);
        }
        if (ib < nb) { // an odd last block joins the even accumulator (lanes 0-7)
            const __m512i q = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(wb[ib].qs)));
            const __m512i x = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(a[ib].qs)));
            const __m512 sum = _mm512_fmadd_ps(_mm512_set1_ps(half(wb[ib].d) * half(a[ib].d)),
                                               _mm512_cvtepi32_ps(dot_lanes(q, x)), acc);
            acc = _mm512_mask_mov_ps(acc, 0x00FF, sum);
        }
        const __m256 even = _mm512_castps512_ps256(acc);
        const __m256 odd = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
        out[r] = hsum256(_mm256_add_ps(even, odd));
    }
}

FRUGAL_AVX512 inline float dot_q8_0(const void * w, const void * act, int64_t n) {
    float r;
    dot_rows_q8_0(static_cast<const std::byte *>(w), 0, 1, act, n, &r);
    return r;
}

} // namespace FRUGAL_AVX512_NS
