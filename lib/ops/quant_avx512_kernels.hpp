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
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "frugal/dtype.hpp"
#include "ops/quant_kernels.hpp"

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

// The total of a row loop's accumulator whose lanes 0-7 are the AVX2 kernel's even-block
// accumulator and 8-15 its odd one, summed as that kernel sums them.
FRUGAL_AVX512 inline float even_odd_total(__m512 acc) {
    const __m256 even = _mm512_castps512_ps256(acc);
    const __m256 odd = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    return hsum256(_mm256_add_ps(even, odd));
}

FRUGAL_AVX512 inline float half(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

// Weight loops ask for the line this far ahead of their reads (see quant_avx2.cpp: the hardware
// prefetcher alone leaves bandwidth unused on decode's short rows). On Zen 5, 2 threads, tg64
// over 2 KiB: 4 KiB Q8_0 +6 %, Q4_0 +6 %, deepseek2-lite6 +6 %, Q4_K_M +1-2 %, and 8 KiB gave
// back part of it. 6 KiB: on Zen 4, matvec from DRAM, the distances alternating call by call
// in one process, against 4 KiB: 1 thread, [8960, 1536] Q8_0 +10 %, Q6_K +6 %, [1536, 8960]
// +18-29 %, Q6_K [151936, 1536] +16 %, Q4_K and Q4_0 +0-5 %; 2 threads -3 to +8 %; rows of
// 1536 x 256 or 1536 even. 1.5B decode on 1 thread, 3 alternating rounds: Q4_K_M 18.2-19.1 ->
// 19.1-20.4 t/s, Q8_0 13.0-13.4 -> 13.8-14.6. A single core's stream reads faster than each of
// two, so it needs more lines in flight. Into L1 as well, unless a row's weights and activation
// would not leave room there for both (prefetch_weights_to_l2).
inline constexpr int k_prefetch_ahead = 6144;
FRUGAL_AVX512 inline void prefetch_ahead(const void * p, size_t bytes, bool l2_only) {
    for (size_t off = 0; off < bytes; off += 64) {
        const char * at = static_cast<const char *>(p) + off + k_prefetch_ahead;
        if (l2_only) _mm_prefetch(at, _MM_HINT_T1);
        else _mm_prefetch(at, _MM_HINT_T0);
    }
}

FRUGAL_AVX512 inline __m256i load256(const void * p) { return _mm256_loadu_si256(static_cast<const __m256i *>(p)); }

FRUGAL_AVX512 inline __m512i join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// v[0] .. v[3] in 128-bit lanes 0 .. 3.
FRUGAL_AVX512 inline __m512i join4(const __m128i * v) {
    return join(_mm256_inserti128_si256(_mm256_castsi128_si256(v[0]), v[1], 1),
                _mm256_inserti128_si256(_mm256_castsi128_si256(v[2]), v[3], 1));
}

// bytes rounded up to whole 64-byte lines: the batched loops' parts of a prepared row each start
// on a line.
constexpr size_t whole_lines(size_t bytes) { return (bytes + 63) / 64 * 64; }

using frugal::ops::detail::batch_buffer; // the batched row loops' shared helpers (quant_kernels.hpp)
using frugal::ops::detail::prefetch_weights_to_l2;
using frugal::ops::detail::with_batch_rows;

// --- Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL as stored ---------------------------------------------
// The AVX2 row loop (dot_rows_32) two blocks per zmm: block ib in lanes 0-7 (its even
// accumulator), ib + 1 in lanes 8-15 (odd). Quants are taken unsigned, as vpdpbusd wants them:
// Q4_0 and Q5_0 as stored (0..15, 0..31), Q8_0 with its sign bit flipped (q + 128), IQ4_NL's
// levels + 128, and each block's −offset · Σ x per lane (offset 8, 16, 128, 128), from a table
// made once per call, starts the products' lanes: the exact integer sums of the signed quants,
// the AVX2 kernel's. Same scale products dw·dx (four blocks' at once), same float order (dot_32's
// groups of four: both parities' terms in one product and one fused multiply-add, then one add
// into the accumulator), same final sum: bit-identical. Q8_0 read this way (rather than with its
// signs moved onto x) runs 45 -> 60 GB/s in cache on Zen 5, 1 thread; from
// DRAM the same. Rows go one after another: two side by side (each with its own accumulator, so
// that their FMA chains overlap) ran +40 % in cache but -20 % from DRAM, two streams instead of
// one. A model's Q4_0 and Q5_0 matrices are repacked at load for the repacked loop below
// (ops::repacking_speeds_decode); this one serves them where they stay as stored. Q4_1 and Q5_1 (0..15 and 0..31 as
// stored, against Q8_1 activations) add their offsets as the AVX2 dot does: Σ m · s_x in four
// lanes (lane j over blocks 4g + j), apart from the accumulators and added to their total at the
// end (1.5B Q5_1 decode was at 46 % of the bench's probe on the AVX2 dot alone, Zen 4).

// Rows of at most this many blocks (K <= 32768, as the AVX2 row loop: a 70B Llama's FFN is 28672
// wide): the activation's quants and offset table live on the stack (68 KiB). Longer rows take
// the AVX2 kernel.
inline constexpr int64_t k_stored_max_blocks = 1024;

// Q4_1 and Q5_1: a per-block offset m, which meets its Q8_1 activation block's s.
template <class Block>
inline constexpr bool k_has_min = std::is_same_v<Block, frugal::block_q4_1> || std::is_same_v<Block, frugal::block_q5_1>;
// Q5_0 and Q5_1: a fifth bit per quant in qh.
template <class Block>
inline constexpr bool k_has_fifth_bits =
    std::is_same_v<Block, frugal::block_q5_0> || std::is_same_v<Block, frugal::block_q5_1>;
// What the unsigned quants carry over the signed ones: q = signed quant + offset (Q4_1 and Q5_1
// are unsigned as stored).
template <class Block>
constexpr int quant_offset() {
    if constexpr (std::is_same_v<Block, block_q8_0> || std::is_same_v<Block, frugal::block_iq4_nl>) return 128;
    else if constexpr (k_has_min<Block>) return 0;
    else return k_has_fifth_bits<Block> ? 16 : 8;
}

// IQ4_NL's levels + 128 (1..241) in each 128-bit lane: its nibbles' unsigned quants.
FRUGAL_AVX512 inline __m512i iq4_nl_unsigned_levels() {
    const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i *>(frugal::k_iq4_nl_values));
    return _mm512_broadcast_i32x4(_mm_xor_si128(levels, _mm_set1_epi8(char(0x80))));
}

// Blocks b[0] and b[1]'s unsigned quants: element e of b[j] at byte 32j + e (the nibble types: the
// low nibbles are elements 0..15, the high ones 16..31; Q5_0 and Q5_1 OR bit e of qh in at bit 4,
// IQ4_NL takes its levels + 128).
template <class Block>
FRUGAL_AVX512 inline __m512i stored_quant_pair(const Block * b) {
    if constexpr (std::is_same_v<Block, block_q8_0>) {
        return _mm512_xor_si512(join(load256(b[0].qs), load256(b[1].qs)), _mm512_set1_epi8(char(0x80)));
    } else {
        const auto load128 = [](const uint8_t * p) FRUGAL_AVX512 {
            return _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
        };
        const __m512i v = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(load128(b[0].qs)), 0xFF00, load128(b[1].qs));
        // 128-bit lanes 1 and 3 take the high nibbles.
        const __m512i shift = _mm512_mask_blend_epi16(0xFF00FF00, _mm512_setzero_si512(), _mm512_set1_epi16(4));
        __m512i q = _mm512_and_si512(_mm512_srlv_epi16(v, shift), _mm512_set1_epi8(0x0F));
        if constexpr (std::is_same_v<Block, frugal::block_iq4_nl>) return _mm512_shuffle_epi8(iq4_nl_unsigned_levels(), q);
        if constexpr (k_has_fifth_bits<Block>) {
            uint32_t h0, h1;
            std::memcpy(&h0, b[0].qh, sizeof h0);
            std::memcpy(&h1, b[1].qh, sizeof h1);
            q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(uint64_t(h0) | uint64_t(h1) << 32, _mm512_set1_epi8(0x10)));
        }
        return q;
    }
}

