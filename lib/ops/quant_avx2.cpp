// quant_avx2.cpp - AVX2+FMA+F16C kernels. Every function that uses the instructions carries the
// target attribute (the file is built for baseline x86-64), and quant.cpp only calls them after
// checking the CPU. Integer sums are the same as the scalar path's; only float rounding differs.
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <type_traits>

#include "ops/quant_kernels.hpp"

#define FRUGAL_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace frugal::ops::detail {
namespace {

FRUGAL_AVX2 inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

FRUGAL_AVX2 inline float half(uint16_t h) { return _cvtsh_ss(h); }

FRUGAL_AVX2 inline __m256i bytes(uint8_t v) { return _mm256_set1_epi8(char(v)); }

// Fills the low 128-bit half with v's 16-bit lane lo and the high half with lane hi (lanes counted
// within each half): one byte shuffle with a constant mask, cheaper than moving each scale
// through a general register.
FRUGAL_AVX2 inline __m256i pick16(__m256i v, int lo, int hi) {
    return _mm256_shuffle_epi8(v, _mm256_set_m128i(_mm_set1_epi16(short(0x0100 + 0x0202 * hi)),
                                                   _mm_set1_epi16(short(0x0100 + 0x0202 * lo))));
}

// Decode reads every weight once per token, straight from DRAM. Rows are short (1-20 KiB), and
// the hardware prefetcher alone left about a fifth of the bandwidth unused on this project's
// machines (Q8_0 matvec, 2 threads: 12-13 GB/s without, 16-17 with; decode of the 1.5B Q8_0
// model +18-25 %), so the weight loops also ask for the line this far ahead of their reads.
// 4 KiB rather than 2: on Zen 5 (2 threads, alternating runs) F16 decode +3-4 %, repacked Q4_0
// +13 %; a core that reads faster needs more lines in flight to cover the same latency.
constexpr int k_prefetch_ahead = 4096;
FRUGAL_AVX2 inline void prefetch_ahead(const void * p) {
    _mm_prefetch(static_cast<const char *>(p) + k_prefetch_ahead, _MM_HINT_T0);
}
// The F32/F16/BF16 row loops (every CPU's, AVX-512 ones included) ask for it in L2 only: their
// activation is F32, 4 bytes an element, so a long row's (8960 wide: 35 KiB) does not fit in a
// 32 KiB L1 beside the weight lines prefetched into it, and each evicted the other. Zen 4, F16
// matvec 1536 x 8960 from DRAM, 2 threads: 19 -> 28 GB/s (rows of 1536 alike); 1.5B F16 decode
// +10-18 % (4 alternating pairs). The quantized loops' activations are a quarter of that; the
// AVX-512 ones, asked into L2 the same way on every row, decoded Q4_K_M and deepseek2-lite6 10 %
// slower, so they do so only on rows too long for L1 (prefetch_weights_to_l2, quant_kernels.hpp).
FRUGAL_AVX2 inline void prefetch_ahead_l2(const void * p) {
    _mm_prefetch(static_cast<const char *>(p) + k_prefetch_ahead, _MM_HINT_T1);
}

// --- F32 / F16 / BF16 ---------------------------------------------------------------------------
struct f32_vec {
    using storage = float;
    FRUGAL_AVX2 static __m256 load8(const float * p) { return _mm256_loadu_ps(p); }
    static float load(float v) { return v; }
};
struct f16_vec {
    using storage = uint16_t;
    FRUGAL_AVX2 static __m256 load8(const uint16_t * p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    }
    static float load(uint16_t h) { return fp16_to_fp32(h); }
};
struct bf16_vec {
    using storage = uint16_t;
    FRUGAL_AVX2 static __m256 load8(const uint16_t * p) {
        const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    }
    static float load(uint16_t h) { return bf16_to_fp32(h); }
};

template <class V>
FRUGAL_AVX2 float dot_plain(const void * w, const void * act, int64_t n) {
    const auto * ws = static_cast<const typename V::storage *>(w);
    const auto * as = static_cast<const typename V::storage *>(act);
    // Four accumulators hide the FMA latency.
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        prefetch_ahead_l2(ws + i);
        if constexpr (sizeof(*ws) == 4) prefetch_ahead_l2(ws + i + 16); // F32: 128 bytes per step
        for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_fmadd_ps(V::load8(ws + i + 8 * k), V::load8(as + i + 8 * k), acc[k]);
    }
    for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(V::load8(ws + i), V::load8(as + i), acc[0]);
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) sum += V::load(ws[i]) * V::load(as[i]);
    return sum;
}

FRUGAL_AVX2 void dequantize_f16(const void * src, float * dst, int64_t n) {
    const auto * s = static_cast<const uint16_t *>(src);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, f16_vec::load8(s + i));
    for (; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
}

FRUGAL_AVX2 void quantize_f16(const float * x, void * dst, int64_t n) {
    auto * d = static_cast<uint16_t *>(dst);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i *>(d + i), h);
    }
    for (; i < n; ++i) d[i] = fp32_to_fp16(x[i]);
}

FRUGAL_AVX2 void quantize_bf16(const float * x, void * dst, int64_t n) {
    auto * d = static_cast<uint16_t *>(dst);
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF);
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; ++k) {
            const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x + i + 8 * k));
            // Same rounding as fp32_to_bf16: add 0x7FFF plus the kept lsb, NaNs made quiet instead.
            const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
            const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
            const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
            r[k] = _mm256_blendv_epi8(rounded, quiet, is_nan);
        }
        // packus works within 128-bit lanes; the permute restores element order.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(d + i), packed);
    }
    for (; i < n; ++i) d[i] = fp32_to_bf16(x[i]);
}

// --- 32-element blocks: Q8_0 / Q4_0 / Q5_0 / IQ4_NL with Q8_0 activations, Q4_1 / Q5_1 with Q8_1
// load() gives the block's 32 quants as bytes in element order, signed except Q4_1's 0..15 and
// Q5_1's 0..31.

// Low nibbles of qs are elements 0..15, high nibbles 16..31: the 16 bytes in both halves, the
// high half's dwords shifted right by 4 (each byte's high nibble lands in its low one; what the
// next byte moves in above it is masked off).
FRUGAL_AVX2 inline __m256i nibbles(const uint8_t * qs) {
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i *>(qs)));
    return _mm256_and_si256(_mm256_srlv_epi32(raw, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), bytes(0xF));
}

// Byte e = 0x10 when bit e of qh (a little-endian u32) is set, else 0: Q5_0/Q5_1's fifth bits.
FRUGAL_AVX2 inline __m256i fifth_bits(const uint8_t * qh) {
    uint32_t h;
    std::memcpy(&h, qh, sizeof h);
    // Byte e takes qh byte e/8, then keeps bit e%8.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(h)),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), bytes(0x10));
}

struct q8_0_vec {
    using block = block_q8_0;
    using act = block_q8_0;
    FRUGAL_AVX2 static __m256i load(const block & b) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.qs));
    }
};
struct q4_0_vec {
    using block = block_q4_0;
    using act = block_q8_0;
    // The stored quants, 0..15 (the values are these − offset).
    static constexpr int offset = 8;
    FRUGAL_AVX2 static __m256i load_unsigned(const block & b) { return nibbles(b.qs); }
    FRUGAL_AVX2 static __m256i load(const block & b) { return _mm256_sub_epi8(load_unsigned(b), bytes(offset)); }
};
struct q5_0_vec {
    using block = block_q5_0;
    using act = block_q8_0;
    // The stored quants, 0..31 (the values are these − offset).
    static constexpr int offset = 16;
    FRUGAL_AVX2 static __m256i load_unsigned(const block & b) { return _mm256_or_si256(nibbles(b.qs), fifth_bits(b.qh)); }
    FRUGAL_AVX2 static __m256i load(const block & b) { return _mm256_sub_epi8(load_unsigned(b), bytes(offset)); }
};
struct q4_1_vec {
    using block = block_q4_1;
    using act = block_q8_1;
    FRUGAL_AVX2 static __m256i load(const block & b) { return nibbles(b.qs); }
};
struct q5_1_vec {
    using block = block_q5_1;
    using act = block_q8_1;
    FRUGAL_AVX2 static __m256i load(const block & b) { return _mm256_or_si256(nibbles(b.qs), fifth_bits(b.qh)); }
};
// IQ4_NL's 16 levels in each 128-bit half: a nibble indexes them with one byte shuffle.
FRUGAL_AVX2 inline __m256i iq4_nl_levels() {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i *>(k_iq4_nl_values)));
}

struct iq4_nl_vec {
    using block = block_iq4_nl;
    using act = block_q8_0;
    FRUGAL_AVX2 static __m256i load(const block & b) {
        return _mm256_shuffle_epi8(iq4_nl_levels(), nibbles(b.qs));
    }
};

// d · q for 32 quants held as bytes, into dst[0..32): the scalar dequantizers' single product.
FRUGAL_AVX2 inline void scale_bytes(__m256i q, float d, float * dst) {
    const __m256 vd = _mm256_set1_ps(d);
    const __m128i halves[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
    for (int h = 0; h < 2; ++h) {
        _mm256_storeu_ps(dst + 16 * h, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(halves[h]))));
        _mm256_storeu_ps(dst + 16 * h + 8,
                         _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(halves[h], 8)))));
    }
}

