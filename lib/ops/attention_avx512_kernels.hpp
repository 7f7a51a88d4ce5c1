// attention_avx512_kernels.hpp - AVX-512 F attention kernels (attention_kernels.hpp), written once
// and compiled twice: into the library (attention_avx512.cpp, native instructions under a target
// attribute, used only where CPUID reports them) and into a test against SIMD Everywhere's
// portable AVX-512 (tests/common/simde_kernels.cpp), which the attention tests hold to the
// reference on any machine. attention_tiles.hpp's kernels on 16 lanes (head_dim and v_dim
// multiples of 16), in 4-row tiles (4 × 4 accumulators, 4 operands and a broadcast: 21 of the 32
// registers). The includer provides the intrinsics and defines:
//   FRUGAL_AVX512     the function attribute (a target("avx512f...") list, or nothing);
//   FRUGAL_AVX512_NS  the namespace the kernels go into (distinct per includer).
//   FRUGAL_AVX512_BF16  the same with AVX-512 BF16 (the BF16 products at the end, kernels_bf16).
// Private to lib/ops and its tests.
#pragma once

#include <cstdint>
#include <cstring>
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

// --- BF16 products (attention_params::bf16_products) ---------------------------------------------
// vdpbf16ps: 32 multiply-adds per instruction where an F32 FMA does 16, at the same rate on Zen 5.
// The includer also defines FRUGAL_AVX512_BF16 (FRUGAL_AVX512's list with avx512bf16); the
// library takes these only where the CPU has AVX-512 BF16 (kernels_bf16).
namespace FRUGAL_AVX512_NS {

// 16 floats rounded to BF16 (to nearest, ties to even), each in the high half of its lane with
// the low half zero: vcvtneps2bf16's rounding in integer steps (SIMDe 0.7.4 has no BF16
// conversions), for finite values.
FRUGAL_AVX512 inline __m512i bf16_high(__m512 x) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
    return _mm512_and_si512(rounded, _mm512_set1_epi32(int(0xFFFF0000u)));
}

// The same for one float, as the low 16 bits.
inline uint32_t bf16_bits(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
}

// attention_kernels::to_bf16_pairs: 16 floats at a time, each 64-bit lane's two BF16 values
// moved into its low word, then the 8 words narrowed out.
FRUGAL_AVX512 inline void to_bf16_pairs(const float * x, int64_t n, uint32_t * dst) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i r = bf16_high(_mm512_loadu_ps(x + i)); // lane 2j: x[2j] high, lane 2j + 1: x[2j + 1] high
        const __m256i pairs = _mm512_cvtepi64_epi32(_mm512_or_si512(_mm512_srli_epi64(r, 16), _mm512_srli_epi64(r, 32)));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(dst + i / 2), pairs);
    }
    for (; i < n; i += 2) dst[i / 2] = bf16_bits(x[i]) | bf16_bits(x[i + 1]) << 16;
}

// attention_kernels::interleave_bf16 (n a multiple of 16).
FRUGAL_AVX512 inline void interleave_bf16(const float * a, const float * b, int64_t n, uint32_t * dst) {
    for (int64_t e = 0; e < n; e += 16) {
        const __m512i low = _mm512_srli_epi32(bf16_high(_mm512_loadu_ps(a + e)), 16);
        _mm512_storeu_si512(dst + e, _mm512_or_si512(low, bf16_high(_mm512_loadu_ps(b + e))));
    }
}

FRUGAL_AVX512_BF16 inline __m512 dot_pairs(__m512 acc, __m512i a, __m512i b) {
    __m512bh a_bh, b_bh;
    std::memcpy(&a_bh, &a, sizeof a_bh);
    std::memcpy(&b_bh, &b, sizeof b_bh);
    return _mm512_dpbf16_ps(acc, a_bh, b_bh);
}

// c[r, 0 .. 16·NV) = (Accumulate: c +) Σ_t a[r · lda + t] · b[t · ldb, 0 .. 16·NV) over pairs t
// < steps, for an R-row tile: attention_tiles.hpp's product_tile on BF16 pairs, each step two
// of its steps. (A template of its own, as is the row loop below: vdpbf16ps needs the
// avx512bf16 target, which the F32 tiles, run on CPUs without it, must not carry.)
template <int R, int NV, bool Accumulate>
FRUGAL_AVX512_BF16 inline void product_tile_bf16(const uint32_t * a, int64_t lda, const uint32_t * b, int64_t ldb,
                                                 int64_t steps, float * c, int64_t ldc) {
    __m512 acc[R][NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) acc[r][i] = Accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * i) : _mm512_setzero_ps();
    for (int64_t t = 0; t < steps; ++t) {
        __m512i bv[NV];
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) bv[i] = _mm512_loadu_si512(b + t * ldb + 16 * i);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m512i w = _mm512_set1_epi32(int(a[r * lda + t]));
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) acc[r][i] = dot_pairs(acc[r][i], w, bv[i]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) _mm512_storeu_ps(c + r * ldc + 16 * i, acc[r][i]);
}

// The rows in 4-row tiles, then one tile of the 1 to 3 left.
template <int NV, bool Accumulate>
FRUGAL_AVX512_BF16 inline void product_rows_bf16(const uint32_t * a, int64_t lda, int64_t rows, const uint32_t * b,
                                                 int64_t ldb, int64_t steps, float * c, int64_t ldc) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) product_tile_bf16<4, NV, Accumulate>(a + r * lda, lda, b, ldb, steps, c + r * ldc, ldc);
    a += r * lda;
    c += r * ldc;
    switch (rows - r) {
    case 1: product_tile_bf16<1, NV, Accumulate>(a, lda, b, ldb, steps, c, ldc); break;
    case 2: product_tile_bf16<2, NV, Accumulate>(a, lda, b, ldb, steps, c, ldc); break;
    case 3: product_tile_bf16<3, NV, Accumulate>(a, lda, b, ldb, steps, c, ldc); break;
    default: break;
    }
}

FRUGAL_AVX512_BF16 inline void scores_kt_bf16(const uint32_t * q, int64_t rows, int64_t hd, const uint32_t * kt,
                                              int64_t /*n: the tile's k_kt_keys columns are all computed*/,
                                              float * s, int64_t ld_s) {
    static_assert(frugal::ops::detail::k_kt_keys == 4 * 16, "a transposed key tile is 4 vectors wide");
    product_rows_bf16<4, false>(q, hd / 2, rows, kt, frugal::ops::detail::k_kt_keys, hd / 2, s, ld_s);
}

FRUGAL_AVX512_BF16 inline void accumulate_bf16(const uint32_t * p, int64_t ld_p, int64_t rows, const uint32_t * vp,
                                               int64_t n, float * o, int64_t vd) {
    const int64_t steps = (n + 1) / 2;
    int64_t e = 0;
    for (; e + 64 <= vd; e += 64) product_rows_bf16<4, true>(p, ld_p, rows, vp + e, vd, steps, o + e, vd);
    for (; e < vd; e += 16) product_rows_bf16<1, true>(p, ld_p, rows, vp + e, vd, steps, o + e, vd);
}

// The set with the BF16 products, for CPUs with AVX-512 BF16.
inline constexpr frugal::ops::detail::attention_kernels kernels_bf16 = [] {
    frugal::ops::detail::attention_kernels k = kernels;
    k.scores_kt_bf16 = scores_kt_bf16;
    k.accumulate_bf16 = accumulate_bf16;
    k.to_bf16_pairs = to_bf16_pairs;
    k.interleave_bf16 = interleave_bf16;
    return k;
}();

} // namespace FRUGAL_AVX512_NS