// One activation row as the stored-block loop reads it: per block dx, its 32 quants (contiguous:
// a pair is one load), the weights' offset times Σ x in its 8 lanes and (Q4_1, Q5_1) Q8_1's s;
// zeros for the blocks after the last (room for nb + 4 scales and nb + 1 blocks of the rest).
struct stored_activation {
    float * dx;
    int8_t * xq;
    int32_t * minus_offset_x;
    float * sx; // Q4_1 and Q5_1 only
    template <class Block>
    static constexpr size_t bytes_per_block = sizeof(float) + k_qk + 8 * sizeof(int32_t) + (k_has_min<Block> ? 4 : 0);
};
template <class Block>
FRUGAL_AVX512 inline void prepare_stored(const void * act, int64_t nb, const stored_activation & t) {
    using act_block = std::conditional_t<k_has_min<Block>, frugal::ops::block_q8_1, block_q8_0>;
    const auto * a = static_cast<const act_block *>(act);
    // maddubs' pair sums stay within int16: |x| <= 127, so 2 · 128 · 127 < 2^15.
    const __m256i offset = _mm256_set1_epi8(char(quant_offset<Block>()));
    for (int64_t ib = 0; ib < nb; ++ib) {
        t.dx[ib] = half(a[ib].d);
        if constexpr (k_has_min<Block>) t.sx[ib] = half(a[ib].s);
        const __m256i x = load256(a[ib].qs);
        _mm256_store_si256(reinterpret_cast<__m256i *>(t.xq + k_qk * ib), x);
        _mm256_store_si256(reinterpret_cast<__m256i *>(t.minus_offset_x + 8 * ib),
                           _mm256_madd_epi16(_mm256_maddubs_epi16(offset, x), _mm256_set1_epi16(-1)));
    }
    std::fill_n(t.dx + nb, 4, 0.f);
    if constexpr (k_has_min<Block>) std::fill_n(t.sx + nb, 4, 0.f);
    std::fill_n(t.xq + k_qk * nb, k_qk, int8_t(0));
    std::fill_n(t.minus_offset_x + 8 * nb, 8, 0);
}

// out[i · ldo + r] for weight rows r < rows against MR prepared activation rows t[i]: each
// weight block pair unpacked once for all MR, each activation's arithmetic the single row's.
template <class Block, int MR>
FRUGAL_AVX512 inline void stored_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t nb,
                                      const stored_activation * t, float * out, int64_t ldo) {
    // Four blocks' lane scales out of their four products: s[0] (lanes 0-7) and s[1], then s[2], s[3].
    const __m512i first_pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i second_pair = _mm512_add_epi32(first_pair, _mm512_set1_epi32(2));
    // Blocks ib, ib + 1 (their unsigned quants): the exact integer sums Σ q·x against row i, as floats.
    const auto sums = [&](__m512i quants, int i, int64_t ib) FRUGAL_AVX512 {
        return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_load_si512(t[i].minus_offset_x + 8 * ib), quants,
                                                      _mm512_loadu_si512(t[i].xq + k_qk * ib)));
    };
    const bool l2_only = prefetch_weights_to_l2(MR, size_t(nb) * stored_activation::bytes_per_block<Block>,
                                                size_t(nb) * sizeof(Block));
    for (int64_t r = 0; r < rows; ++r) {
        const auto * wb = reinterpret_cast<const Block *>(w + size_t(r) * w_stride);
        __m512 acc[MR]; // lanes 0-7: even blocks, 8-15: odd blocks
        __m128 offsets[MR]; // Q4_1, Q5_1: Σ m · s_x, lane j over blocks 4g + j (the AVX2 kernel's order)
        for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps(), offsets[i] = _mm_setzero_ps();
        int64_t ib = 0;
        for (; ib + 4 <= nb; ib += 4) { // dot_32's groups of four, both parities at once
            prefetch_ahead(wb + ib, 4 * sizeof(Block), l2_only);
            const uint64_t d4 = uint64_t(wb[ib].d) | uint64_t(wb[ib + 1].d) << 16 | uint64_t(wb[ib + 2].d) << 32 |
                                uint64_t(wb[ib + 3].d) << 48;
            const __m128 dw4 = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(d4)));
            const __m512i q01 = stored_quant_pair(wb + ib), q23 = stored_quant_pair(wb + ib + 2);
            for (int i = 0; i < MR; ++i) {
                const __m512 s4 = _mm512_castps128_ps512(_mm_mul_ps(dw4, _mm_loadu_ps(t[i].dx + ib)));
                const __m512 first = _mm512_mul_ps(_mm512_permutexvar_ps(first_pair, s4), sums(q01, i, ib));
                acc[i] = _mm512_add_ps(acc[i],
                                       _mm512_fmadd_ps(_mm512_permutexvar_ps(second_pair, s4), sums(q23, i, ib + 2), first));
            }
            if constexpr (k_has_min<Block>) {
                const uint64_t m4 = uint64_t(wb[ib].m) | uint64_t(wb[ib + 1].m) << 16 | uint64_t(wb[ib + 2].m) << 32 |
                                    uint64_t(wb[ib + 3].m) << 48;
                const __m128 mw4 = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(m4)));
                for (int i = 0; i < MR; ++i) offsets[i] = _mm_fmadd_ps(mw4, _mm_loadu_ps(t[i].sx + ib), offsets[i]);
            }
        }
        if constexpr (k_has_min<Block>)
            if (ib < nb) { // the last one to three blocks' offsets, zeros after them (sx is zero there too)
                uint64_t m4 = 0;
                for (int64_t j = ib; j < nb; ++j) m4 |= uint64_t(wb[j].m) << (16 * (j - ib));
                const __m128 mw4 = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(m4)));
                for (int i = 0; i < MR; ++i) offsets[i] = _mm_fmadd_ps(mw4, _mm_loadu_ps(t[i].sx + ib), offsets[i]);
            }
        for (; ib < nb; ib += 2) { // the last one to three blocks; an odd last one joins lanes 0-7
            const bool both = ib + 1 < nb;
            const Block pair[2] = {wb[ib], both ? wb[ib + 1] : Block{}};
            const __m512i q = stored_quant_pair(pair);
            for (int i = 0; i < MR; ++i) {
                const __m512 scale = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(half(pair[0].d) * t[i].dx[ib]),
                                                          _mm512_set1_ps(half(pair[1].d) * t[i].dx[ib + 1]));
                acc[i] = _mm512_mask_mov_ps(acc[i], both ? 0xFFFF : 0x00FF, _mm512_fmadd_ps(scale, sums(q, i, ib), acc[i]));
            }
        }
        for (int i = 0; i < MR; ++i) {
            // (lane 0 + lane 1) + (lane 2 + lane 3)
            const __m128 pairs = _mm_add_ps(offsets[i], _mm_movehdup_ps(offsets[i]));
            out[i * ldo + r] = even_odd_total(acc[i]) + _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehl_ps(pairs, pairs)));
        }
    }
}

template <class Block>
FRUGAL_AVX512 inline void dot_rows_stored(const std::byte * w, size_t w_stride, int64_t rows, const void * act,
                                          int64_t n, float * out) {
    const int64_t nb = n / k_qk;
    alignas(64) float dx[k_stored_max_blocks + 4];
    alignas(64) int8_t xq[k_qk * (k_stored_max_blocks + 1)];
    alignas(64) int32_t minus_offset_x[8 * (k_stored_max_blocks + 1)];
    alignas(64) float sx[k_has_min<Block> ? k_stored_max_blocks + 4 : 1];
    const stored_activation t{dx, xq, minus_offset_x, sx};
    prepare_stored<Block>(act, nb, t);
    stored_rows<Block, 1>(w, w_stride, rows, nb, &t, out, 0);
}

// dot_rows_stored for m <= k_batch activation rows (act_stride bytes apart) at once: out[i · ldo
// + r], their prepared rows in batch_buffer.
template <class Block>
FRUGAL_AVX512 inline void dot_rows_stored_batch(const std::byte * w, size_t w_stride, int64_t rows, const std::byte * act,
                                                size_t act_stride, int64_t m, int64_t n, float * out, int64_t ldo) {
    const int64_t nb = n / k_qk;
    const size_t dx_bytes = whole_lines(size_t(nb + 4) * sizeof(float)), xq_bytes = whole_lines(size_t(nb + 1) * k_qk);
    const size_t offsets_bytes = whole_lines(size_t(nb + 1) * 8 * sizeof(int32_t));
    const size_t sx_bytes = k_has_min<Block> ? dx_bytes : 0;
    const size_t per_row = dx_bytes + xq_bytes + offsets_bytes + sx_bytes;
    std::byte * base = batch_buffer(per_row * size_t(m));
    stored_activation t[frugal::ops::detail::k_batch];
    for (int64_t i = 0; i < m; ++i) {
        std::byte * at = base + per_row * size_t(i);
        t[i] = {reinterpret_cast<float *>(at), reinterpret_cast<int8_t *>(at + dx_bytes),
                reinterpret_cast<int32_t *>(at + dx_bytes + xq_bytes),
                reinterpret_cast<float *>(at + dx_bytes + xq_bytes + offsets_bytes)};
        prepare_stored<Block>(act + size_t(i) * act_stride, nb, t[i]);
    }
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX512 { stored_rows<Block, mr()>(w, w_stride, rows, nb, t, out, ldo); });
}