// Q4_1 and Q5_1 (the formats with an offset m) pair with Q8_1, whose s is what m multiplies.
template <class V>
constexpr bool has_min = std::is_same_v<typename V::act, block_q8_1>;

// The offsets' order every SIMD kernel of Q4_1 and Q5_1 keeps (the AVX-512 row loop too): lane j
// of four sums m · s_x of blocks 4g + j over the groups g in order, one fused multiply-add per
// group (the last group's missing blocks as zeros), and the total is (lane 0 + lane 1) + (lane 2
// + lane 3). Summed block by block into one float, the adds' latency bounded the AVX2 row loop
// (a Q4_1 matvec from DRAM at 19.6 GB/s, Q4_0's at 28.5).
//   Four fp16 values as floats, a in the lowest lane:
FRUGAL_AVX2 inline __m128 halves4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    return _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(a | b << 16 | c << 32 | d << 48)));
}
//   The offsets m of blocks ib..ib + 3 of w, zeros from block nb on:
template <class Block>
FRUGAL_AVX2 inline __m128 block_offsets4(const Block * w, int64_t ib, int64_t nb) {
    if (ib + 4 <= nb) return halves4(w[ib].m, w[ib + 1].m, w[ib + 2].m, w[ib + 3].m);
    const auto m = [&](int64_t i) -> uint64_t { return i < nb ? w[i].m : 0; };
    return halves4(m(ib), m(ib + 1), m(ib + 2), m(ib + 3));
}
//   The total:
FRUGAL_AVX2 inline float offsets_total(__m128 lanes) {
    const __m128 pairs = _mm_add_ps(lanes, _mm_movehdup_ps(lanes)); // lanes 0 + 1 and 2 + 3
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehl_ps(pairs, pairs)));
}

// Dequantizing feeds the prefill GEMM a slab of F32 rows per call (2-3 % of a prefill here, 1.5-2x
// faster than the scalar loops). Bit-identical to the scalar path (one product per element).
template <class V>
FRUGAL_AVX2 void dequantize_32(const void * src, float * dst, int64_t n) {
    static_assert(!has_min<V>);
    const auto * b = static_cast<const typename V::block *>(src);
    for (int64_t ib = 0; ib < n / k_qk; ++ib) scale_bytes(V::load(b[ib]), half(b[ib].d), dst + ib * k_qk);
}

// The dots below take M activation rows at once (act_stride bytes apart): the weights are
// unpacked once per block and reused M times, which matters once a few tokens share a row.
// dot<..., 1> is the single-row dot; every M runs the same per-row float operations, so a row's
// result does not depend on how it was batched.

// Block i of activation row k.
template <class B>
inline const B & act_block(const std::byte * act, size_t act_stride, int k, int64_t i) {
    return reinterpret_cast<const B *>(act + size_t(k) * act_stride)[i];
}

// t[k] = d_w · d_x · <w, x_k> for block ib (First), else t[k] + that in one fused multiply-add.
template <class V, int M, bool First>
FRUGAL_AVX2 inline void block_term_32(const typename V::block & w, const std::byte * act, size_t act_stride, int64_t ib,
                                      __m256 * t) {
    const __m256i q = V::load(w);
    // maddubs wants unsigned x signed: signed quants move their sign onto x (|w| <= 128 and
    // |x| <= 127, so a pair of products stays below the int16 limit).
    const __m256i q_u = has_min<V> ? q : _mm256_sign_epi8(q, q);
    const float dw = half(w.d);
    for (int k = 0; k < M; ++k) {
        const auto & a = act_block<typename V::act>(act, act_stride, k, ib);
        __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a.qs));
        if constexpr (!has_min<V>) x = _mm256_sign_epi8(x, q);
        const __m256 scale = _mm256_set1_ps(dw * half(a.d));
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q_u, x), _mm256_set1_epi16(1)));
        t[k] = First ? _mm256_mul_ps(scale, p) : _mm256_fmadd_ps(scale, p, t[k]);
    }
}

// The per-row float order every kernel of these types keeps (so a row's result does not depend on
// the kernel, the CPU or the batch): two accumulators, even and odd blocks. Each group of four
// blocks ib..ib + 3 adds one term to each, (s·p of ib) + s·p of ib + 2 (a product, then a fused
// multiply-add) and likewise ib + 1 and ib + 3; the last one to three blocks are fused into their
// parity's accumulator one by one; the result is hsum(even + odd). A group's terms do not wait on
// the accumulators, whose chains are one add per four blocks: with one fused multiply-add per
// block into them, the Q4_0 row loop on AVX-512 (Zen 5) waited on their latency.
template <class V, int M>
FRUGAL_AVX2 void dot_32(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    const auto * wb = static_cast<const typename V::block *>(w);
    const int64_t nb = n / k_qk;
    __m256 acc[2][M];
    for (int k = 0; k < M; ++k) acc[0][k] = acc[1][k] = _mm256_setzero_ps();
    int64_t ib = 0;
    for (; ib + 4 <= nb; ib += 4) {
        prefetch_ahead(wb + ib);
        prefetch_ahead(wb + ib + 2);
        for (int odd = 0; odd < 2; ++odd) {
            __m256 t[M];
            block_term_32<V, M, true>(wb[ib + odd], act, act_stride, ib + odd, t);
            block_term_32<V, M, false>(wb[ib + 2 + odd], act, act_stride, ib + 2 + odd, t);
            for (int k = 0; k < M; ++k) acc[odd][k] = _mm256_add_ps(acc[odd][k], t[k]);
        }
    }
    for (; ib < nb; ++ib) block_term_32<V, M, false>(wb[ib], act, act_stride, ib, acc[ib & 1]);
    __m128 offsets[M]; // Σ m_w · s_x (block_offsets4's order)
    for (int k = 0; k < M; ++k) offsets[k] = _mm_setzero_ps();
    if constexpr (has_min<V>)
        for (int64_t g = 0; g < nb; g += 4) {
            const __m128 m4 = block_offsets4(wb, g, nb);
            for (int k = 0; k < M; ++k) {
                const auto s = [&](int64_t i) -> uint64_t {
                    return i < nb ? act_block<typename V::act>(act, act_stride, k, i).s : 0;
                };
                offsets[k] = _mm_fmadd_ps(m4, halves4(s(g), s(g + 1), s(g + 2), s(g + 3)), offsets[k]);
            }
        }
    for (int k = 0; k < M; ++k) out[k] = hsum(_mm256_add_ps(acc[0][k], acc[1][k])) + offsets_total(offsets[k]);
}

