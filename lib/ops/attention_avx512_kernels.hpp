// attention_avx512_kernels.hpp - AVX-512 F attention kernels (attention_kernels.hpp), written once
// and compiled twice: into the library (attention_avx512.cpp, native instructions under a target
// attribute, used only where CPUID reports them) and into a test against SIMD Everywhere's
// portable AVX-512 (tests/common/simde_kernels.cpp), which the attention tests hold to the
// reference on any machine. attention_tiles.hpp's kernels on 16 lanes (head_dim and v_dim
// multiples of 16), in 4-row tiles (4 × 4 accumulators, 4 operands and a broadcast: 21 of the 32
// registers). The includer provides the intrinsics and defines:
//   FRUGAL_AVX512     the function attribute (a target("avx512f...") list, or nothing);
//   FRUGAL_AVX512_NS  the namespace the kernels go into (distinct per includer).
// Private to lib/ops and its tests.
#pragma once

#include <cstdint>
#include <iterator>

#include "ops/simd_exp.hpp"

namespace FRUGAL_AVX512_NS {

struct vec {
    using reg = __m512;
    static constexpr int lanes = 16;
    static constexpr int tile_rows = 4;
    // 6 × 4 accumulators, a widened key and its scale: 26 registers.
    static constexpr int q8_tile_rows = 6;
    // attention_kernels::direct_rows. Measured at depth 4096 (2 threads, Zen 5, a kernel-only
    // bench, widened → direct): the 1.5B Qwen2's 28 layers (6 rows per kv head) 7.2-7.8 → 5.95 ms
    // a token, 2 tokens (12 rows) 8.9 → 6.1 ms, 3 (18) 11.2 → 8.9, 4 (24) 12.1 → 11.3, 8 (48)
    // 18.6 → 23.5; DeepSeek-V2's 6 layers of MLA (16 rows) 2.95-3.03 → 2.64-2.71 ms, 2 tokens (32
    // rows) 5.22 → 5.33; the Llama-8B shape's 8 layers, 6 tokens (24 rows) 13.8 → 13.0, 8 (32)
    // 16.4 → 16.0.
    static constexpr int64_t direct_rows = 24;
    // The same for Q8_0 (whose widening costs more per row tile), the 1.5B Qwen2's 28 layers:
    // 2 tokens (12 rows) direct 6.4 ms against 7.3 widened, 3 (18) 9.9 against 9.1, 4 (24) 13.8
    // against 10.4.
    static constexpr int64_t direct_rows_q8_0 = 12;
    // Prefill widens F16 keys straight into a transposed tile (gemm_pack's 16 × 16 transposes)
    // for scores_kt.
    static constexpr bool transposed_keys = true;
    FRUGAL_AVX512 static reg zero() { return _mm512_setzero_ps(); }
    FRUGAL_AVX512 static reg load(const float * p) { return _mm512_loadu_ps(p); }
    FRUGAL_AVX512 static void store(float * p, reg v) { _mm512_storeu_ps(p, v); }
    FRUGAL_AVX512 static reg set1(float x) { return _mm512_set1_ps(x); }
    FRUGAL_AVX512 static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    FRUGAL_AVX512 static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    FRUGAL_AVX512 static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
    FRUGAL_AVX512 static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    FRUGAL_AVX512 static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
    FRUGAL_AVX512 static float first(reg v) { return _mm512_cvtss_f32(v); }

    FRUGAL_AVX512 static __m256 low(reg v) { return _mm512_castps512_ps256(v); }
    FRUGAL_AVX512 static __m256 high(reg v) { // AVX-512 F only (no DQ)
        return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    }
    // The 8-lane reductions of attention.cpp's AVX2 set, after one add (max) of the halves.
    FRUGAL_AVX512 static float hsum(reg v) {
        const __m256 h = _mm256_add_ps(low(v), high(v));
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    }
    FRUGAL_AVX512 static float hmax(reg v) {
        const __m256 h = _mm256_max_ps(low(v), high(v));
        __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
    }
    FRUGAL_AVX512 static __m128 hsum4(const reg * a) {
        __m256 h[4];
        for (int i = 0; i < 4; ++i) h[i] = _mm256_add_ps(low(a[i]), high(a[i]));
        const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3])); // per 128-bit half
        return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    }

    // simd_exp.hpp's exp2_nonpositive on 16 lanes: 2^x for x <= 0, below 2^-125 zero.
    FRUGAL_AVX512 static reg exp2_nonpositive(reg x) {
        const reg lo = _mm512_set1_ps(-125.f);
        const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
        x = _mm512_max_ps(x, lo);
        const reg n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const reg f = _mm512_sub_ps(x, n);
        using frugal::ops::detail::k_exp2_taylor;
        reg p = _mm512_set1_ps(k_exp2_taylor[0]);
        for (size_t i = 1; i < std::size(k_exp2_taylor); ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(k_exp2_taylor[i]));
        const __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
        return _mm512_maskz_mov_ps(__mmask16(~tiny), _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e)));
    }

    FRUGAL_AVX512 static __mmask16 first_lanes(int64_t count) { return __mmask16((1u << count) - 1); }
    FRUGAL_AVX512 static reg load_tail(const float * p, int64_t count, float fill) {
        return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes(count), p);
    }
    FRUGAL_AVX512 static void store_tail(float * p, int64_t count, reg v) { _mm512_mask_storeu_ps(p, first_lanes(count), v); }

    FRUGAL_AVX512 static reg widen(const uint16_t * h) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(h)));
    }
    FRUGAL_AVX512 static reg half(uint16_t d) { return _mm512_cvtph_ps(_mm256_set1_epi16(short(d))); }
    // q · scale: exact in F32 for a Q8_0 block's F16 scale (an 11-bit significand times 8 bits).
    FRUGAL_AVX512 static reg widen_q8(const int8_t * q, reg scale) {
        const __m512i quants = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(q)));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(quants), scale);
    }
};

} // namespace FRUGAL_AVX512_NS

#define FRUGAL_TILES_TARGET FRUGAL_AVX512
#define FRUGAL_TILES_NS FRUGAL_AVX512_NS
#include "ops/attention_tiles.hpp"
#undef FRUGAL_TILES_TARGET
#undef FRUGAL_TILES_NS