// --- Q4_0, Q5_0, IQ4_NL, Q4_1 and Q5_1 repacked (dtype.hpp: scales, fifth bits, nibbles, mins) -----
// The AVX2 repacked loops (q4_0r_rows, q5_0r_rows, iq4_nlr_rows) four blocks per zmm: block b of a quad in
// 128-bit lane b, the quad's nibbles one 64-byte load (the stored blocks' scales between their
// nibbles made the quad a gather: PERF.md, "A Q4_0 decode loop with four blocks per zmm").
// vpdpbusd against the low and then the high nibbles (Q5_0, Q5_1: with their fifth bits at bit 4;
// IQ4_NL: their levels + 128) from −offset · Σ x gives each int32 lane the AVX2 lane's exact sum
// (the same eight products). Per scale group of eight blocks, quad h holds pairs 2h (lanes 0-7,
// the AVX2 loop's even accumulator) and 2h + 1 (lanes 8-15, odd), each scaled by its blocks'
// dw · dx and added with one fused multiply-add, as the AVX2 loop adds a pair: bit-identical.
// Past the row's blocks the lanes add 0 · 0, which leaves any sum but −0 as it is (and a sum
// from +0 is never −0). Q4_1 and Q5_1 have no AVX2 repacked loop: they take a Q4_0 row's lanes
// and float steps, held to the exact sum within rounding; their offsets m · s_x (Q8_1
// activations) add up in eight lanes of their own.
// Zen 4, matvec 1536 wide, 1 thread in L2, as stored -> repacked: Q4_0 19 -> 27 GB/s, Q5_0 20 ->
// 29. From DRAM (2 threads) within noise of each other (Q5_0 8960 wide perhaps 4 % slower).

inline constexpr int64_t k_repacked_group = 8; // blocks per fp16 scale conversion, as in the AVX2 loops
static_assert(k_repacked_group == frugal::ops::detail::k_fifth_bits_group);

// What the unsigned quants carry over the signed ones (Q4_1 and Q5_1 are unsigned as stored,
// with their offsets m apart).
template <frugal::dtype T>
constexpr int repacked_offset() {
    if constexpr (T == frugal::dtype::iq4_nl_repacked) return 128;
    else if constexpr (frugal::ops::detail::repacked_has_mins(T)) return 0;
    else return T == frugal::dtype::q5_0_repacked ? 16 : 8;
}

// One activation row as the repacked loops read it, per quad of blocks q: x[128q, +64) elements
// 0..15 of its four blocks (block b at 16b), x[128q + 64, +64) elements 16..31; the weights'
// −offset · Σ x for each int32 lane (16 a quad; none for Q4_1 and Q5_1); then each block's dx
// and (Q4_1, Q5_1: Q8_1 activations) s. Zeros past the row's blocks, up to a whole scale group
// (two quads, eight scales).
struct repacked_activation {
    int8_t * x;
    int32_t * minus_offset_x;
    float * dx;
    float * sx;
    static constexpr size_t bytes_per_block = k_qk + 4 * sizeof(int32_t) + 2 * sizeof(float);
    // Quads to lay out for a row of nb blocks: whole scale groups.
    static constexpr int64_t quads(int64_t nb) { return (nb + k_repacked_group - 1) / k_repacked_group * 2; }
};

template <frugal::dtype T>
FRUGAL_AVX512 inline void prepare_repacked(const void * act, int64_t nb, const repacked_activation & t) {
    constexpr bool mins = frugal::ops::detail::repacked_has_mins(T);
    using act_block = std::conditional_t<mins, frugal::ops::block_q8_1, block_q8_0>;
    const auto * a = static_cast<const act_block *>(act);
    const auto load128 = [](const int8_t * p) FRUGAL_AVX512 { return _mm_loadu_si128(reinterpret_cast<const __m128i *>(p)); };
    const int64_t quads = repacked_activation::quads(nb);
    const __m512i times = _mm512_set1_epi8(char(repacked_offset<T>()));
    for (int64_t q = 0; q < quads; ++q) {
        __m128i lo[4], hi[4];
        for (int b = 0; b < 4; ++b) {
            const int64_t ib = 4 * q + b;
            lo[b] = ib < nb ? load128(a[ib].qs) : _mm_setzero_si128();
            hi[b] = ib < nb ? load128(a[ib].qs + 16) : _mm_setzero_si128();
        }
        const __m512i x_lo = join4(lo), x_hi = join4(hi);
        _mm512_store_si512(t.x + 128 * q, x_lo);
        _mm512_store_si512(t.x + 128 * q + 64, x_hi);
        if constexpr (mins) continue;
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), times, x_lo), times, x_hi);
        _mm512_store_si512(t.minus_offset_x + 16 * q, _mm512_sub_epi32(_mm512_setzero_si512(), sums));
    }
    for (int64_t ib = 0; ib < 4 * quads; ++ib) {
        t.dx[ib] = ib < nb ? half(a[ib].d) : 0.f;
        if constexpr (mins) t.sx[ib] = ib < nb ? half(a[ib].s) : 0.f;
    }
}

// Q5_0's fifth bits at bit 4 of a quad's low (lo) and high (hi) nibble bytes.
struct fifth_bits_pair {
    __m512i lo, hi;
};
// Bit low_bit of each byte of v's lower 256 bits, and high_bit of the upper ones, at bit 4, the
// other bits cleared: each dword rotated left by (4 − bit) mod 32 (at most 4 left or 3 right,
// which brings no bit of another byte to a bit 4).
FRUGAL_AVX512 inline __m512i bit_to_bit4(__m512i v, int low_bit, int high_bit) {
    const __m512i rotation =
        _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32((36 - low_bit) % 32), _mm512_set1_epi32((36 - high_bit) % 32));
    return _mm512_and_si512(_mm512_rolv_epi32(v, rotation), _mm512_set1_epi8(0x10));
}
// Quad h of a full group, whose 32 fifth-bit bytes are h32: the AVX2 loop's register k takes bit
// k of each byte (pair j's low nibbles k = 2j, its high ones 2j + 1).
FRUGAL_AVX512 inline fifth_bits_pair group_fifth_bits(__m256i h32, int h) {
    const __m512i both = _mm512_broadcast_i64x4(h32);
    return {bit_to_bit4(both, 4 * h, 4 * h + 2), bit_to_bit4(both, 4 * h + 1, 4 * h + 3)};
}
// The quad at block b of a tail (blocks b .. b + blocks, blocks <= 4), from their qh words
// (element e: bit e).
FRUGAL_AVX512 inline fifth_bits_pair tail_fifth_bits(const uint8_t * words, int64_t b, int64_t blocks) {
    uint64_t lo = 0, hi = 0;
    for (int64_t j = 0; j < blocks; ++j) {
        uint32_t qh;
        std::memcpy(&qh, words + 4 * (b + j), sizeof qh);
        lo |= uint64_t(qh & 0xFFFF) << (16 * j);
        hi |= uint64_t(qh >> 16) << (16 * j);
    }
    const __m512i bit4 = _mm512_set1_epi8(0x10);
    return {_mm512_maskz_mov_epi8(lo, bit4), _mm512_maskz_mov_epi8(hi, bit4)};
}