// dot_32<V, 1> for `rows` weight rows against one activation row, with the activation's fp16
// scales converted once per call rather than once per row. Rows go one after another: reading two
// at once (sharing each activation block) was faster in cache but a third slower from DRAM,
// where it splits the one long stream the prefetcher follows into short interleaved ones. The
// per-row float operations (dot_32's order: even and odd accumulators, groups of four, the scale
// product dw·dx, the final sum, and Q4_1's and Q5_1's Σ m · s_x in block_offsets4's order) are
// dot_32's, so the results are bit-identical.
template <class V>
FRUGAL_AVX2 void dot_rows_32(const std::byte * w, size_t w_stride, int64_t rows, const void * act, int64_t n,
                             float * out) {
    using block = typename V::block;
    const auto * a = static_cast<const typename V::act *>(act);
    const int64_t nb = n / k_qk;
    constexpr int64_t k_max_blocks = 1024; // K <= 32768 (the widest model matrix is ~19K)
    if (nb > k_max_blocks) {
        for (int64_t r = 0; r < rows; ++r) dot_32<V, 1>(w + size_t(r) * w_stride, static_cast<const std::byte *>(act), 0, n, out + r);
        return;
    }
    float dx[k_max_blocks], sx[has_min<V> ? k_max_blocks + 4 : 1]; // sx: zeros after the last block
    for (int64_t ib = 0; ib < nb; ++ib) dx[ib] = half(a[ib].d);
    if constexpr (has_min<V>) {
        for (int64_t ib = 0; ib < nb; ++ib) sx[ib] = half(a[ib].s);
        std::fill_n(sx + nb, 4, 0.f);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    // Q4_0 and Q5_0 multiply their quants as stored (0..15, 0..31: unsigned as vpmaddubsw wants
    // them; no sign trick, whose two vpsignb made the loop compute-bound: Q4_0 in cache on a Zen 5,
    // 1 thread, 15.7 → 19 GB/s) and add each block's −offset · Σx back, per int32 lane as the
    // products land, from a table made once per call: the same exact integer sums as the signed
    // quants give.
    constexpr bool unsigned_quants = std::is_same_v<V, q4_0_vec> || std::is_same_v<V, q5_0_vec>;
    alignas(32) int32_t minus_offset_x[unsigned_quants ? k_max_blocks * 8 : 8];
    if constexpr (unsigned_quants)
        for (int64_t ib = 0; ib < nb; ++ib) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a[ib].qs));
            _mm256_store_si256(reinterpret_cast<__m256i *>(minus_offset_x + 8 * ib),
                               _mm256_madd_epi16(_mm256_maddubs_epi16(bytes(V::offset), x), _mm256_set1_epi16(-1)));
        }
    // <w, x> for block ib as floats, and its scale dw·dx.
    const auto sums = [&](const block & wb, int64_t ib) FRUGAL_AVX2 {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a[ib].qs));
        __m256i p;
        if constexpr (has_min<V>) { // 0..31 as stored, no offset
            p = _mm256_madd_epi16(_mm256_maddubs_epi16(V::load(wb), x), ones);
        } else if constexpr (unsigned_quants) {
            p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(V::load_unsigned(wb), x), ones),
                                 _mm256_load_si256(reinterpret_cast<const __m256i *>(minus_offset_x + 8 * ib)));
        } else {
            const __m256i q = V::load(wb);
            p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)), ones);
        }
        return _mm256_cvtepi32_ps(p);
    };
    const auto scale = [&](const block & wb, int64_t ib) FRUGAL_AVX2 { return _mm256_set1_ps(half(wb.d) * dx[ib]); };
    for (int64_t r = 0; r < rows; ++r) { // dot_32's float order
        const auto * w0 = reinterpret_cast<const block *>(w + size_t(r) * w_stride);
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        __m128 offsets = _mm_setzero_ps(); // Q4_1, Q5_1: Σ m · s_x (block_offsets4's order)
        int64_t ib = 0;
        for (; ib + 4 <= nb; ib += 4) {
            prefetch_ahead(w0 + ib);
            prefetch_ahead(w0 + ib + 2);
            // The four blocks' scales dw·dx at once: converted one by one, through general
            // registers, they took a fifth of the IQ4_NL loop's time in cache.
            const __m256 s4 = _mm256_castps128_ps256(
                _mm_mul_ps(halves4(w0[ib].d, w0[ib + 1].d, w0[ib + 2].d, w0[ib + 3].d), _mm_loadu_ps(dx + ib)));
            const auto lane = [&](int k) FRUGAL_AVX2 { return _mm256_permutevar8x32_ps(s4, _mm256_set1_epi32(k)); };
            for (int odd = 0; odd < 2; ++odd) {
                const int64_t i = ib + odd, j = ib + 2 + odd;
                const __m256 first = _mm256_mul_ps(lane(odd), sums(w0[i], i));
                acc[odd] = _mm256_add_ps(acc[odd], _mm256_fmadd_ps(lane(2 + odd), sums(w0[j], j), first));
            }
            if constexpr (has_min<V>) offsets = _mm_fmadd_ps(block_offsets4(w0, ib, nb), _mm_loadu_ps(sx + ib), offsets);
        }
        if constexpr (has_min<V>)
            if (ib < nb) offsets = _mm_fmadd_ps(block_offsets4(w0, ib, nb), _mm_loadu_ps(sx + ib), offsets);
        for (; ib < nb; ++ib) acc[ib & 1] = _mm256_fmadd_ps(scale(w0[ib], ib), sums(w0[ib], ib), acc[ib & 1]);
        out[r] = hsum(_mm256_add_ps(acc[0], acc[1])) + offsets_total(offsets);
    }
}

// --- Q4_0 repacked (dtype.hpp) with Q8_0 activations -------------------------------------------
// One 256-bit load holds two blocks' nibbles: block b in the low 128 bits, b + 1 in the high ones.
// Low nibbles are elements 0..15 of each block and high nibbles 16..31, so they meet the two
// activation blocks' halves regrouped the same way (one lane permute per activation pair, done
// once per call in dot_rows): no cross-lane unpack per weight block. One vcvtph2ps converts eight
// blocks' scales. A pair's products land in int32 lanes 0..3 (block b) and 4..7 (block b + 1),
// each lane scaled by its block's dw·dx.

constexpr int64_t k_scale_group = 8; // blocks whose fp16 scales one conversion covers

// Activation blocks a[0], a[1] (a[1] absent: zeros) regrouped as a nibble pair's lanes meet them.
struct x_pair {
    __m256i lo, hi; // elements 0..15 of both blocks, elements 16..31 of both blocks
};
FRUGAL_AVX2 inline x_pair regroup(const block_q8_0 * a, bool both) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a[0].qs));
    const __m256i x1 = both ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a[1].qs)) : _mm256_setzero_si256();
    return {_mm256_permute2x128_si256(x0, x1, 0x20), _mm256_permute2x128_si256(x0, x1, 0x31)};
}

// Nibbles of blocks b and b + 1 (b + 1 absent: zeros).
FRUGAL_AVX2 inline __m256i nibble_pair(const uint8_t * qs, bool both) {
    return both ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(qs))
                : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i *>(qs)));
}

// count (<= 8) fp16 values as floats, zeros after them.
FRUGAL_AVX2 inline __m256 load_halves(const uint16_t * h, int64_t count) {
    if (count >= k_scale_group) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(h)));
    uint16_t padded[k_scale_group] = {};
    std::memcpy(padded, h, size_t(count) * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(padded)));
}

// Pair j's lane scales out of a group's eight block scales: s[2j] in lanes 0..3, s[2j + 1] in 4..7.
FRUGAL_AVX2 inline __m256 pair_scales(__m256 s8, int j) {
    return _mm256_permutevar8x32_ps(s8, _mm256_add_epi32(_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_set1_epi32(2 * j)));
}

FRUGAL_AVX2 void dequantize_q4_0r(const void * src, float * dst, int64_t n) {
    const int64_t nb = n / k_qk;
    const uint16_t * d = repacked_scales(src);
    const uint8_t * qs = repacked_nibbles(dtype::q4_0_repacked, src, nb);
    for (int64_t ib = 0; ib < nb; ++ib) {
        uint16_t h;
        std::memcpy(&h, d + ib, sizeof h);
        scale_bytes(_mm256_sub_epi8(nibbles(qs + 16 * ib), bytes(8)), half(h), dst + ib * k_qk);
    }
}

// s8[k] = dw·dx for the scale group's blocks g .. g + count of activation row k < M (zeros past
// count): the lane scales of a repacked row's pairs.
template <int M>
FRUGAL_AVX2 inline void group_scales(const uint16_t * dw, int64_t g, int64_t count, const std::byte * act,
                                     size_t act_stride, __m256 * s8) {
    const __m256 dw8 = load_halves(dw + g, count);
    for (int k = 0; k < M; ++k) {
        uint16_t dx[k_scale_group];
        for (int64_t i = 0; i < count; ++i) dx[i] = act_block<block_q8_0>(act, act_stride, k, g + i).d;
        s8[k] = _mm256_mul_ps(dw8, load_halves(dx, count));
    }
}

// The repacked layouts' dots (dot_q4_0r, dot_q5_0r, dot_iq4_nlr): out[k] for M activation rows
// against one row of nb blocks at w. Per scale group g: the M rows' lane scales dw·dx
// (group_scales), then group(g, count, s8, even, odd) adds the group's products, pairs
// alternating between even[k] and odd[k], as the row loops' frame (repacked_rows) does.
template <int M, class Group>
FRUGAL_AVX2 inline void repacked_dot(const void * w, const std::byte * act, size_t act_stride, int64_t nb, float * out,
                                     Group group) {
    const uint16_t * dw = repacked_scales(w);
    __m256 even[M], odd[M];
    for (int k = 0; k < M; ++k) even[k] = odd[k] = _mm256_setzero_ps();
    for (int64_t g = 0; g < nb; g += k_scale_group) {
        const int64_t count = std::min(k_scale_group, nb - g);
        __m256 s8[M];
        group_scales<M>(dw, g, count, act, act_stride, s8);
        group(g, count, s8, even, odd);
    }
    for (int k = 0; k < M; ++k) out[k] = hsum(_mm256_add_ps(even[k], odd[k]));
}

// acc[k] += pair b's products with activation row k, scaled per lane by s8[k]'s pair j (dot_32's
// sign trick: weights are q − 8, their signs moved onto x for maddubs).
template <int M>
FRUGAL_AVX2 inline void q4_0r_pair(const uint8_t * qs, int64_t b, bool both, int j, const std::byte * act,
                                   size_t act_stride, const __m256 * s8, __m256 * acc) {
    prefetch_ahead(qs + 16 * b);
    const __m256i v = nibble_pair(qs + 16 * b, both);
    const __m256i q_lo = _mm256_sub_epi8(_mm256_and_si256(v, bytes(0xF)), bytes(8));
    const __m256i q_hi = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 4), bytes(0xF)), bytes(8));
    const __m256i u_lo = _mm256_sign_epi8(q_lo, q_lo), u_hi = _mm256_sign_epi8(q_hi, q_hi);
    for (int k = 0; k < M; ++k) {
        const x_pair x = regroup(&act_block<block_q8_0>(act, act_stride, k, b), both);
        const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(u_lo, _mm256_sign_epi8(x.lo, q_lo)),
                                             _mm256_maddubs_epi16(u_hi, _mm256_sign_epi8(x.hi, q_hi)));
        const __m256i p = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
        acc[k] = _mm256_fmadd_ps(pair_scales(s8[k], j), _mm256_cvtepi32_ps(p), acc[k]);
    }
}

// M activation rows. Pairs alternate between two accumulators per row (even pairs, odd pairs).
template <int M>
FRUGAL_AVX2 void dot_q4_0r(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    const int64_t nb = n / k_qk;
    const uint8_t * qs = repacked_nibbles(dtype::q4_0_repacked, w, nb);
    repacked_dot<M>(w, act, act_stride, nb, out,
                    [&](int64_t g, int64_t count, const __m256 * s8, __m256 * even, __m256 * odd) FRUGAL_AVX2 {
                        if (count == k_scale_group) {
                            q4_0r_pair<M>(qs, g, true, 0, act, act_stride, s8, even);
                            q4_0r_pair<M>(qs, g + 2, true, 1, act, act_stride, s8, odd);
                            q4_0r_pair<M>(qs, g + 4, true, 2, act, act_stride, s8, even);
                            q4_0r_pair<M>(qs, g + 6, true, 3, act, act_stride, s8, odd);
                        } else {
                            for (int j = 0; 2 * j < count; ++j)
                                q4_0r_pair<M>(qs, g + 2 * j, 2 * j + 1 < count, j, act, act_stride, s8,
                                              j & 1 ? odd : even);
                        }
                    });
}

// times · Σ x per int32 lane of a regrouped activation pair (the lanes its products land in).
FRUGAL_AVX2 inline __m256i lane_sums(const x_pair & x, uint8_t times) {
    return _mm256_madd_epi16(
        _mm256_add_epi16(_mm256_maddubs_epi16(bytes(times), x.lo), _mm256_maddubs_epi16(bytes(times), x.hi)),
        _mm256_set1_epi16(1));
}

// A pair of blocks' quants as their nibble registers: elements 0..15 of both blocks (lo), 16..31 (hi).
struct q_pair {
    __m256i lo, hi;
};

// Row loop's pair: nibbles left unsigned, Σ (q − 8)·x per lane taken as Σ q·x − 8·Σ x.
FRUGAL_AVX2 inline q_pair q4_0r_unsigned_pair(const uint8_t * qs, int64_t b, bool both) {
    prefetch_ahead(qs + 16 * b);
    const __m256i v = nibble_pair(qs + 16 * b, both);
    return {_mm256_and_si256(v, bytes(0xF)), _mm256_and_si256(_mm256_srli_epi16(v, 4), bytes(0xF))};
}
FRUGAL_AVX2 inline __m256 q4_0r_rows_fma(const q_pair & q, const x_pair & x, __m256i x_sums8, __m256 scale, __m256 acc) {
    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(q.lo, x.lo), _mm256_maddubs_epi16(q.hi, x.hi));
    const __m256i p = _mm256_sub_epi32(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)), x_sums8);
    return _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(p), acc);
}

// dx[0, nb) = the activation blocks' scales, then k_scale_group zeros: a partial scale group
// loads 8.
FRUGAL_AVX2 inline void activation_scales(const block_q8_0 * a, int64_t nb, float * dx) {
    for (int64_t i = 0; i < nb; ++i) dx[i] = half(a[i].d);
    std::fill_n(dx + nb, k_scale_group, 0.f);
}

// A regrouped activation row of n_pairs pairs in 32-byte lanes: 3 a pair (both repacked layouts:
// the pair's two registers and its per-lane Σ x), then its scales (activation_scales).
constexpr int64_t regrouped_lanes(int64_t n_pairs) { return 3 * n_pairs + (2 * n_pairs + k_scale_group + 7) / 8; }

// The repacked row loops' frame: out[k · ldo + r] for weight rows r < rows against M prepared
// activation rows t[k] (each with its block scales dx). Per scale group g of a row: the M rows'
// lane scales dw·dx, then group(row, g, count, s8, even, odd) adds that group's products, pairs
// alternating between even[k] and odd[k].
template <int M, class Act, class Group>
FRUGAL_AVX2 inline void repacked_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t nb, const Act * t,
                                      float * out, int64_t ldo, Group group) {
    for (int64_t r = 0; r < rows; ++r) {
        const std::byte * row = w + size_t(r) * w_stride;
        const uint16_t * dw = repacked_scales(row);
        __m256 even[M], odd[M];
        for (int k = 0; k < M; ++k) even[k] = odd[k] = _mm256_setzero_ps();
        for (int64_t g = 0; g < nb; g += k_scale_group) {
            const int64_t count = std::min(k_scale_group, nb - g);
            const __m256 dw8 = load_halves(dw + g, count);
            __m256 s8[M];
            for (int k = 0; k < M; ++k) s8[k] = _mm256_mul_ps(dw8, _mm256_loadu_ps(t[k].dx + g));
            group(row, g, count, s8, even, odd);
        }
        for (int k = 0; k < M; ++k) out[k * ldo + r] = hsum(_mm256_add_ps(even[k], odd[k]));
    }
}

// m <= k_batch activation rows (act_stride bytes apart) regrouped into batch_buffer
// (Act::laid_out(at, a, nb) lays row a out at `at`), then run(integral_constant<int, m>, the rows).
template <class Act, class Run>
FRUGAL_AVX2 inline void with_regrouped(const std::byte * act, size_t act_stride, int64_t m, int64_t nb, Run run) {
    const int64_t n_pairs = (nb + 1) / 2;
    auto * at = reinterpret_cast<__m256i *>(batch_buffer(size_t(m * regrouped_lanes(n_pairs)) * sizeof(__m256i)));
    Act t[k_batch];
    for (int64_t k = 0; k < m; ++k, at += regrouped_lanes(n_pairs))
        t[k] = Act::laid_out(at, reinterpret_cast<const block_q8_0 *>(act + size_t(k) * act_stride), nb);
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX2 { run(mr, t); });
}

// One activation row as the Q4_0 repacked row loop reads it: its pairs regrouped, 8 · Σ x per
// lane of each pair, the block scales (activation_scales).
struct q4_0r_activation {
    x_pair * xs;
    __m256i * x_sums8;
    float * dx;
    // Activation row a of nb blocks, regrouped into regrouped_lanes at `at`: lo, hi, then 8 · Σ x.
    FRUGAL_AVX2 static q4_0r_activation laid_out(__m256i * at, const block_q8_0 * a, int64_t nb) {
        const int64_t n_pairs = (nb + 1) / 2;
        const q4_0r_activation t{reinterpret_cast<x_pair *>(at), at + 2 * n_pairs, reinterpret_cast<float *>(at + 3 * n_pairs)};
        for (int64_t p = 0; p < n_pairs; ++p) {
            t.xs[p] = regroup(a + 2 * p, 2 * p + 1 < nb);
            t.x_sums8[p] = lane_sums(t.xs[p], 8);
        }
        activation_scales(a, nb, t.dx);
        return t;
    }
};

// out[k · ldo + r] for weight rows r < rows against M prepared activation rows t[k]: each pair of
// blocks unpacked once for all M, each row's integer lanes and float operations dot_q4_0r's:
// identical bits however the rows are batched.
template <int M>
FRUGAL_AVX2 void q4_0r_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t nb, const q4_0r_activation * t,
                            float * out, int64_t ldo) {
    repacked_rows<M>(w, w_stride, rows, nb, t, out, ldo,
                     [&](const std::byte * row, int64_t g, int64_t count, const __m256 * s8, __m256 * even, __m256 * odd)
                         FRUGAL_AVX2 {
                             const uint8_t * qs = repacked_nibbles(dtype::q4_0_repacked, row, nb);
                             auto pair = [&](int j, bool both) FRUGAL_AVX2 {
                                 const int64_t b = g + 2 * j;
                                 const q_pair q = q4_0r_unsigned_pair(qs, b, both);
                                 for (int k = 0; k < M; ++k) {
                                     __m256 & acc = j & 1 ? odd[k] : even[k];
                                     acc = q4_0r_rows_fma(q, t[k].xs[b / 2], t[k].x_sums8[b / 2], pair_scales(s8[k], j), acc);
                                 }
                             };
                             if (count == k_scale_group)
                                 for (int j = 0; j < 4; ++j) pair(j, true);
                             else // a partial group of scales
                                 for (int j = 0; 2 * j < count; ++j) pair(j, 2 * j + 1 < count);
                         });
}

// --- Q5_0 repacked (dtype.hpp) with Q8_0 activations ---------------------------------------------
// Q4_0 repacked's pairs of blocks, each nibble with its fifth bit ORed in. In a full group of 8
// blocks, nibble register k (pair k / 2's low nibbles for even k, its high nibbles for odd k)
// takes bit k of each of the group's 32 fifth-bit bytes to bit 4 with one 16-bit shift and one
// mask (a shift of at most 4 brings only bits of the same byte to bit 4): two instructions where
// Q5_0's per-block expansion takes five. A tail pair expands its blocks' qh words as Q5_0 does.
// The quants go in unsigned (0..31) against signed x, and 16 · Σ x comes off each int32 lane, as
// in Q5_0's row loop: exact, so the integer sums are every path's.

// Bit K of each byte of h, at bit 4.
template <int K>
FRUGAL_AVX2 inline __m256i fifth_plane(__m256i h) {
    if constexpr (K < 4) return _mm256_and_si256(_mm256_slli_epi16(h, 4 - K), bytes(0x10));
    else if constexpr (K == 4) return _mm256_and_si256(h, bytes(0x10));
    else return _mm256_and_si256(_mm256_srli_epi16(h, K - 4), bytes(0x10));
}