// out[i · ldo + r] for weight rows r < rows (of type T) against MR prepared activation rows t[i]:
// each quad unpacked once for all MR, each activation's arithmetic the single row's.
template <frugal::dtype T, int MR>
FRUGAL_AVX512 inline void repacked_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t nb,
                                        const repacked_activation * t, float * out, int64_t ldo) {
    constexpr bool q5 = frugal::ops::detail::repacked_has_fifth_bits(T), levels = T == frugal::dtype::iq4_nl_repacked;
    constexpr bool mins = frugal::ops::detail::repacked_has_mins(T);
    using frugal::ops::detail::repacked_nibbles_offset;
    // Quad h's lane scales out of its group's eight: s[4h + b] in lanes 4b .. 4b + 3.
    const __m512i quad_lanes[2] = {_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                   _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7)};
    const __m512i nibble = _mm512_set1_epi8(0x0F), unsigned_levels = iq4_nl_unsigned_levels();
    const size_t weight_row_bytes = size_t(nb) * frugal::traits(T).block_bytes;
    const bool l2_only = prefetch_weights_to_l2(MR, size_t(nb) * repacked_activation::bytes_per_block, weight_row_bytes);
    for (int64_t r = 0; r < rows; ++r) {
        const std::byte * row = w + size_t(r) * w_stride;
        const uint16_t * dw = frugal::ops::detail::repacked_scales(row);
        const uint8_t * fifth = frugal::ops::detail::repacked_fifth_bits(row, nb);
        const uint8_t * qs = frugal::ops::detail::repacked_nibbles(T, row, nb);
        const uint16_t * mw = mins ? frugal::ops::detail::repacked_mins(T, row, nb) : nullptr;
        __m512 acc[MR]; // lanes 0-7: even pairs, 8-15: odd pairs
        __m256 offsets[MR]; // Q4_1, Q5_1: Σ m · s_x, lane j over the blocks j mod 8
        for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps(), offsets[i] = _mm256_setzero_ps();
        // The nibbles' prefetches skip the scales, fifth bits and offsets at the row's head.
        prefetch_ahead(row, size_t(repacked_nibbles_offset(T, nb)), l2_only);
        // Quad h of the group at block g (its nibbles v, Q5_0's fifth bits f).
        const auto add_quad = [&](__m512i v, const fifth_bits_pair & f, int64_t g, int h, const __m256 * s8) FRUGAL_AVX512 {
            __m512i lo = _mm512_and_si512(v, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
            if constexpr (q5) lo = _mm512_or_si512(lo, f.lo), hi = _mm512_or_si512(hi, f.hi);
            if constexpr (levels) lo = _mm512_shuffle_epi8(unsigned_levels, lo), hi = _mm512_shuffle_epi8(unsigned_levels, hi);
            const int64_t q = g / 4 + h;
            for (int i = 0; i < MR; ++i) {
                const __m512i start = mins ? _mm512_setzero_si512() : _mm512_load_si512(t[i].minus_offset_x + 16 * q);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo, _mm512_load_si512(t[i].x + 128 * q)), hi,
                                                      _mm512_load_si512(t[i].x + 128 * q + 64));
                const __m512 s = _mm512_permutexvar_ps(quad_lanes[h], _mm512_castps256_ps512(s8[i]));
                acc[i] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p), acc[i]);
            }
        };
        const fifth_bits_pair no_fifth_bits{};
        int64_t g = 0;
        for (; g + k_repacked_group <= nb; g += k_repacked_group) {
            prefetch_ahead(qs + 16 * g, 16 * k_repacked_group, l2_only);
            const __m256 dw8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(dw + g)));
            __m256 s8[MR];
            for (int i = 0; i < MR; ++i) s8[i] = _mm256_mul_ps(dw8, _mm256_load_ps(t[i].dx + g));
            if constexpr (mins) {
                const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(mw + g)));
                for (int i = 0; i < MR; ++i) offsets[i] = _mm256_fmadd_ps(m8, _mm256_load_ps(t[i].sx + g), offsets[i]);
            }
            const __m256i h32 = q5 ? load256(fifth + 4 * g) : _mm256_setzero_si256();
            for (int h = 0; h < 2; ++h)
                add_quad(_mm512_loadu_si512(qs + 16 * (g + 4 * h)), q5 ? group_fifth_bits(h32, h) : no_fifth_bits, g, h, s8);
        }
        if (const int64_t count = nb - g; count > 0) { // a partial group: zeros past the row's blocks
            uint16_t padded[k_repacked_group] = {};
            std::memcpy(padded, dw + g, size_t(count) * sizeof(uint16_t));
            const __m256 dw8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(padded)));
            __m256 s8[MR];
            for (int i = 0; i < MR; ++i) s8[i] = _mm256_mul_ps(dw8, _mm256_load_ps(t[i].dx + g));
            if constexpr (mins) {
                std::memcpy(padded, mw + g, size_t(count) * sizeof(uint16_t));
                const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(padded)));
                for (int i = 0; i < MR; ++i) offsets[i] = _mm256_fmadd_ps(m8, _mm256_load_ps(t[i].sx + g), offsets[i]);
            }
            for (int h = 0; 4 * h < count; ++h) {
                const int64_t b = g + 4 * h, blocks = std::min<int64_t>(4, count - 4 * h);
                const __m512i v = _mm512_maskz_loadu_epi8(~uint64_t(0) >> (64 - 16 * blocks), qs + 16 * b);
                add_quad(v, q5 ? tail_fifth_bits(fifth, b, blocks) : no_fifth_bits, g, h, s8);
            }
        }
        for (int i = 0; i < MR; ++i) out[i * ldo + r] = even_odd_total(acc[i]) + (mins ? hsum256(offsets[i]) : 0.f);
    }
}

// `rows` weight rows of type T against m <= k_batch activation rows (act_stride bytes apart) at
// once: out[i · ldo + r], their prepared rows in batch_buffer (any row length).
template <frugal::dtype T>
FRUGAL_AVX512 inline void dot_rows_repacked_batch(const std::byte * w, size_t w_stride, int64_t rows,
                                                  const std::byte * act, size_t act_stride, int64_t m, int64_t n,
                                                  float * out, int64_t ldo) {
    const int64_t nb = n / k_qk, quads = repacked_activation::quads(nb);
    const size_t x_bytes = size_t(quads) * 128, offsets_bytes = size_t(quads) * 64, dx_bytes = whole_lines(size_t(quads) * 16);
    const size_t per_row = x_bytes + offsets_bytes + 2 * dx_bytes; // dx, then sx
    std::byte * base = batch_buffer(per_row * size_t(m));
    repacked_activation t[frugal::ops::detail::k_batch];
    for (int64_t i = 0; i < m; ++i) {
        std::byte * at = base + per_row * size_t(i);
        t[i] = {reinterpret_cast<int8_t *>(at), reinterpret_cast<int32_t *>(at + x_bytes),
                reinterpret_cast<float *>(at + x_bytes + offsets_bytes),
                reinterpret_cast<float *>(at + x_bytes + offsets_bytes + dx_bytes)};
        prepare_repacked<T>(act + size_t(i) * act_stride, nb, t[i]);
    }
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX512 { repacked_rows<T, mr()>(w, w_stride, rows, nb, t, out, ldo); });
}

template <frugal::dtype T>
FRUGAL_AVX512 inline void dot_rows_repacked(const std::byte * w, size_t w_stride, int64_t rows, const void * act,
                                            int64_t n, float * out) {
    dot_rows_repacked_batch<T>(w, w_stride, rows, static_cast<const std::byte *>(act), 0, 1, n, out, 0);
}

// --- Q4_K and Q5_K with Q8_K activations --------------------------------------------------------
// The AVX2 kernel's four 64-element chunks per super-block, two per zmm (chunk c in lanes 0-7,
// c + 1 in 8-15); vpdpwssd folds its vpmaddwd-by-scale and add. The integer sums per lane are
// exact, and the two halves are added before the AVX2 kernel's float steps (scale products, mins,
// final sum), which stay 256-bit: bit-identical.

// A super-block's eight 6-bit scales (bytes 0-7) and mins (8-15) from its 12 packed bytes
// (unpack_k_scales' bits, in vector registers: its scalar shifts and the scales' moves into
// vectors made up half of this loop's instructions). s points at the 12 bytes; 16 are read,
// which the block's quants that follow always provide.
FRUGAL_AVX512 inline __m128i k_scales_mins(const uint8_t * s) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s)); // dwords a, b, c
    const __m128i low = _mm_and_si128(raw, _mm_set1_epi8(0x3F));                 // sc 0-3 | mn 0-3
    // sc 4-7: c's low nibbles with a's top bits; mn 4-7: c's high nibbles with b's top bits.
    const __m128i c_nibbles = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(raw, 0xAA), _mm_setr_epi32(0, 4, 0, 0)),
                                            _mm_set1_epi8(0x0F));
    const __m128i high = _mm_or_si128(c_nibbles, _mm_and_si128(_mm_srli_epi32(raw, 2), _mm_set1_epi8(0x30)));
    return _mm_unpacklo_epi32(low, high); // sc 0-3, sc 4-7, mn 0-3, mn 4-7
}