// A Q5_0 pair's quants, 0..31, in q_pair's registers (as x_pair's lo and hi).
FRUGAL_AVX2 inline q_pair q5_pair(__m256i nibbles, __m256i fifth_lo, __m256i fifth_hi) {
    return {_mm256_or_si256(_mm256_and_si256(nibbles, bytes(0xF)), fifth_lo),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(nibbles, 4), bytes(0xF)), fifth_hi)};
}
// Pair j (< 4) of a full group: blocks g + 2j, g + 2j + 1.
template <int J>
FRUGAL_AVX2 inline q_pair q5_group_pair(const uint8_t * qs, int64_t g, __m256i h) {
    prefetch_ahead(qs + 16 * (g + 2 * J));
    return q5_pair(nibble_pair(qs + 16 * (g + 2 * J), true), fifth_plane<2 * J>(h), fifth_plane<2 * J + 1>(h));
}
// A tail pair from its blocks' qh words (the second absent: zeros).
FRUGAL_AVX2 inline q_pair q5_tail_pair(const uint8_t * qs, const uint8_t * words, int64_t b, bool both) {
    const __m256i f0 = fifth_bits(words + 4 * b), f1 = both ? fifth_bits(words + 4 * b + 4) : _mm256_setzero_si256();
    return q5_pair(nibble_pair(qs + 16 * b, both), _mm256_permute2x128_si256(f0, f1, 0x20),
                   _mm256_permute2x128_si256(f0, f1, 0x31));
}

// An activation pair as the products need it: regrouped, and 16 · Σ x per lane.
struct x_pair16 {
    x_pair x;
    __m256i sums16;
};
FRUGAL_AVX2 inline x_pair16 x_pair16_of(const block_q8_0 * a, bool both) {
    const x_pair x = regroup(a, both);
    return {x, lane_sums(x, 16)};
}

// acc += scale · Σ (q − 16) · x per lane (a pair of products is at most 2 · 31 · 127, two sum to
// less than 2^15).
FRUGAL_AVX2 inline __m256 q5_pair_fma(const q_pair & q, const x_pair16 & x, __m256 scale, __m256 acc) {
    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(q.lo, x.x.lo), _mm256_maddubs_epi16(q.hi, x.x.hi));
    const __m256i p = _mm256_sub_epi32(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)), x.sums16);
    return _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(p), acc);
}

// One scale group of a row (blocks g .. g + count, count <= 8) against M activation rows:
// x_of(k, b) gives row k's x_pair16 for the pair at block b; s8[k] the group's dw·dx. Pairs
// alternate between even[k] and odd[k]. Every caller runs these float operations in this order,
// so a row's result does not depend on how it was batched.
template <int M, class XOf>
FRUGAL_AVX2 inline void q5_0r_group(const uint8_t * fifth, const uint8_t * qs, int64_t g, int64_t count, XOf x_of,
                                    const __m256 * s8, __m256 * even, __m256 * odd) {
    auto products = [&](const q_pair & q, int64_t b, int j) FRUGAL_AVX2 {
        for (int k = 0; k < M; ++k) {
            __m256 & acc = j & 1 ? odd[k] : even[k];
            acc = q5_pair_fma(q, x_of(k, b), pair_scales(s8[k], j), acc);
        }
    };
    if (count == k_fifth_bits_group) {
        prefetch_ahead(fifth + 4 * g);
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(fifth + 4 * g));
        products(q5_group_pair<0>(qs, g, h), g, 0);
        products(q5_group_pair<1>(qs, g, h), g + 2, 1);
        products(q5_group_pair<2>(qs, g, h), g + 4, 2);
        products(q5_group_pair<3>(qs, g, h), g + 6, 3);
    } else {
        for (int j = 0; 2 * j < count; ++j)
            products(q5_tail_pair(qs, fifth, g + 2 * j, 2 * j + 1 < count), g + 2 * j, j);
    }
}

FRUGAL_AVX2 void dequantize_q5_0r(const void * src, float * dst, int64_t n) {
    const int64_t nb = n / k_qk;
    const uint16_t * d = repacked_scales(src);
    const uint8_t * qs = repacked_nibbles(dtype::q5_0_repacked, src, nb);
    for (int64_t ib = 0; ib < nb; ++ib) {
        uint16_t h;
        std::memcpy(&h, d + ib, sizeof h);
        const uint32_t qh = repacked_fifth_bits_word(src, nb, ib);
        const __m256i q = _mm256_or_si256(nibbles(qs + 16 * ib), fifth_bits(reinterpret_cast<const uint8_t *>(&qh)));
        scale_bytes(_mm256_sub_epi8(q, bytes(16)), half(h), dst + ib * k_qk);
    }
}

// M activation rows, each pair regrouped as it is used.
template <int M>
FRUGAL_AVX2 void dot_q5_0r(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    const int64_t nb = n / k_qk;
    const uint8_t * fifth = repacked_fifth_bits(w, nb);
    const uint8_t * qs = repacked_nibbles(dtype::q5_0_repacked, w, nb);
    auto x_of = [&](int k, int64_t b) FRUGAL_AVX2 {
        return x_pair16_of(&act_block<block_q8_0>(act, act_stride, k, b), b + 1 < nb);
    };
    repacked_dot<M>(w, act, act_stride, nb, out,
                    [&](int64_t g, int64_t count, const __m256 * s8, __m256 * even, __m256 * odd) FRUGAL_AVX2 {
                        q5_0r_group<M>(fifth, qs, g, count, x_of, s8, even, odd);
                    });
}

// One activation row as a repacked row loop reads it: its pairs as Make(a + 2p, both) makes them,
// then the block scales (activation_scales).
template <class Pair, Pair (*Make)(const block_q8_0 *, bool)>
struct pairs_activation {
    Pair * xs;
    float * dx;
    // Activation row a of nb blocks, laid out in regrouped_lanes at `at` (a Pair takes at most 3).
    FRUGAL_AVX2 static pairs_activation laid_out(__m256i * at, const block_q8_0 * a, int64_t nb) {
        static_assert(sizeof(Pair) <= 3 * sizeof(__m256i));
        const int64_t n_pairs = (nb + 1) / 2;
        const pairs_activation t{reinterpret_cast<Pair *>(at), reinterpret_cast<float *>(at + 3 * n_pairs)};
        for (int64_t p = 0; p < n_pairs; ++p) t.xs[p] = Make(a + 2 * p, 2 * p + 1 < nb);
        activation_scales(a, nb, t.dx);
        return t;
    }
};
// Q5_0 repacked's: each pair with 16 · Σ x per lane.
using q5_0r_activation = pairs_activation<x_pair16, x_pair16_of>;

// out[k · ldo + r] for weight rows r < rows against M prepared activation rows t[k]
// (q5_0r_group's order: identical bits however the rows are batched).
template <int M>
FRUGAL_AVX2 void q5_0r_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t nb, const q5_0r_activation * t,
                            float * out, int64_t ldo) {
    auto x_of = [&](int k, int64_t b) -> const x_pair16 & { return t[k].xs[b / 2]; };
    repacked_rows<M>(w, w_stride, rows, nb, t, out, ldo,
                     [&](const std::byte * row, int64_t g, int64_t count, const __m256 * s8, __m256 * even, __m256 * odd)
                         FRUGAL_AVX2 {
                             q5_0r_group<M>(repacked_fifth_bits(row, nb), repacked_nibbles(dtype::q5_0_repacked, row, nb),
                                            g, count, x_of, s8, even, odd);
                         });
}

// --- IQ4_NL repacked (dtype.hpp) with Q8_0 activations -------------------------------------------
// Q4_0 repacked's pairs of blocks, each nibble through IQ4_NL's levels (iq4_nl_vec's byte
// shuffle). The levels reach ±127, so their signs move onto x (dot_32's trick) and each half's
// pairs of products are widened on their own: the two halves' pairs, up to 2 · 127 · 127 each,
// would not fit an int16 together. The int32 lanes are Q4_0 repacked's, exact, in the same float
// order: the AVX-512 loop's bits.

// A pair of blocks' levels (q, as q_pair's registers) and their magnitudes (u).
struct iq4_nl_pair {
    q_pair q, u;
};
FRUGAL_AVX2 inline iq4_nl_pair iq4_nlr_pair(const uint8_t * qs, int64_t b, bool both) {
    prefetch_ahead(qs + 16 * b);
    const __m256i v = nibble_pair(qs + 16 * b, both), levels = iq4_nl_levels();
    const __m256i lo = _mm256_shuffle_epi8(levels, _mm256_and_si256(v, bytes(0xF)));
    const __m256i hi = _mm256_shuffle_epi8(levels, _mm256_and_si256(_mm256_srli_epi16(v, 4), bytes(0xF)));
    return {{lo, hi}, {_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(hi, hi)}};
}
FRUGAL_AVX2 inline __m256 iq4_nlr_pair_fma(const iq4_nl_pair & w, const x_pair & x, __m256 scale, __m256 acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(w.u.lo, _mm256_sign_epi8(x.lo, w.q.lo)), ones);
    const __m256i hi = _mm256_madd_epi16(_mm256_maddubs_epi16(w.u.hi, _mm256_sign_epi8(x.hi, w.q.hi)), ones);
    return _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi)), acc);
}