// vpshufb controls that widen bytes of a 128-bit lane into int16 words: byte `a` into every word
// of the low 256 bits, byte `b` into every word of the high 256 bits.
FRUGAL_AVX512 inline __m512i widen_byte_to_halves(int a, int b) {
    return _mm512_mask_blend_epi16(0xFFFF0000, _mm512_set1_epi16(short(0xFF00 | a)), _mm512_set1_epi16(short(0xFF00 | b)));
}

// The row loop re-lays the activation once per call, and the
// scales are unpacked in vector registers. With both, in cache on Zen 5, 1 thread: 27-30 -> 37
// GB/s; Q4_K_M tg32, 8 alternating pairs, 2 threads: +1-2 % (slow memory phases) to +7-10 %
// (fast ones); 1 thread +9 %.
// Rows of at most this many super-blocks (K <= 32768) take their activation re-laid on the stack
// (32 KiB); longer rows go to the AVX2 kernel.
inline constexpr int64_t k_q45_max_super_blocks = 128;

// A Q8_K activation's quants in the order the chunk pairs meet them, once per call rather than two
// 256-bit loads and an insert per operand per row: per super-block, for c = 0 and 2, the low
// nibbles' operand (x[64c, +32) | x[64c + 64, +32)), then the high nibbles' (x[64c + 32, +32) |
// x[64c + 96, +32)).
FRUGAL_AVX512 inline void pair_activation_quants(const frugal::ops::block_q8_k * a, int64_t n_super, int8_t * out) {
    for (int64_t i = 0; i < n_super; ++i)
        for (int c = 0; c < 4; c += 2) {
            const int8_t * x = a[i].qs + 64 * c;
            int8_t * o = out + frugal::k_qk_k * i + 64 * c;
            _mm512_store_si512(o, join(load256(x), load256(x + 64)));
            _mm512_store_si512(o + 64, join(load256(x + 32), load256(x + 96)));
        }
}

// out[j · ldo + r] for weight rows r < rows against MR activation rows (ab[j], their quants
// re-laid by pair_activation_quants into x_pairs[j]): each super-block's scales and quants
// unpacked once for all MR, each activation's arithmetic the single row's.
template <bool Q5, int MR>
FRUGAL_AVX512 inline void q45_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t n_super,
                                   const frugal::ops::block_q8_k * const * ab, const int8_t * const * x_pairs,
                                   float * out, int64_t ldo) {
    using block = frugal::ops::detail::q45_block<Q5>;
    const __m512i nibble = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1), two = _mm512_set1_epi8(2);
    // vpdpwssd's scales for chunks c, c + 1 (c = 0, 2) against their low (h = 0) or high (h = 1)
    // nibbles come from the super-block's scale bytes in every 128-bit lane by one in-lane vpshufb
    // with widen_scale[c + h]: scale 2c + h in int16 lanes 0-15, 2c + 2 + h in 16-31. (vpermw on the
    // scales widened to int16 had been there, and for the mins: Zen 4, [512, 1536] in L2, 1 thread,
    // 21.4 -> 24.1 GB/s; from DRAM, 1 or 2 threads, no change, as the memory limits there.)
    const __m512i widen_scale[4] = {widen_byte_to_halves(0, 2), widen_byte_to_halves(1, 3), widen_byte_to_halves(4, 6),
                                    widen_byte_to_halves(5, 7)};
    // Each min for its two bsums: int16 lanes 2j, 2j + 1 take min j (byte 8 + j).
    const __m256i min_of_bsum = _mm256_setr_epi16(0xFF08, 0xFF08, 0xFF09, 0xFF09, 0xFF0A, 0xFF0A, 0xFF0B, 0xFF0B, 0xFF0C,
                                                  0xFF0C, 0xFF0D, 0xFF0D, 0xFF0E, 0xFF0E, 0xFF0F, 0xFF0F);
    // A row's pass reads, per super-block and activation row, the re-laid quants and the two
    // lines of its Q8_K block that hold d and bsums.
    const bool l2_only =
        prefetch_weights_to_l2(MR, size_t(n_super) * (frugal::k_qk_k + 2 * 64), size_t(n_super) * sizeof(block));
    for (int64_t r = 0; r < rows; ++r) {
        const auto * wb = reinterpret_cast<const block *>(w + size_t(r) * w_stride);
        __m256 acc[MR];
        for (int j = 0; j < MR; ++j) acc[j] = _mm256_setzero_ps();
#pragma GCC unroll 2
        for (int64_t i = 0; i < n_super; ++i) {
            const block & b = wb[i];
            prefetch_ahead(&b, sizeof b, l2_only);
            const __m512i scales_mins = _mm512_broadcast_i32x4(k_scales_mins(b.scales)); // in every 128-bit lane
            const __m256i mn16 = _mm256_shuffle_epi8(_mm512_castsi512_si256(scales_mins), min_of_bsum);
            // a.d · d and a.d · dmin, both products at once.
            uint32_t d_dmin;
            std::memcpy(&d_dmin, &b.d, sizeof d_dmin);
            const __m128 d_and_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(int32_t(d_dmin)));
            // Q5_K: chunk c's fifth bits are bits 2c (low nibbles) and 2c + 1 (high) of qh; the high
            // half holds qh >> 2, so bits 0 and 1 serve both chunks of a pair, then shift on by 4.
            __m512i qh;
            if constexpr (Q5) {
                const __m256i bits = load256(b.qh);
                qh = join(bits, _mm256_srli_epi16(bits, 2));
            }
            // Low and high nibbles' products in two chains (exact integer sums: their order is free).
            __m512i sum_lo[MR], sum_hi[MR];
            for (int j = 0; j < MR; ++j) sum_lo[j] = sum_hi[j] = _mm512_setzero_si512();
            for (int c = 0; c < 4; c += 2) {
                const __m512i raw = _mm512_loadu_si512(b.qs + 32 * c);
                __m512i lo = _mm512_and_si512(raw, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), nibble);
                if constexpr (Q5) {
                    lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(qh, one), 4));
                    hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(qh, two), 3));
                    qh = _mm512_srli_epi16(qh, 4);
                }
                const __m512i scale_lo = _mm512_shuffle_epi8(scales_mins, widen_scale[c]),
                              scale_hi = _mm512_shuffle_epi8(scales_mins, widen_scale[c + 1]);
                for (int j = 0; j < MR; ++j) {
                    const int8_t * x = x_pairs[j] + frugal::k_qk_k * i + 64 * c;
                    // Quants 0..31 (unsigned) by activations -127..127: vpmaddubsw's pair sums never saturate.
                    sum_lo[j] = _mm512_dpwssd_epi32(sum_lo[j], _mm512_maddubs_epi16(lo, _mm512_load_si512(x)), scale_lo);
                    sum_hi[j] = _mm512_dpwssd_epi32(sum_hi[j], _mm512_maddubs_epi16(hi, _mm512_load_si512(x + 64)), scale_hi);
                }
            }
            for (int j = 0; j < MR; ++j) {
                const frugal::ops::block_q8_k & a = ab[j][i];
                const __m128 scales = _mm_mul_ps(d_and_dmin, _mm_set1_ps(a.d));
                const __m512i sumi = _mm512_add_epi32(sum_lo[j], sum_hi[j]);
                const __m256i sumi8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi), _mm512_extracti64x4_epi64(sumi, 1));
                const __m256 summ = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn16, load256(a.bsums)));
                acc[j] = _mm256_fmadd_ps(_mm256_broadcastss_ps(scales), _mm256_cvtepi32_ps(sumi8), acc[j]);
                acc[j] = _mm256_fnmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(scales)), summ, acc[j]);
            }
        }
        for (int j = 0; j < MR; ++j) out[j * ldo + r] = hsum256(acc[j]);
    }
}

template <bool Q5>
FRUGAL_AVX512 inline void dot_rows_q45_k(const std::byte * w, size_t w_stride, int64_t rows, const void * act,
                                         int64_t n, float * out) {
    using frugal::ops::block_q8_k;
    const auto * ab = static_cast<const block_q8_k *>(act);
    const int64_t n_super = n / frugal::k_qk_k;
    if (n_super > k_q45_max_super_blocks) {
        const auto dot = frugal::ops::detail::avx2_kernels(Q5 ? frugal::dtype::q5_k : frugal::dtype::q4_k)->dot;
        for (int64_t r = 0; r < rows; ++r) out[r] = dot(w + size_t(r) * w_stride, act, n);
        return;
    }
    alignas(64) int8_t x_pairs[frugal::k_qk_k * k_q45_max_super_blocks];
    pair_activation_quants(ab, n_super, x_pairs);
    const int8_t * x = x_pairs;
    q45_rows<Q5, 1>(w, w_stride, rows, n_super, &ab, &x, out, 0);
}

// dot_rows_q45_k for m <= k_batch activation rows (act_stride bytes apart) at once: out[j · ldo
// + r], their re-laid quants in batch_buffer.
template <bool Q5>
FRUGAL_AVX512 inline void dot_rows_q45_k_batch(const std::byte * w, size_t w_stride, int64_t rows,
                                               const std::byte * act, size_t act_stride, int64_t m, int64_t n,
                                               float * out, int64_t ldo) {
    using frugal::ops::block_q8_k;
    const int64_t n_super = n / frugal::k_qk_k;
    const size_t per_row = size_t(frugal::k_qk_k * n_super); // a multiple of 64
    std::byte * base = batch_buffer(per_row * size_t(m));
    const block_q8_k * ab[frugal::ops::detail::k_batch];
    const int8_t * x[frugal::ops::detail::k_batch];
    for (int64_t j = 0; j < m; ++j) {
        ab[j] = reinterpret_cast<const block_q8_k *>(act + size_t(j) * act_stride);
        auto * pairs = reinterpret_cast<int8_t *>(base + per_row * size_t(j));
        pair_activation_quants(ab[j], n_super, pairs);
        x[j] = pairs;
    }
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX512 { q45_rows<Q5, mr()>(w, w_stride, rows, n_super, ab, x, out, ldo); });
}

// --- Q6_K with Q8_K activations -----------------------------------------------------------------
// The AVX2 kernel's 32-element chunks j of each 128-element half, two per zmm (j in lanes 0-7,
// j + 1 in 8-15): one 64-byte load covers both chunks' low bits, and per-lane shifts place both
// chunks' high bits. Exact integer lane sums, added across the halves before the same 256-bit
// float step: bit-identical.
// out[j · ldo + r] for weight rows r < rows (w_stride bytes apart) against MR Q8_K activation
// rows ab[j]: each super-block's quants and scales unpacked once for all MR, each activation's
// arithmetic the single row's. The constants are set up once per call (per row, they had been a
// tenth of a 1536-wide row's work: in cache, 1 thread, 48 -> 58 GB/s there). The chunk pairs'
// scales come from one transposed copy by in-lane dword broadcasts (had been a vpermw each),
// vpdpwssd folds each pair's vpmaddwd and add, and one vpternlogd merges the high bits: on Zen 4,
// [512, 1536] in L2, 1 thread, 29 -> 32-33 GB/s.
template <int MR>
FRUGAL_AVX512 inline void q6_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t n_super,
                                  const frugal::ops::block_q8_k * const * ab, float * out, int64_t ldo) {
    using frugal::block_q6_k;
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    // Chunk j's high bits are bits 2j, 2j+1 of qh; they go to bits 4, 5, where bits_45 keeps them
    // (shifts per 16-bit lane: what crosses into the other byte lands outside bits 4, 5).
    const __m512i bits_45 = _mm512_set1_epi8(0x30);
    const __m512i shl_01 = _mm512_mask_blend_epi16(0xFFFF0000, _mm512_set1_epi16(4), _mm512_set1_epi16(2));
    const __m512i shr_23 = _mm512_mask_blend_epi16(0xFFFF0000, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    // The 16 scales widened to int16 and transposed, so that one in-lane dword broadcast gives each
    // chunk pair its scales: 128-bit quarter q holds scales q, 4 + q, 8 + q, 12 + q, each twice.
    const __m512i transpose_scales = _mm512_set_epi16(15, 15, 11, 11, 7, 7, 3, 3, 14, 14, 10, 10, 6, 6, 2, 2, 13, 13, 9, 9,
                                                      5, 5, 1, 1, 12, 12, 8, 8, 4, 4, 0, 0);
    const bool l2_only =
        prefetch_weights_to_l2(MR, size_t(n_super) * sizeof(frugal::ops::block_q8_k), size_t(n_super) * sizeof(block_q6_k));
    for (int64_t r = 0; r < rows; ++r) {
        const auto * wb = reinterpret_cast<const block_q6_k *>(w + size_t(r) * w_stride);
        __m256 acc[MR];
        for (int k = 0; k < MR; ++k) acc[k] = _mm256_setzero_ps();
        for (int64_t i = 0; i < n_super; ++i) {
            const block_q6_k & b = wb[i];
            prefetch_ahead(&b, sizeof b, l2_only);
            // Quants are stored +32: 32 · Σ_g sc_g · bsums_g comes off (scale group g = bsums[g]).
            const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(b.scales)));
            const __m512i sc_t = _mm512_permutexvar_epi16(transpose_scales, _mm512_castsi256_si512(sc_all));
            __m512i sumi[MR];
            for (int k = 0; k < MR; ++k) sumi[k] = _mm512_setzero_si512();
            for (int h = 0; h < 2; ++h) {
                const __m512i ql = _mm512_loadu_si512(b.ql + 64 * h); // chunks 0, 1 (low nibbles); 2, 3 (high)
                const __m512i qh = _mm512_broadcast_i64x4(load256(b.qh + 32 * h));
                for (int j = 0; j < 4; j += 2) {
                    const __m512i low = j == 0 ? _mm512_and_si512(ql, nibble)
                                               : _mm512_and_si512(_mm512_srli_epi16(ql, 4), nibble);
                    const __m512i high = j == 0 ? _mm512_sllv_epi16(qh, shl_01) : _mm512_srlv_epi16(qh, shr_23);
                    const __m512i q = _mm512_ternarylogic_epi32(low, high, bits_45, 0xF8); // low | (high & bits_45)
                    // 128-bit quarters: scales 8h + 2j, + 1, + 2, + 3, each over eight int16 lanes.
                    const __m512i scale = _mm512_shuffle_epi32(sc_t, _MM_PERM_ENUM((2 * h + j / 2) * 0x55));
                    for (int k = 0; k < MR; ++k) {
                        const __m512i x = _mm512_loadu_si512(ab[k][i].qs + 128 * h + 32 * j);
                        sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(q, x), scale);
                    }
                }
            }
            for (int k = 0; k < MR; ++k) {
                const frugal::ops::block_q8_k & a = ab[k][i];
                const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc_all, load256(a.bsums)), 5);
                const __m256i sumi8 = _mm256_sub_epi32(
                    _mm256_add_epi32(_mm512_castsi512_si256(sumi[k]), _mm512_extracti64x4_epi64(sumi[k], 1)), offset);
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * half(b.d)), _mm256_cvtepi32_ps(sumi8), acc[k]);
            }
        }
        for (int k = 0; k < MR; ++k) out[k * ldo + r] = hsum256(acc[k]);
    }
}

FRUGAL_AVX512 inline void dot_rows_q6_k(const std::byte * w, size_t w_stride, int64_t rows, const void * act,
                                        int64_t n, float * out) {
    const auto * ab = static_cast<const frugal::ops::block_q8_k *>(act);
    q6_rows<1>(w, w_stride, rows, n / frugal::k_qk_k, &ab, out, 0);
}

// dot_rows_q6_k for m <= k_batch activation rows (act_stride bytes apart) at once: out[j · ldo + r].
FRUGAL_AVX512 inline void dot_rows_q6_k_batch(const std::byte * w, size_t w_stride, int64_t rows, const std::byte * act,
                                              size_t act_stride, int64_t m, int64_t n, float * out, int64_t ldo) {
    const frugal::ops::block_q8_k * ab[frugal::ops::detail::k_batch];
    for (int64_t k = 0; k < m; ++k) ab[k] = reinterpret_cast<const frugal::ops::block_q8_k *>(act + size_t(k) * act_stride);
    const int64_t n_super = n / frugal::k_qk_k;
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX512 { q6_rows<mr()>(w, w_stride, rows, n_super, ab, out, ldo); });
}