// One scale group of a row (blocks g .. g + count, count <= 8) against M activation rows, as
// q5_0r_group: x_of(k, b) gives row k's x_pair for the pair at block b.
template <int M, class XOf>
FRUGAL_AVX2 inline void iq4_nlr_group(const uint8_t * qs, int64_t g, int64_t count, XOf x_of, const __m256 * s8,
                                      __m256 * even, __m256 * odd) {
    auto pair = [&](int j, bool both) FRUGAL_AVX2 {
        const int64_t b = g + 2 * j;
        const iq4_nl_pair w = iq4_nlr_pair(qs, b, both);
        for (int k = 0; k < M; ++k) {
            __m256 & acc = j & 1 ? odd[k] : even[k];
            acc = iq4_nlr_pair_fma(w, x_of(k, b), pair_scales(s8[k], j), acc);
        }
    };
    if (count == k_scale_group)
        for (int j = 0; j < 4; ++j) pair(j, true);
    else
        for (int j = 0; 2 * j < count; ++j) pair(j, 2 * j + 1 < count);
}

FRUGAL_AVX2 void dequantize_iq4_nlr(const void * src, float * dst, int64_t n) {
    const int64_t nb = n / k_qk;
    const uint16_t * d = repacked_scales(src);
    const uint8_t * qs = repacked_nibbles(dtype::iq4_nl_repacked, src, nb);
    const __m256i levels = iq4_nl_levels();
    for (int64_t ib = 0; ib < nb; ++ib) {
        uint16_t h;
        std::memcpy(&h, d + ib, sizeof h);
        scale_bytes(_mm256_shuffle_epi8(levels, nibbles(qs + 16 * ib)), half(h), dst + ib * k_qk);
    }
}

// M activation rows, each pair regrouped as it is used.
template <int M>
FRUGAL_AVX2 void dot_iq4_nlr(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    const int64_t nb = n / k_qk;
    const uint8_t * qs = repacked_nibbles(dtype::iq4_nl_repacked, w, nb);
    auto x_of = [&](int k, int64_t b) FRUGAL_AVX2 { return regroup(&act_block<block_q8_0>(act, act_stride, k, b), b + 1 < nb); };
    repacked_dot<M>(w, act, act_stride, nb, out,
                    [&](int64_t g, int64_t count, const __m256 * s8, __m256 * even, __m256 * odd) FRUGAL_AVX2 {
                        iq4_nlr_group<M>(qs, g, count, x_of, s8, even, odd);
                    });
}

// IQ4_NL repacked's: the pairs regrouped.
using iq4_nlr_activation = pairs_activation<x_pair, regroup>;

template <int M>
FRUGAL_AVX2 void iq4_nlr_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t nb,
                              const iq4_nlr_activation * t, float * out, int64_t ldo) {
    auto x_of = [&](int k, int64_t b) -> const x_pair & { return t[k].xs[b / 2]; };
    repacked_rows<M>(w, w_stride, rows, nb, t, out, ldo,
                     [&](const std::byte * row, int64_t g, int64_t count, const __m256 * s8, __m256 * even, __m256 * odd)
                         FRUGAL_AVX2 {
                             iq4_nlr_group<M>(repacked_nibbles(dtype::iq4_nl_repacked, row, nb), g, count, x_of, s8,
                                              even, odd);
                         });
}

// The repacked layouts' row loops (kernels::dot_rows_batch, and dot_rows with one row): `rows`
// weight rows against m <= k_batch activation rows, regrouped once per call, each row's result
// dot_q4_0r's, dot_q5_0r's or dot_iq4_nlr's bits. Before, a few rows went through dot_q4_0r<k_batch> per weight
// row, which regroups the activations for every row: the 1.5B Q4_0 with the AVX2 kernels (on a
// Zen 5) ran 2 to 23 prompt tokens at decode's 36-38 t/s.
template <class Act>
FRUGAL_AVX2 void repacked_rows_batch(const std::byte * w, size_t w_stride, int64_t rows, const std::byte * act,
                                     size_t act_stride, int64_t m, int64_t n, float * out, int64_t ldo) {
    const int64_t nb = n / k_qk;
    with_regrouped<Act>(act, act_stride, m, nb, [&](auto mr, const Act * t) FRUGAL_AVX2 {
        if constexpr (std::is_same_v<Act, q4_0r_activation>)
            q4_0r_rows<mr()>(w, w_stride, rows, nb, t, out, ldo);
        else if constexpr (std::is_same_v<Act, q5_0r_activation>)
            q5_0r_rows<mr()>(w, w_stride, rows, nb, t, out, ldo);
        else
            iq4_nlr_rows<mr()>(w, w_stride, rows, nb, t, out, ldo);
    });
}
template <class Act>
FRUGAL_AVX2 void repacked_rows_one(const std::byte * w, size_t w_stride, int64_t rows, const void * act, int64_t n,
                                   float * out) {
    repacked_rows_batch<Act>(w, w_stride, rows, static_cast<const std::byte *>(act), 0, 1, n, out, 0);
}

// max |x_i| over n floats (n a multiple of 8).
FRUGAL_AVX2 inline float abs_max(const float * x, int n) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 v = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) v = _mm256_max_ps(v, _mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// dst[0..32) = min(127, round-half-even(x_i * scale)): the scalar path's nearest_int arithmetic.
FRUGAL_AVX2 inline void round_to_i8x32(const float * x, __m256 scale, int8_t * dst) {
    __m256i q[4];
    for (int k = 0; k < 4; ++k)
        q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), scale)),
                                _mm256_set1_epi32(127));
    // The packs interleave 128-bit lanes; the permute puts the 32 bytes back in order.
    const __m256i q16a = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b),
                                                   _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(dst), q8);
}

// Q8_0 or Q8_1 (B) activations.
template <class B>
FRUGAL_AVX2 void quantize_q8_act(const float * x, void * dst, int64_t n) {
    auto * y = static_cast<B *>(dst);
    for (int64_t ib = 0; ib < n / k_qk; ++ib) {
        const float * xb = x + ib * k_qk;
        const float amax = abs_max(xb, k_qk);
        // As the scalar path: x * (127/amax); |x * 127/amax| < 127.5, so the cap never applies.
        const float d = amax / 127.f;
        y[ib].d = fp32_to_fp16(d);
        round_to_i8x32(xb, _mm256_set1_ps(amax != 0.f ? 127.f / amax : 0.f), y[ib].qs);
        if constexpr (std::is_same_v<B, block_q8_1>) fill_q8_1_sum(y[ib], d);
    }
}

// --- K-quants with Q8_K activations ---------------------------------------------------------------
FRUGAL_AVX2 void quantize_q8_k_act(const float * x, void * dst, int64_t n) {
    auto * y = static_cast<block_q8_k *>(dst);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t ib = 0; ib < n / k_qk_k; ++ib) {
        const float * xb = x + ib * k_qk_k;
        const float amax = abs_max(xb, k_qk_k);
        block_q8_k & b = y[ib];
        if (amax == 0.f) {
            std::memset(&b, 0, sizeof b);
            continue;
        }
        // The scale comes from the first element of largest magnitude, with its sign (as ggml).
        float max = 0.f;
        const __m256 target = _mm256_set1_ps(amax);
        for (int j = 0; j < k_qk_k; j += 8) {
            const __m256 a = _mm256_and_ps(_mm256_loadu_ps(xb + j), abs_mask);
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(a, target, _CMP_EQ_OQ));
            if (hit) {
                max = xb[j + std::countr_zero(unsigned(hit))];
                break;
            }
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < k_qk_k; j += 32) round_to_i8x32(xb + j, _mm256_set1_ps(iscale), b.qs + j);
        fill_bsums(b);
        b.d = 1.f / iscale;
    }
}