// --- Q2_K and Q3_K with Q8_K activations ----------------------------------------------------------
// The AVX2 kernels' 32-element chunks two per zmm (chunk c in lanes 0-7, c + 1 in 8-15): each
// 32-byte group of 2-bit quants broadcast to both halves, shifted per half. Exact integer lane
// sums, added across the halves before the same 256-bit float step: bit-identical.
// out[j · ldo + r] for weight rows r < rows against MR Q8_K activation rows ab[j], each
// super-block unpacked once for all MR (as q6_rows).
template <bool Q3, int MR>
FRUGAL_AVX512 inline void q23_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t n_super,
                                   const frugal::ops::block_q8_k * const * ab, float * out, int64_t ldo) {
    using Block = std::conditional_t<Q3, frugal::block_q3_k, frugal::block_q2_k>;
    const __m512i two_bits = _mm512_set1_epi8(3), three_bits = _mm512_set1_epi8(7);
    // Chunks (c, c + 1) of a group s = c % 4 apart: their 2-bit quants at bits 2s and 2s + 2.
    const __m512i shift_01 = _mm512_mask_blend_epi16(0xFFFF0000, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    const __m512i shift_23 = _mm512_mask_blend_epi16(0xFFFF0000, _mm512_set1_epi16(4), _mm512_set1_epi16(6));
    const __m512i chunk_pair = _mm512_mask_blend_epi16(0xFFFF0000, _mm512_set1_epi16(0), _mm512_set1_epi16(1));
    // Each int16 lane's 128-bit quarter: 0, 1, 2, 3 (as q6_rows): the scales of chunk pair (0, 1)
    // of a group, and (2, 3) at 4 more.
    const __m512i scale_01 =
        _mm512_mask_blend_epi16(0xFFFF0000, _mm512_mask_blend_epi16(0xFF00FF00, _mm512_set1_epi16(0), _mm512_set1_epi16(1)),
                                _mm512_mask_blend_epi16(0xFF00FF00, _mm512_set1_epi16(2), _mm512_set1_epi16(3)));
    const __m512i scale_23 = _mm512_add_epi16(scale_01, _mm512_set1_epi16(4));
    const bool l2_only =
        prefetch_weights_to_l2(MR, size_t(n_super) * sizeof(frugal::ops::block_q8_k), size_t(n_super) * sizeof(Block));
    for (int64_t r = 0; r < rows; ++r) {
        const auto * wb = reinterpret_cast<const Block *>(w + size_t(r) * w_stride);
        __m256 acc[MR];
        for (int k = 0; k < MR; ++k) acc[k] = _mm256_setzero_ps();
        for (int64_t i = 0; i < n_super; ++i) {
            const Block & b = wb[i];
            prefetch_ahead(&b, sizeof b, l2_only);
            // The 16 scales as int16 (Q3_K: less 32), and Q2_K's mins.
            __m256i scales16, mins16;
            __m512i hmask;
            if constexpr (Q3) {
                const frugal::ops::detail::k3_scales sc = frugal::ops::detail::unpack_k3_scales(b.scales);
                const __m128i packed =
                    _mm_setr_epi32(int(sc.words[0]), int(sc.words[1]), int(sc.words[2]), int(sc.words[3]));
                scales16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(packed), _mm256_set1_epi16(32));
                hmask = _mm512_broadcast_i64x4(load256(b.hmask));
            } else {
                const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i *>(b.scales));
                scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0xF)));
                mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0xF)));
            }
            __m512i sumi[MR];
            for (int k = 0; k < MR; ++k) sumi[k] = _mm512_setzero_si512();
            for (int g = 0; g < 2; ++g) {
                const __m512i raw = _mm512_broadcast_i64x4(load256(b.qs + 32 * g));
                // The group's eight scales as int16 lanes 0..7; chunk 4g + s takes 2s and 2s + 1.
                const __m512i sc8 = _mm512_castsi128_si512(g == 0 ? _mm256_castsi256_si128(scales16)
                                                                  : _mm256_extracti128_si256(scales16, 1));
                for (int s = 0; s < 4; s += 2) {
                    const int c = 4 * g + s;
                    const __m512i low = _mm512_srlv_epi16(raw, s == 0 ? shift_01 : shift_23);
                    __m512i q;
                    if constexpr (Q3) { // bits 0-1 from the quants, bit 2 from hmask's bit c (c + 1)
                        // Bit c of each byte to bit 2, per 16-bit lane: nothing from the other byte
                        // reaches a bit 2 (shifts of at most 5).
                        const __m512i high =
                            c == 0 ? _mm512_sllv_epi16(hmask, _mm512_sub_epi16(_mm512_set1_epi16(2), chunk_pair))
                                   : _mm512_srlv_epi16(hmask, _mm512_add_epi16(chunk_pair, _mm512_set1_epi16(short(c - 2))));
                        q = _mm512_and_si512(_mm512_ternarylogic_epi32(two_bits, low, high, 0xCA), three_bits); // two_bits ? low : high
                    } else {
                        q = _mm512_and_si512(low, two_bits);
                    }
                    const __m512i scale = _mm512_permutexvar_epi16(s == 0 ? scale_01 : scale_23, sc8);
                    for (int k = 0; k < MR; ++k) {
                        const __m512i x = _mm512_loadu_si512(ab[k][i].qs + 32 * c);
                        sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(q, x), scale);
                    }
                }
            }
            for (int k = 0; k < MR; ++k) {
                const frugal::ops::block_q8_k & a = ab[k][i];
                const __m256i bsums = load256(a.bsums);
                __m256i sumi8 =
                    _mm256_add_epi32(_mm512_castsi512_si256(sumi[k]), _mm512_extracti64x4_epi64(sumi[k], 1));
                if constexpr (Q3) // the quants went in as q + 4: 4 · Σ_j sc_j · bsums_j comes off
                    sumi8 = _mm256_sub_epi32(sumi8, _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums), 2));
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * half(b.d)), _mm256_cvtepi32_ps(sumi8), acc[k]);
                if constexpr (!Q3)
                    acc[k] = _mm256_fnmadd_ps(_mm256_set1_ps(a.d * half(b.dmin)),
                                              _mm256_cvtepi32_ps(_mm256_madd_epi16(mins16, bsums)), acc[k]);
            }
        }
        for (int k = 0; k < MR; ++k) out[k * ldo + r] = hsum256(acc[k]);
    }
}

template <bool Q3>
FRUGAL_AVX512 inline void dot_rows_q23_k(const std::byte * w, size_t w_stride, int64_t rows, const void * act,
                                         int64_t n, float * out) {
    const auto * ab = static_cast<const frugal::ops::block_q8_k *>(act);
    q23_rows<Q3, 1>(w, w_stride, rows, n / frugal::k_qk_k, &ab, out, 0);
}

// dot_rows_q23_k for m <= k_batch activation rows (act_stride bytes apart) at once: out[j · ldo + r].
template <bool Q3>
FRUGAL_AVX512 inline void dot_rows_q23_k_batch(const std::byte * w, size_t w_stride, int64_t rows,
                                               const std::byte * act, size_t act_stride, int64_t m, int64_t n,
                                               float * out, int64_t ldo) {
    const frugal::ops::block_q8_k * ab[frugal::ops::detail::k_batch];
    for (int64_t k = 0; k < m; ++k) ab[k] = reinterpret_cast<const frugal::ops::block_q8_k *>(act + size_t(k) * act_stride);
    const int64_t n_super = n / frugal::k_qk_k;
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX512 { q23_rows<Q3, mr()>(w, w_stride, rows, n_super, ab, out, ldo); });
}

// --- IQ4_XS with Q8_K activations ---------------------------------------------------------------
// Two 32-element sub-blocks per zmm (2p in lanes 0-7, 2p + 1 in 8-15). AVX-512 has no vpsignb for
// the AVX2 dot's sign trick, so the levels go in as v + 128 (unsigned, vpdpbusd's operand) and
// each 4-element lane starts at −128 · Σ x of its elements (a table made once per call per
// activation row): the lane then holds Σ v · x exactly, which the sub-block's ls − 32 multiplies
// (vpmulld). The same int32 lane sums as the AVX2 dot's, the same 256-bit float step after:
// bit-identical.
// Per activation row, the table: for each super-block and pair p, 16 lanes of −128 · Σ x over
// elements 4l..4l+3 of sub-blocks 2p (lanes 0-7) and 2p + 1 (8-15): n int32 in all.
FRUGAL_AVX512 inline void iq4_xs_activation_offsets(const frugal::ops::block_q8_k * a, int64_t n_super, int32_t * out) {
    for (int64_t i = 0; i < n_super; ++i)
        for (int p = 0; p < 4; ++p) {
            const __m512i x = _mm512_loadu_si512(a[i].qs + 64 * p);
            const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), x);
            _mm512_store_si512(out + 64 * i + 16 * p, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 7)));
        }
}