template <bool Q5, int M>
FRUGAL_AVX2 void dot_q45(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    const auto * wb = static_cast<const q45_block<Q5> *>(w);
    auto a_block = [&](int k, int64_t i) -> const block_q8_k & { return act_block<block_q8_k>(act, act_stride, k, i); };
    __m256 acc[M];
    for (int k = 0; k < M; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const auto & b = wb[i];
        for (size_t off = 0; off < sizeof b; off += 64) prefetch_ahead(reinterpret_cast<const char *>(&b) + off);
        const k_scales s = unpack_k_scales(b.scales);
        const float d = half(b.d), dmin = half(b.dmin);

        // Mins: sum_j mn_j * (bsums[2j] + bsums[2j+1]), each min repeated for its two bsums.
        const __m128i mn = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(s.mn));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
        // The eight sub-block scales as int16 in both 128-bit halves, for pick16.
        const __m256i sc16 = _mm256_broadcastsi128_si256(
            _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(s.sc))));

        __m256i sumi[M];
        for (int k = 0; k < M; ++k) sumi[k] = _mm256_setzero_si256();
        __m256i qh;
        if constexpr (Q5) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.qh));
        for (int c = 0; c < 4; ++c) {
            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.qs + 32 * c));
            __m256i lo = _mm256_and_si256(raw, bytes(0xF));
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), bytes(0xF));
            if constexpr (Q5) {
                // Bits 0 and 1 of qh (shifted by 2 per chunk) are bit 4 of the low and high halves.
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, bytes(1)), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(qh, bytes(2)), 3));
                qh = _mm256_srli_epi16(qh, 2);
            }
            const __m256i sc_lo = pick16(sc16, 2 * c, 2 * c), sc_hi = pick16(sc16, 2 * c + 1, 2 * c + 1);
            for (int k = 0; k < M; ++k) {
                // Quants are 0..31 and activations -127..127, so the unsigned x signed maddubs is exact.
                const int8_t * x = a_block(k, i).qs + 64 * c;
                const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x));
                const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x + 32));
                const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), sc_lo);
                const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), sc_hi);
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(pl, ph));
            }
        }
        for (int k = 0; k < M; ++k) {
            const block_q8_k & a = a_block(k, i);
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a.bsums));
            const __m256 summ = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn16, bsums));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * d), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
            acc[k] = _mm256_fnmadd_ps(_mm256_set1_ps(a.d * dmin), summ, acc[k]);
        }
    }
    for (int k = 0; k < M; ++k) out[k] = hsum(acc[k]);
}

template <int M>
FRUGAL_AVX2 void dot_q6(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    const auto * wb = static_cast<const block_q6_k *>(w);
    auto a_block = [&](int k, int64_t i) -> const block_q8_k & { return act_block<block_q8_k>(act, act_stride, k, i); };
    __m256 acc[M];
    for (int k = 0; k < M; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const block_q6_k & b = wb[i];
        for (size_t off = 0; off < sizeof b; off += 64) prefetch_ahead(reinterpret_cast<const char *>(&b) + off);
        // Quants are stored +32. Multiply the unsigned 0..63 values and take 32 * sum_g sc_g *
        // bsums_g off at the end: scale group g covers exactly the 16 elements of bsums[g].
        const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(b.scales)));
        __m256i sumi[M];
        for (int k = 0; k < M; ++k) {
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a_block(k, i).bsums));
            sumi[k] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc_all, bsums), 5));
        }
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.ql + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.qh + 32 * h));
            // This half's eight scales in both 128-bit halves; the 32 elements of chunk j span scale
            // groups 2j (first 16, low half of the register) and 2j+1 (high half).
            const __m256i sch = _mm256_broadcastsi128_si256(
                _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(b.scales + 8 * h))));
            for (int j = 0; j < 4; ++j) {
                // Chunk j holds elements 32j..32j+31 of this half (see unpack_q6).
                const __m256i ql = j % 2 ? ql1 : ql0;
                const __m256i nib = j < 2 ? _mm256_and_si256(ql, bytes(0xF))
                                          : _mm256_and_si256(_mm256_srli_epi16(ql, 4), bytes(0xF));
                // Bits 2j, 2j+1 of qh become bits 4, 5.
                const __m256i top = _mm256_and_si256(qh, bytes(uint8_t(3 << (2 * j))));
                const __m256i high = j == 0 ? _mm256_slli_epi16(top, 4)
                                     : j == 1 ? _mm256_slli_epi16(top, 2)
                                     : j == 2 ? top
                                              : _mm256_srli_epi16(top, 2);
                const __m256i q = _mm256_or_si256(nib, high);
                const __m256i scale = pick16(sch, 2 * j, 2 * j + 1);
                for (int k = 0; k < M; ++k) {
                    const int8_t * x = a_block(k, i).qs + 128 * h + 32 * j;
                    const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x)));
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(p, scale));
                }
            }
        }
        for (int k = 0; k < M; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(a_block(k, i).d * half(b.d)), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
    }
    for (int k = 0; k < M; ++k) out[k] = hsum(acc[k]);
}

// Q2_K and Q3_K: each 32-byte group g of 2-bit quants holds four 32-element chunks (bits 2s, 2s+1
// of byte l: element 128g + 32s + l), and each chunk spans two 16-element sub-blocks, whose int16
// scales pick16 takes from the group's eight (scales16: all sixteen, sub-block order).
FRUGAL_AVX2 inline __m256i group_scales(__m256i scales16, int g) {
    return g == 0 ? _mm256_permute4x64_epi64(scales16, 0x44) : _mm256_permute4x64_epi64(scales16, 0xEE);
}

// Q3_K multiplies its quants as u = q + 4 in 0..7 (the 2 bits, with the hmask bit as 4) and takes
// 4 · Σ_j sc_j · bsums_j off, as Q6_K does with its 32; Q2_K's quants are 0..3 as stored, and its
// mins meet the activation's bsums, which cover the same 16 elements. Either way the super-block's
// sums are exact in int32 lanes, then scaled in f32 (the AVX-512 row loop's order: q23_rows).
template <bool Q3, int M>
FRUGAL_AVX2 void dot_q23(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    using Block = std::conditional_t<Q3, block_q3_k, block_q2_k>;
    const auto * wb = static_cast<const Block *>(w);
    auto a_block = [&](int k, int64_t i) -> const block_q8_k & { return act_block<block_q8_k>(act, act_stride, k, i); };
    __m256 acc[M];
    for (int k = 0; k < M; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const Block & b = wb[i];
        for (size_t off = 0; off < sizeof b; off += 64) prefetch_ahead(reinterpret_cast<const char *>(&b) + off);
        // The 16 scales as int16 (Q3_K: less 32), and Q2_K's mins (high nibbles).
        __m256i scales16, mins16, hmask;
        if constexpr (Q3) {
            const k3_scales sc = unpack_k3_scales(b.scales);
            const __m128i packed = _mm_setr_epi32(int(sc.words[0]), int(sc.words[1]), int(sc.words[2]), int(sc.words[3]));
            scales16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(packed), _mm256_set1_epi16(32));
            hmask = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.hmask));
        } else {
            const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i *>(b.scales));
            scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0xF)));
            mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0xF)));
        }
        __m256i sumi[M];
        for (int k = 0; k < M; ++k) sumi[k] = _mm256_setzero_si256();
        for (int g = 0; g < 2; ++g) {
            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.qs + 32 * g));
            const __m256i sch = group_scales(scales16, g);
            for (int s = 0; s < 4; ++s) {
                const int c = 4 * g + s;
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * s), bytes(3));
                if constexpr (Q3) { // chunk c's third bits: bit c of each hmask byte, to bit 2 (within its byte)
                    const __m256i top = _mm256_and_si256(hmask, bytes(uint8_t(1 << c)));
                    q = _mm256_or_si256(q, c < 2 ? _mm256_slli_epi16(top, 2 - c) : c == 2 ? top : _mm256_srli_epi16(top, c - 2));
                }
                const __m256i scale = pick16(sch, 2 * s, 2 * s + 1);
                for (int k = 0; k < M; ++k) {
                    // Quants 0..7 against activations -127..127: the unsigned x signed maddubs is exact.
                    const int8_t * x = a_block(k, i).qs + 32 * c;
                    const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x)));
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(p, scale));
                }
            }
        }
        for (int k = 0; k < M; ++k) {
            const block_q8_k & a = a_block(k, i);
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a.bsums));
            if constexpr (Q3) sumi[k] = _mm256_sub_epi32(sumi[k], _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums), 2));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * half(b.d)), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
            if constexpr (!Q3)
                acc[k] = _mm256_fnmadd_ps(_mm256_set1_ps(a.d * half(b.dmin)),
                                          _mm256_cvtepi32_ps(_mm256_madd_epi16(mins16, bsums)), acc[k]);
        }
    }
    for (int k = 0; k < M; ++k) out[k] = hsum(acc[k]);
}

// IQ4_XS as f32 (the f32 prefill path's weights, where no q8 kernel takes it: AVX2 without
// AVX-VNNI): each sub-block's levels times d · (ls − 32), rounded as the scalar code rounds
// them. The scalar loop was 30 % of a 1.5B IQ4_XS pp64 on Zen 4 under FRUGAL_MAX_CPU_ISA=avx2.
FRUGAL_AVX2 void dequantize_iq4_xs(const void * src, float * dst, int64_t n) {
    const auto * blocks = static_cast<const block_iq4_xs *>(src);
    const __m256i levels = iq4_nl_levels();
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const block_iq4_xs & b = blocks[i];
        const uint64_t scales = unpack_iq4_xs_scales(b);
        const float d = half(b.d);
        for (int j = 0; j < 8; ++j) {
            const float dl = d * float(int((scales >> (8 * j)) & 0xFF) - 32);
            scale_bytes(_mm256_shuffle_epi8(levels, nibbles(b.qs + 16 * j)), dl, dst + i * k_qk_k + 32 * j);
        }
    }
}