// unpack_iq4_xs_scales in vector lanes (int32 lane j: scale j): in general registers it was about
// a third of this loop's instructions.
FRUGAL_AVX512 inline __m256i iq4_xs_scales(const frugal::block_iq4_xs & b) {
    uint32_t low;
    std::memcpy(&low, b.scales_l, sizeof low);
    const __m256i low4 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(low)), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                          _mm256_set1_epi32(0xF));
    const __m256i high2 = _mm256_srlv_epi32(_mm256_set1_epi32(int(b.scales_h) << 4), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    return _mm256_or_si256(low4, _mm256_and_si256(high2, _mm256_set1_epi32(0x30)));
}

// out[j · ldo + r] for weight rows r < rows against MR activation rows ab[j] with their tables
// offsets[j] (iq4_xs_activation_offsets): each super-block unpacked once for all MR.
template <int MR>
FRUGAL_AVX512 inline void iq4_xs_rows(const std::byte * w, size_t w_stride, int64_t rows, int64_t n_super,
                                      const frugal::ops::block_q8_k * const * ab, const int32_t * const * offsets,
                                      float * out, int64_t ldo) {
    using frugal::block_iq4_xs;
    const __m512i levels = iq4_nl_unsigned_levels(); // v + 128 as u8
    // A pair's 32 nibble bytes as [bytes 0-15, bytes 0-15, 16-31, 16-31], each quarter's nibbles
    // (low, high, low, high): sub-block 2p's elements 0-15, 16-31, then 2p + 1's.
    const __m512i spread = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
    const __m512i nibble_shift =
        _mm512_mask_blend_epi16(0xFF00FF00, _mm512_set1_epi16(0), _mm512_set1_epi16(4));
    const bool l2_only =
        prefetch_weights_to_l2(MR, size_t(n_super) * sizeof(frugal::ops::block_q8_k), size_t(n_super) * sizeof(block_iq4_xs));
    for (int64_t r = 0; r < rows; ++r) {
        const auto * wb = reinterpret_cast<const block_iq4_xs *>(w + size_t(r) * w_stride);
        __m256 acc[MR];
        for (int k = 0; k < MR; ++k) acc[k] = _mm256_setzero_ps();
        for (int64_t i = 0; i < n_super; ++i) {
            const block_iq4_xs & b = wb[i];
            prefetch_ahead(&b, sizeof b, l2_only);
            // The 8 scales ls − 32 as int32 lanes 0-7, then per pair 2p in lanes 0-7, 2p + 1 in 8-15.
            const __m512i scales = _mm512_castsi256_si512(_mm256_sub_epi32(iq4_xs_scales(b), _mm256_set1_epi32(32)));
            __m512i sumi[MR];
            for (int k = 0; k < MR; ++k) sumi[k] = _mm512_setzero_si512();
            for (int p = 0; p < 4; ++p) {
                const __m512i raw = _mm512_permutexvar_epi64(spread, _mm512_castsi256_si512(load256(b.qs + 32 * p)));
                const __m512i index = _mm512_and_si512(_mm512_srlv_epi16(raw, nibble_shift), _mm512_set1_epi8(0x0F));
                const __m512i v = _mm512_shuffle_epi8(levels, index);
                const __m512i scale = _mm512_permutexvar_epi32(
                    _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * p), _mm512_set1_epi32(2 * p + 1)), scales);
                for (int k = 0; k < MR; ++k) {
                    const __m512i start = _mm512_load_si512(offsets[k] + 64 * i + 16 * p);
                    const __m512i dot = _mm512_dpbusd_epi32(start, v, _mm512_loadu_si512(ab[k][i].qs + 64 * p));
                    sumi[k] = _mm512_add_epi32(sumi[k], _mm512_mullo_epi32(dot, scale));
                }
            }
            for (int k = 0; k < MR; ++k) {
                const __m256i sumi8 =
                    _mm256_add_epi32(_mm512_castsi512_si256(sumi[k]), _mm512_extracti64x4_epi64(sumi[k], 1));
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(ab[k][i].d * half(b.d)), _mm256_cvtepi32_ps(sumi8), acc[k]);
            }
        }
        for (int k = 0; k < MR; ++k) out[k * ldo + r] = hsum256(acc[k]);
    }
}

// iq4_xs_rows for m <= k_batch activation rows (act_stride bytes apart): out[j · ldo + r], their
// tables in batch_buffer.
FRUGAL_AVX512 inline void dot_rows_iq4_xs_batch(const std::byte * w, size_t w_stride, int64_t rows,
                                                const std::byte * act, size_t act_stride, int64_t m, int64_t n,
                                                float * out, int64_t ldo) {
    using frugal::ops::block_q8_k;
    const int64_t n_super = n / frugal::k_qk_k;
    auto * tables = reinterpret_cast<int32_t *>(batch_buffer(size_t(n * m) * sizeof(int32_t)));
    const block_q8_k * ab[frugal::ops::detail::k_batch];
    const int32_t * offsets[frugal::ops::detail::k_batch];
    for (int64_t j = 0; j < m; ++j) {
        ab[j] = reinterpret_cast<const block_q8_k *>(act + size_t(j) * act_stride);
        iq4_xs_activation_offsets(ab[j], n_super, tables + j * n);
        offsets[j] = tables + j * n;
    }
    with_batch_rows(m, [&](auto mr) FRUGAL_AVX512 { iq4_xs_rows<mr()>(w, w_stride, rows, n_super, ab, offsets, out, ldo); });
}

FRUGAL_AVX512 inline void dot_rows_iq4_xs(const std::byte * w, size_t w_stride, int64_t rows, const void * act,
                                          int64_t n, float * out) {
    dot_rows_iq4_xs_batch(w, w_stride, rows, static_cast<const std::byte *>(act), 0, 1, n, out, 0);
}

// The block of each 32-element type the stored-block loop takes.
template <frugal::dtype T>
struct stored_block_of;
template <>
struct stored_block_of<frugal::dtype::q8_0> : std::type_identity<block_q8_0> {};
template <>
struct stored_block_of<frugal::dtype::q4_0> : std::type_identity<frugal::block_q4_0> {};
template <>
struct stored_block_of<frugal::dtype::q4_1> : std::type_identity<frugal::block_q4_1> {};
template <>
struct stored_block_of<frugal::dtype::q5_0> : std::type_identity<frugal::block_q5_0> {};
template <>
struct stored_block_of<frugal::dtype::q5_1> : std::type_identity<frugal::block_q5_1> {};
template <>
struct stored_block_of<frugal::dtype::iq4_nl> : std::type_identity<frugal::block_iq4_nl> {};
template <frugal::dtype T>
using stored_block = typename stored_block_of<T>::type;

// The row loops of the 32-element types as the decode table takes them: rows longer than the
// kernel's stack holds go to the AVX2 one.
template <frugal::dtype T>
FRUGAL_AVX512 inline void dot_rows_32(const std::byte * w, size_t w_stride, int64_t rows, const void * act, int64_t n,
                                      float * out) {
    if (n / k_qk > k_stored_max_blocks) return frugal::ops::detail::avx2_kernels(T)->dot_rows(w, w_stride, rows, act, n, out);
    dot_rows_stored<stored_block<T>>(w, w_stride, rows, act, n, out);
}

// dot_rows_stored_batch for the 32-element block types (kernels::dot_rows_batch).
template <frugal::dtype T>
FRUGAL_AVX512 inline void dot_rows_32_batch(const std::byte * w, size_t w_stride, int64_t rows, const std::byte * act,
                                            size_t act_stride, int64_t m, int64_t n, float * out, int64_t ldo) {
    dot_rows_stored_batch<stored_block<T>>(w, w_stride, rows, act, act_stride, m, n, out, ldo);
}

// A row loop's one-row case: every kernel here is a row loop, and the decode table's single-row
// dot is it with rows = 1.
template <auto dot_rows>
FRUGAL_AVX512 inline float one_row(const void * w, const void * act, int64_t n) {
    float r;
    dot_rows(static_cast<const std::byte *>(w), 0, 1, act, n, &r);
    return r;
}

} // namespace FRUGAL_AVX512_NS