// IQ4_XS: per 32-element sub-block, its nibbles through IQ4_NL's levels (a byte shuffle, as
// iq4_nl_vec) with the sign moved onto x, the pairs' int16 sums widened against the sub-block's
// scale ls − 32 (|2 · 127 · 127 · 32| fits int32): a super-block's sum is exact in int32 lanes,
// then one fused multiply-add by d · dx, as llama.cpp's AVX2 dot.
template <int M>
FRUGAL_AVX2 void dot_iq4_xs(const void * w, const std::byte * act, size_t act_stride, int64_t n, float * out) {
    const auto * wb = static_cast<const block_iq4_xs *>(w);
    auto a_block = [&](int k, int64_t i) -> const block_q8_k & { return act_block<block_q8_k>(act, act_stride, k, i); };
    const __m256i levels = iq4_nl_levels();
    __m256 acc[M];
    for (int k = 0; k < M; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / k_qk_k; ++i) {
        const block_iq4_xs & b = wb[i];
        for (size_t off = 0; off < sizeof b; off += 64) prefetch_ahead(reinterpret_cast<const char *>(&b) + off);
        const uint64_t scales = unpack_iq4_xs_scales(b);
        __m256i sumi[M];
        for (int k = 0; k < M; ++k) sumi[k] = _mm256_setzero_si256();
        for (int j = 0; j < 8; ++j) {
            const __m256i q = _mm256_shuffle_epi8(levels, nibbles(b.qs + 16 * j));
            const __m256i q_abs = _mm256_sign_epi8(q, q);
            const __m256i scale = _mm256_set1_epi16(short(int((scales >> (8 * j)) & 0xFF) - 32));
            for (int k = 0; k < M; ++k) {
                const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a_block(k, i).qs + 32 * j));
                const __m256i p = _mm256_maddubs_epi16(q_abs, _mm256_sign_epi8(x, q));
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(p, scale));
            }
        }
        for (int k = 0; k < M; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(a_block(k, i).d * half(b.d)), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
    }
    for (int k = 0; k < M; ++k) out[k] = hsum(acc[k]);
}

// The single-row entry of the kernel table.
template <auto dot_m>
FRUGAL_AVX2 float dot_one(const void * w, const void * act, int64_t n) {
    float r;
    dot_m(w, static_cast<const std::byte *>(act), 0, n, &r);
    return r;
}

// --- F16 and BF16 row loops ----------------------------------------------------------------------
// dot_plain for `rows` weight rows against m <= k_batch activation rows at once
// (kernels::dot_rows_batch; dot_rows with m = 1): the activations widened to F32 once per call
// into batch_buffer, each weight vector widened once for all m; each row's sums are
// dot_plain's, in its order: identical bits. dot_plain widens both for every (weight row,
// activation row) pair.
template <class V, int M>
FRUGAL_AVX2 inline void plain_rows(const std::byte * w, size_t w_stride, int64_t rows, const float * x, int64_t n,
                                   float * out, int64_t ldo) {
    for (int64_t r = 0; r < rows; ++r) {
        const auto * ws = reinterpret_cast<const typename V::storage *>(w + size_t(r) * w_stride);
        __m256 acc[M][4];
        for (int j = 0; j < M; ++j)
            for (int k = 0; k < 4; ++k) acc[j][k] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            prefetch_ahead_l2(ws + i);
            for (int k = 0; k < 4; ++k) {
                const __m256 wv = V::load8(ws + i + 8 * k);
                for (int j = 0; j < M; ++j) acc[j][k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * n + i + 8 * k), acc[j][k]);
            }
        }
        for (; i + 8 <= n; i += 8) {
            const __m256 wv = V::load8(ws + i);
            for (int j = 0; j < M; ++j) acc[j][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * n + i), acc[j][0]);
        }
        for (int j = 0; j < M; ++j) {
            float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][1]), _mm256_add_ps(acc[j][2], acc[j][3])));
            for (int64_t t = i; t < n; ++t) sum += V::load(ws[t]) * x[j * n + t];
            out[j * ldo + r] = sum;
        }
    }
}
template <class V>
FRUGAL_AVX2 void plain_rows_batch(const std::byte * w, size_t w_stride, int64_t rows, const std::byte * act,
                                  size_t act_stride, int64_t m, int64_t n, float * out, int64_t ldo) {
    auto * widened = reinterpret_cast<float *>(batch_buffer(size_t(m * n) * sizeof(float)));
    for (int64_t j = 0; j < m; ++j) {
        const auto * as = reinterpret_cast<const typename V::storage *>(act + size_t(j) * act_stride);
        float * x = widened + j * n;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, V::load8(as + i));
        for (; i < n; ++i) x[i] = V::load(as[i]);
    }
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX2 { plain_rows<V, mr()>(w, w_stride, rows, widened, n, out, ldo); });
}
template <class V>
FRUGAL_AVX2 void plain_rows_one(const std::byte * w, size_t w_stride, int64_t rows, const void * act, int64_t n,
                                float * out) {
    plain_rows_batch<V>(w, w_stride, rows, static_cast<const std::byte *>(act), 0, 1, n, out, 0);
}

// nullptr entries fall back to the scalar kernels (F32 activations are a plain copy; Q4_1, Q5_1
// and the K-quants still dequantize through the scalar loops).
constexpr kernels f32_kernels{nullptr, nullptr, dot_plain<f32_vec>};
template <class V>
constexpr auto dequantize_of() {
    if constexpr (has_min<V>) return static_cast<decltype(kernels::dequantize)>(nullptr); // scalar
    else return &dequantize_32<V>;
}
template <class V>
constexpr kernels q32_kernels{dequantize_of<V>(), quantize_q8_act<typename V::act>, dot_one<dot_32<V, 1>>,
                              dot_32<V, k_batch>, dot_rows_32<V>};
template <bool Q5>
constexpr kernels q45_kernels{nullptr, quantize_q8_k_act, dot_one<dot_q45<Q5, 1>>, dot_q45<Q5, k_batch>};
constexpr kernels q6_kernels{nullptr, quantize_q8_k_act, dot_one<dot_q6<1>>, dot_q6<k_batch>};
template <bool Q3>
constexpr kernels q23_kernels{nullptr, quantize_q8_k_act, dot_one<dot_q23<Q3, 1>>, dot_q23<Q3, k_batch>};
constexpr kernels iq4_xs_kernels{dequantize_iq4_xs, quantize_q8_k_act, dot_one<dot_iq4_xs<1>>, dot_iq4_xs<k_batch>};
constexpr kernels f16_kernels{dequantize_f16, quantize_f16, dot_plain<f16_vec>, nullptr, plain_rows_one<f16_vec>,
                              plain_rows_batch<f16_vec>};
constexpr kernels bf16_kernels{nullptr, quantize_bf16, dot_plain<bf16_vec>, nullptr, plain_rows_one<bf16_vec>,
                               plain_rows_batch<bf16_vec>};
constexpr kernels q4_0r_kernels{dequantize_q4_0r, quantize_q8_act<block_q8_0>, dot_one<dot_q4_0r<1>>, dot_q4_0r<k_batch>,
                                repacked_rows_one<q4_0r_activation>, repacked_rows_batch<q4_0r_activation>};
constexpr kernels q5_0r_kernels{dequantize_q5_0r, quantize_q8_act<block_q8_0>, dot_one<dot_q5_0r<1>>, dot_q5_0r<k_batch>,
                                repacked_rows_one<q5_0r_activation>, repacked_rows_batch<q5_0r_activation>};
constexpr kernels iq4_nlr_kernels{dequantize_iq4_nlr,
                                  quantize_q8_act<block_q8_0>,
                                  dot_one<dot_iq4_nlr<1>>,
                                  dot_iq4_nlr<k_batch>,
                                  repacked_rows_one<iq4_nlr_activation>,
                                  repacked_rows_batch<iq4_nlr_activation>};

} // namespace

const kernels * avx2_kernels(dtype t) {
    switch (t) {
    case dtype::f32: return &f32_kernels;
    case dtype::f16: return &f16_kernels;
    case dtype::bf16: return &bf16_kernels;
    case dtype::q8_0: return &q32_kernels<q8_0_vec>;
    case dtype::q4_0: return &q32_kernels<q4_0_vec>;
    case dtype::q5_0: return &q32_kernels<q5_0_vec>;
    case dtype::q4_1: return &q32_kernels<q4_1_vec>;
    case dtype::q5_1: return &q32_kernels<q5_1_vec>;
    case dtype::iq4_nl: return &q32_kernels<iq4_nl_vec>;
    case dtype::iq4_xs: return &iq4_xs_kernels;
    case dtype::q2_k: return &q23_kernels<false>;
    case dtype::q3_k: return &q23_kernels<true>;
    case dtype::q4_k: return &q45_kernels<false>;
    case dtype::q5_k: return &q45_kernels<true>;
    case dtype::q6_k: return &q6_kernels;
    case dtype::q4_0_repacked: return &q4_0r_kernels;
    case dtype::q5_0_repacked: return &q5_0r_kernels;
    case dtype::iq4_nl_repacked: return &iq4_nlr_kernels;
    case dtype::q4_1_repacked: // AVX-512 layouts only (ops::repacking_speeds_decode)
    case dtype::q5_1_repacked: return nullptr;
    }
    return nullptr;
}

} // namespace frugal::ops::detail

#else

#include "ops/quant_kernels.hpp"

namespace frugal::ops::detail {
const kernels * avx2_kernels(dtype) { return nullptr; }
} // namespace frugal::ops::detail

#endif
