// q8_gemm_avx512.hpp - the q8 prefill path's kernel (q8_gemm.hpp) on AVX-512 VNNI, written once
// and compiled twice, as quant_avx512_kernels.hpp is: into the library (q8_gemm_avx512.cpp,
// native instructions under a target attribute) and into a test against SIMD Everywhere's
// portable AVX-512 (tests/ops/q8_gemm_test.cpp). The includer provides the intrinsics and
// defines FRUGAL_AVX512 (function attribute) and FRUGAL_AVX512_NS (namespace). Private to lib/ops
// and its tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <type_traits>

#include "ops/q8_gemm.hpp"

namespace FRUGAL_AVX512_NS {

namespace q8 = frugal::ops::q8;

// A packed Q6_K or Q3_K block (pack_tile_q6_k, pack_tile_q3_k) keeps per half h < 2 its scales
// d · sc as f32 [16] (half 0 where the other types keep dw, half 1 where Q4_K keeps mw) and −Σ qw
// as int16 [2][16] where the others keep their corrections: each half's sums carry 128 · Σ qw too
// much.
inline constexpr int64_t q6_k_half_scales(int64_t h) { return h == 0 ? q8::k_block_scales : q8::k_block_offsets; }
FRUGAL_AVX512 inline __m512i q6_k_half_correction(const std::byte * blk, int64_t h) {
    const auto * minus_sums = reinterpret_cast<const __m256i *>(blk + q8::k_block_corrections) + h;
    return _mm512_slli_epi32(_mm512_cvtepi16_epi32(_mm256_loadu_si256(minus_sums)), 7);
}

// A packed Q4_K / Q5_K super-block (k_sub_scales) keeps its 8 offsets as integers: the 6-bit mins
// m_j as int16 pairs (m_2p, m_2p+1), lane c column c's, in the offsets slot of its block p < 4
// (vpdpwssd's operand against a row's pair of block sums), and −dmin (f32 [16]) in block 4's.
inline constexpr int64_t k_neg_dmin_block = 4;

// A packed Q2_K super-block's offsets sit after a chunk's tiles (q8_chunk), per tile and
// super-block: its 16 mins m_h as int16 pairs (m_2p, m_2p+1), lane c column c's, for p < 8, then
// −dmin (f32 [16]). The halves' slots of its blocks are taken by their scales and corrections.
inline constexpr int64_t k_q2_k_offsets_bytes = 9 * 64;
inline constexpr int64_t k_q2_k_offsets_per_block = k_q2_k_offsets_bytes / 8;
// A chunk's scratch per 32-element block of k (q8::kernel::scratch_per_block): two tiles, and
// Q2_K's offsets.
inline constexpr size_t k_scratch_per_block = size_t(2 * (q8::k_block_bytes + k_q2_k_offsets_per_block));

// A packed super-block's offsets into part[r][t] for MR activation rows: −dmin · Σ_j m_j · Σ qx_j
// over its Pairs pairs of blocks (Q4_K, Q5_K: 4 pairs of 32-element blocks) or halves (Q2_K: 8
// of 16-element halves), the sum in int32 lanes (|.| <= 8 · 63 · 4064, exact in f32). mins: the
// first pair's int16 pairs, the others mins_stride apart; neg_dmin: −dmin's f32 [16]; x_sums:
// row 0's Σ qx of the super-block's blocks (halves), rows row_sums apart.
template <int MR, int NT, int Pairs>
FRUGAL_AVX512 inline void super_block_offsets(const std::byte * mins, int64_t mins_stride, const std::byte * neg_dmin,
                                              const int16_t * x_sums, int64_t row_sums, __m512 (&part)[MR][NT], int t) {
    const __m512 minus_dmin = _mm512_loadu_ps(reinterpret_cast<const float *>(neg_dmin));
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
        __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int p = 0; p < Pairs; ++p) {
            int32_t sum_pair; // Σ qx of blocks (halves) 2p and 2p + 1, int16 each
            std::memcpy(&sum_pair, x_sums + r * row_sums + 2 * p, sizeof sum_pair);
            sum = _mm512_dpwssd_epi32(sum, _mm512_set1_epi32(sum_pair), _mm512_loadu_si512(mins + p * mins_stride));
        }
        part[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), minus_dmin, part[r][t]);
    }
}

// The kinds of block a weight type has: plain (Q8_0, Q4_0, Q5_0, IQ4_NL, IQ4_XS), plain with an
// offset each (Q4_1, Q5_1), the sub-blocks of a Q4_K or Q5_K super-block (scales and offsets),
// Q6_K's and Q3_K's (an int8 scale per half) and Q2_K's (a scale and an offset per half).
enum class block_kind { plain, plain_offsets, super_offsets, halves, halves_offsets };
constexpr block_kind block_kind_of(frugal::dtype t) {
    if (t == frugal::dtype::q2_k) return block_kind::halves_offsets;
    if (q8::half_scales(t)) return block_kind::halves;
    if (q8::has_offsets(t)) return q8::super_blocks(t) ? block_kind::super_offsets : block_kind::plain_offsets;
    return block_kind::plain;
}

// y[i, 16t + c] for i < MR activation rows, t < NT tiles, c < cols[t] (<= 16).
// Per block b of 32 inputs: the int32 lanes start at zero (a register copy of the corrections
// for each measured a few percent slower on Zen 5), take 8 vpdpbusd (4 activation bytes
// broadcast × 4 quants of 16 columns each) and, with the tile's corrections (−128 · Σ qw, see
// q8_gemm.hpp) added, hold the exact block sums Σ qw · qx; one fused multiply-add scales them by
// dw · dx into the f32 accumulators (plain_offsets: a second adds mw · dx · Σ qx; super_offsets:
// by dw into a super-block's part, which dx scales at its end). With super_offsets (Q4_K, Q5_K)
// the super-block's end also takes its offsets, −dmin · Σ_j m_j · Σ qx_j: the integer sum in 4
// vpdpwssd (as llama.cpp sums its mins), then one fused multiply-add by −dmin into the part,
// where they had been a fused multiply-add per block (mw · dx · Σ qx): 81 → 78 issues per
// super-block. With halves (Q6_K, Q3_K) each 16-element half's 4
// vpdpbusd go into lanes that start at the half's correction, so they end as its exact sum, and
// one fused multiply-add per half scales that by d · sc into the super-block's part. Registers:
// MR·NT int32 + MR·NT f32 accumulators (16 at 4 × 2), and MR·NT more: the odd groups' int32
// lanes for plain blocks, or the super-block's parts (super_offsets, halves).
// On Zen 4, vpdpbusd, vmulps and vfmadd share two pipes (measured: 8 vpdpbusd and 4 vmulps take
// 11.6 cycles, against 7.8 alone; cvt, add and vscalefps ran beside them for free), so the
// epilogue's multiplies cap vpdpbusd's share of the issues: 8 / 10 for plain blocks, 8 / 11 with
// plain_offsets, 64 / 78 per super-block with super_offsets, and 8 / 10 for halves since the
// halves' scales are floats (it was 8 / 12 with an int32 vpmulld per half and a vmulps for
// dw · dx). Hot Q6_K tiles, one thread: 144-148 -> 167-176
// GMAC/s (Q8_0's: 178-185); 1.5B Q6_K pp512 +3-16 % (3 alternating pairs).
//   tiles: NT tiles of nb blocks, tile t at tiles + t · nb · k_block_bytes, blocks [b0, b0 + nb)
//   of the rows
//   a: the activations, first row at row i0; y: [MR, ldy], written, or added to (accumulate)
template <int MR, int NT, block_kind Kind>
FRUGAL_AVX512 inline void q8_rows(const std::byte * tiles, int64_t b0, int64_t nb, const q8::activations & a,
                                  int64_t i0, float * y, int64_t ldy, const int64_t * cols, bool accumulate) {
    const int64_t row_blocks = a.k / frugal::k_qk;
    const uint8_t * xq = a.q + i0 * a.k + b0 * frugal::k_qk;
    const float * xd = a.d + i0 * row_blocks + b0;
    constexpr bool super_offsets = Kind == block_kind::super_offsets, half_offsets = Kind == block_kind::halves_offsets;
    constexpr bool halves = Kind == block_kind::halves || half_offsets;
    // Σ qx per block, or per half (Q2_K): row_sums per row.
    const int64_t row_sums = half_offsets ? 2 * row_blocks : row_blocks;
    const int16_t * x_sums = Kind == block_kind::plain_offsets || super_offsets || half_offsets
                                 ? a.sums + i0 * row_sums + b0 * (half_offsets ? 2 : 1)
                                 : nullptr;
    // With offsets (Q4_K, Q5_K) or halves (Q6_K, Q3_K) the activations are Q8_K, one dx per 8 blocks:
    // part sums a super-block's Σ sum · dw, and dx multiplies it once at the super-block's end.
    constexpr bool super_block_parts = super_offsets || halves;
    __m512 acc[MR][NT], part[MR][NT];
    for (int r = 0; r < MR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = part[r][t] = _mm512_setzero_ps();
    const int64_t tile_stride = nb * q8::k_block_bytes;
    for (int64_t b = 0; b < nb; ++b) {
        const std::byte * blk[NT];
        // Plain blocks sum their odd groups into lanes of their own (two chains of 4 vpdpbusd where
        // one of 8 waited on each other's latency: Q4_0 and Q8_0 kernels +7 %, pp512 +4-8 % on Zen
        // 5); with super_offsets or halves the registers for that are taken.
        constexpr bool two_chains = !super_offsets && !halves;
        // The lanes the products go into: the block sums (their odd groups' apart), or (halves)
        // the current half's, which start at its correction.
        __m512i sums[MR][NT], odd[MR][NT];
        for (int t = 0; t < NT; ++t) {
            blk[t] = tiles + t * tile_stride + b * q8::k_block_bytes;
            if constexpr (!halves)
                for (int r = 0; r < MR; ++r) sums[r][t] = odd[r][t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 8
        for (int64_t g = 0; g < q8::k_groups; ++g) {
            if (halves && g % 4 == 0)
                for (int t = 0; t < NT; ++t) {
                    const __m512i correction = q6_k_half_correction(blk[t], g / 4);
                    for (int r = 0; r < MR; ++r) sums[r][t] = correction;
                }
            __m512i w[NT];
            for (int t = 0; t < NT; ++t) w[t] = _mm512_loadu_si512(blk[t] + g * 4 * q8::k_tile_cols);
            for (int r = 0; r < MR; ++r) {
                int32_t four;
                std::memcpy(&four, xq + r * a.k + b * frugal::k_qk + g * 4, 4);
                const __m512i x = _mm512_set1_epi32(four);
                for (int t = 0; t < NT; ++t) {
                    __m512i & into = two_chains && g % 2 ? odd[r][t] : sums[r][t];
                    into = _mm512_dpbusd_epi32(into, x, w[t]);
                }
            }
            if (halves && g % 4 == 3)
                for (int t = 0; t < NT; ++t) {
                    const __m512 dsc = _mm512_loadu_ps(reinterpret_cast<const float *>(blk[t] + q6_k_half_scales(g / 4)));
                    for (int r = 0; r < MR; ++r)
                        part[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][t]), dsc, part[r][t]);
                }
        }
        // Unrolled: once the offsets were inlined, GCC left this loop rolled and kept acc and part
        // in memory through every block (the Q4_K kernel ran about 30 % slower).
#pragma GCC unroll 2
        for (int t = 0; t < NT; ++t) {
            if constexpr (!halves) {
                const __m512i correction = _mm512_loadu_si512(blk[t] + q8::k_block_corrections);
                const __m512 dw = _mm512_loadu_ps(reinterpret_cast<const float *>(blk[t] + q8::k_block_scales));
                for (int r = 0; r < MR; ++r) {
                    const __m512i sum =
                        _mm512_add_epi32(two_chains ? _mm512_add_epi32(sums[r][t], odd[r][t]) : sums[r][t], correction);
                    if constexpr (super_offsets) {
                        part[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), dw, part[r][t]);
                    } else {
                        const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(xd[r * row_blocks + b]));
                        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[r][t]);
                    }
                }
                if constexpr (Kind == block_kind::plain_offsets) {
                    const __m512 mw = _mm512_loadu_ps(reinterpret_cast<const float *>(blk[t] + q8::k_block_offsets));
                    for (int r = 0; r < MR; ++r) {
                        const int64_t at = r * row_blocks + b;
                        acc[r][t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xd[at] * float(x_sums[at])), acc[r][t]);
                    }
                }
            }
            if (super_block_parts && b % 8 == 7) {
                if constexpr (super_offsets) {
                    const std::byte * head = blk[t] - 7 * q8::k_block_bytes;
                    super_block_offsets<MR, NT, 4>(head + q8::k_block_offsets, q8::k_block_bytes,
                                                   head + k_neg_dmin_block * q8::k_block_bytes + q8::k_block_offsets,
                                                   x_sums + b - 7, row_sums, part, t);
                }
                if constexpr (half_offsets) { // after the NT tiles (q8_chunk)
                    const std::byte * offsets =
                        tiles + NT * tile_stride + (t * (nb / 8) + b / 8) * k_q2_k_offsets_bytes;
                    super_block_offsets<MR, NT, 8>(offsets, 64, offsets + 8 * 64, x_sums + 2 * (b - 7), row_sums, part, t);
                }
                for (int r = 0; r < MR; ++r) {
                    acc[r][t] = _mm512_fmadd_ps(part[r][t], _mm512_set1_ps(xd[r * row_blocks + b]), acc[r][t]);
                    part[r][t] = _mm512_setzero_ps();
                }
            }
        }
    }
    for (int r = 0; r < MR; ++r)
        for (int t = 0; t < NT; ++t) {
            float * out = y + r * ldy + t * q8::k_tile_cols;
            if (cols[t] == q8::k_tile_cols) {
                _mm512_storeu_ps(out, accumulate ? _mm512_add_ps(_mm512_loadu_ps(out), acc[r][t]) : acc[r][t]);
            } else { // a partial last tile (plain stores: SIMDe, which the test builds with, has no masked ones)
                alignas(64) float lanes[q8::k_tile_cols];
                _mm512_store_ps(lanes, acc[r][t]);
                for (int64_t c = 0; c < cols[t]; ++c) out[c] = accumulate ? out[c] + lanes[c] : lanes[c];
            }
        }
}

// What packing a tile shares between block types: its 16 rows' addresses (columns past cols
// repeat the last row's, always valid, and are zeroed through `live`). Packing reads them with
// plain loads: on Zen 5 a vpgatherdd cost more than its 16 loads.
struct tile_rows {
    __mmask16 live;
    const std::byte * row[q8::k_tile_cols];
};
FRUGAL_AVX512 inline tile_rows rows_of(const std::byte * w, size_t w_stride, int64_t cols) {
    tile_rows rows;
    for (int64_t c = 0; c < q8::k_tile_cols; ++c) rows.row[c] = w + std::min(c, cols - 1) * int64_t(w_stride);
    rows.live = __mmask16(cols >= q8::k_tile_cols ? 0xFFFF : (1u << cols) - 1);
    return rows;
}

// The dword at offset `at` of each of a tile's rows, lane c from row c.
FRUGAL_AVX512 inline __m512i row_dwords(const tile_rows & rows, int64_t at) {
    alignas(64) uint32_t words[q8::k_tile_cols];
    for (int64_t c = 0; c < q8::k_tile_cols; ++c) std::memcpy(&words[c], rows.row[c] + at, sizeof words[c]);
    return _mm512_load_si512(words);
}

// The 16 bytes at offset `at` of each of a tile's rows, transposed: lane c of out[g] = row c's
// dword g. Four rows per register (row j + 4i in 128-bit lane i of z[j]), then a 4 × 4
// transpose within each lane: 16 loads and 8 unpacks in place of 4 vpgatherdd (on Zen 5 the
// packing, with the scales' conversion, went from 5.7 to 2.3 % of a Q4_0 prefill).
FRUGAL_AVX512 inline void transposed_dwords(const tile_rows & rows, int64_t at, __m512i * out) {
    const auto bytes16 = [&](int64_t c) {
        return _mm_loadu_si128(reinterpret_cast<const __m128i *>(rows.row[c] + at));
    };
    __m512i z[4];
    for (int j = 0; j < 4; ++j) {
        z[j] = _mm512_castsi128_si512(bytes16(j));
        z[j] = _mm512_inserti32x4(z[j], bytes16(j + 4), 1);
        z[j] = _mm512_inserti32x4(z[j], bytes16(j + 8), 2);
        z[j] = _mm512_inserti32x4(z[j], bytes16(j + 12), 3);
    }
    // Per 128-bit lane: lo01 = r0g0 r1g0 r0g1 r1g1, hi01 = the same of g2 and g3; 23 of rows 2 and 3.
    const __m512i lo01 = _mm512_unpacklo_epi32(z[0], z[1]), hi01 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i lo23 = _mm512_unpacklo_epi32(z[2], z[3]), hi23 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(lo01, lo23);
    out[1] = _mm512_unpackhi_epi64(lo01, lo23);
    out[2] = _mm512_unpacklo_epi64(hi01, hi23);
    out[3] = _mm512_unpackhi_epi64(hi01, hi23);
}

// The same for 32 bytes: out[g] for the k_groups dwords of each row at offset `at`.
FRUGAL_AVX512 inline void transposed_groups(const tile_rows & rows, int64_t at, __m512i * out) {
    transposed_dwords(rows, at, out);
    transposed_dwords(rows, at + 16, out + 4);
}

// The fp16 in the low (high = false) or high half of each lane's dword, lane c row c's, as f32
// (0 past cols) at out.
FRUGAL_AVX512 inline void store_halves(const tile_rows & rows, __m512i words, bool high, float * out) {
    const __m256i halves = _mm512_cvtepi32_epi16(high ? _mm512_srli_epi32(words, 16) : words);
    _mm512_storeu_ps(out, _mm512_maskz_mov_ps(rows.live, _mm512_cvtph_ps(halves)));
}

// The fp16 at byte `at` of a tile's rows as f32, 0 past cols: q8::block_halves in one
// conversion, for a block's scales or (Q4_1, Q5_1) offsets (each dword's low half is the value; the
// bytes after one are always the block's own). A vpgatherdd here was 55 % of packing a Q4_0
// tile on Zen 5: the loads alone took a packing-only bench from 13.9 to 8.3 ns a block.
FRUGAL_AVX512 inline void block_halves(const tile_rows & rows, int64_t at, float * out) {
    store_halves(rows, row_dwords(rows, at), false, out);
}

// Each byte's nibble at bit `shift` (0: low, 4: high) of its dword: (dword >> shift) & 0x0F per byte.
FRUGAL_AVX512 inline __m512i nibbles(__m512i v, int shift) {
    return _mm512_and_si512(_mm512_srli_epi32(v, shift), _mm512_set1_epi8(0x0F));
}

// A block's 8 quant groups into its slot, with the corrections −128 · Σ q per column
// (vpdpbusd against ones sums each lane's four quants; in four chains of two, as one chain of
// eight was the critical path of packing a block).
FRUGAL_AVX512 inline void store_quants(std::byte * blk, const __m512i * q) {
    __m512i sums[4];
    for (int g = 0; g < q8::k_groups; ++g) {
        _mm512_storeu_si512(blk + g * 4 * q8::k_tile_cols, q[g]);
        sums[g % 4] = _mm512_dpbusd_epi32(g < 4 ? _mm512_setzero_si512() : sums[g % 4], _mm512_set1_epi8(1), q[g]);
    }
    const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(sums[0], sums[1]), _mm512_add_epi32(sums[2], sums[3]));
    const __m512i correction = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)); // −128 · Σ q
    _mm512_storeu_si512(blk + q8::k_block_corrections, correction);
}

// IQ4_NL's 16 levels in each 128-bit lane: a nibble indexes them with one byte shuffle.
FRUGAL_AVX512 inline __m512i iq4_nl_levels() {
    return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i *>(frugal::k_iq4_nl_values)));
}

// Bits [shift, shift + 4) of each lane's dword, bit i moved to bit 4 of byte i: Q5_0's fifth bits
// of 4 consecutive elements, over their nibbles. (x · 0x00204081 puts bit i of a 4-bit x at bit
// 8i; its four shifted copies never overlap, so nothing carries.)
FRUGAL_AVX512 inline __m512i fifth_bits(__m512i bits, int shift) {
    const __m512i four = _mm512_and_si512(_mm512_srli_epi32(bits, shift), _mm512_set1_epi32(0xF));
    const __m512i spread = _mm512_mullo_epi32(four, _mm512_set1_epi32(0x00204081));
    return _mm512_slli_epi32(_mm512_and_si512(spread, _mm512_set1_epi32(0x01010101)), 4);
}

// Bit `bit` (< 8) of each byte at its bit 4, the other bits cleared: a repacked row's fifth bits
// (q8::fifth_bits_in) over their nibbles. A dword rotate by (4 − bit) mod 32 brings no other
// byte's bit to a bit 4.
FRUGAL_AVX512 inline __m512i byte_bit_at_4(__m512i v, int bit) {
    return _mm512_and_si512(_mm512_rolv_epi32(v, _mm512_set1_epi32((36 - bit) % 32)), _mm512_set1_epi8(0x10));
}

// Blocks [b0, b0 + nb) of rows 0..cols-1 (cols <= 16) of row_blocks 32-element blocks (Q8_0, Q4_0
// and Q5_0 in either layout, Q4_1, Q5_1 and IQ4_NL, laid out as l) into one tile at out
// (q8_gemm.hpp): each block's 8 groups transposed across the 16 rows (column c's dword g), its
// scales (and Q4_1's and Q5_1's offsets) converted.
// A repacked row holds the scales (offsets) of 8 consecutive blocks in 16 bytes and, in a full
// group, their fifth bits in 32: within a run of 8 blocks from a multiple of 8, these are
// transposed once for the run rather than gathered for each block (Zen 4, 8 rows: packing took
// as long as the multiplication).
FRUGAL_AVX512 inline void pack_tile(const q8::block_layout & l, const std::byte * w, size_t w_stride, int64_t cols,
                                    int64_t row_blocks, int64_t b0, int64_t nb, std::byte * out) {
    constexpr int64_t run = frugal::ops::detail::k_fifth_bits_group;
    const tile_rows rows = rows_of(w, w_stride, cols);
    const __m512i zero = _mm512_set1_epi8(char(l.zero));
    const __m512i levels = iq4_nl_levels();
    const auto signed_quants = [&](__m512i q) FRUGAL_AVX512 {
        return l.levels ? _mm512_shuffle_epi8(levels, q) : _mm512_sub_epi8(q, zero);
    };
    const bool five = l.fifth != q8::fifth_bits::none, offsets = l.m_offset >= 0;
    const bool runs = l.d_step == int64_t(sizeof(uint16_t)); // repacked
    // The current run's scales and offsets (dword g: blocks 2g, 2g + 1) and fifth bits (group g <
    // 4 of 16-byte half h at [4h + g]: bytes 4g..4g+3 of half h).
    __m512i run_scales[4], run_offsets[4], run_fifth[8];
    for (int64_t b = b0; b < b0 + nb; ++b) {
        std::byte * blk = out + (b - b0) * q8::k_block_bytes;
        const int64_t quants = l.q_offset + b * l.q_step; // within each row
        const int64_t j = b % run, start = b - j;
        const bool in_run = runs && start >= b0 && start + run <= b0 + nb;
        if (in_run && j == 0) {
            transposed_dwords(rows, l.d_offset + b * l.d_step, run_scales);
            if (offsets) transposed_dwords(rows, l.m_offset + b * l.d_step, run_offsets);
            if (five) transposed_groups(rows, q8::fifth_bits_in(l, row_blocks, b).bytes, run_fifth);
        }
        __m512i q[q8::k_groups];
        if (l.nibbles) { // group g < 4: low nibbles of bytes 4g..4g+3 (elements 4g..), g >= 4: their
                         // high ones (elements 16 + 4g..)
            // The fifth bits: a qh word per column (high), or a repacked group's 16 bytes (bytes16[g]:
            // those of elements 4g..4g+3 and 16 + 4g..; the run's half where it has them).
            __m512i high = _mm512_setzero_si512(), own_bytes[4];
            const frugal::ops::detail::fifth_bits_place fifth =
                five ? q8::fifth_bits_in(l, row_blocks, b) : frugal::ops::detail::fifth_bits_place{};
            if (five && fifth.bit < 0) high = row_dwords(rows, fifth.bytes);
            if (five && fifth.bit >= 0 && !in_run) transposed_dwords(rows, fifth.bytes, own_bytes);
            const __m512i * bytes16 = in_run ? run_fifth + 4 * (j % 2) : own_bytes;
            __m512i v[q8::k_groups / 2];
            transposed_dwords(rows, quants, v);
            for (int g = 0; g < q8::k_groups / 2; ++g) {
                __m512i q_lo = nibbles(v[g], 0), q_hi = nibbles(v[g], 4);
                if (five && fifth.bit < 0) {
                    q_lo = _mm512_or_si512(q_lo, fifth_bits(high, 4 * g));
                    q_hi = _mm512_or_si512(q_hi, fifth_bits(high, 16 + 4 * g));
                } else if (five) {
                    q_lo = _mm512_or_si512(q_lo, byte_bit_at_4(bytes16[g], fifth.bit));
                    q_hi = _mm512_or_si512(q_hi, byte_bit_at_4(bytes16[g], fifth.bit + 1));
                }
                q[g] = _mm512_maskz_mov_epi32(rows.live, signed_quants(q_lo));
                q[g + q8::k_groups / 2] = _mm512_maskz_mov_epi32(rows.live, signed_quants(q_hi));
            }
        } else {
            transposed_groups(rows, quants, q);
            for (int g = 0; g < q8::k_groups; ++g) q[g] = _mm512_maskz_mov_epi32(rows.live, q[g]);
        }
        store_quants(blk, q);
        auto * scales = reinterpret_cast<float *>(blk + q8::k_block_scales);
        auto * block_offsets = reinterpret_cast<float *>(blk + q8::k_block_offsets); // Q4_1's and Q5_1's m
        if (in_run) {
            store_halves(rows, run_scales[j / 2], j % 2 == 1, scales);
            if (offsets) store_halves(rows, run_offsets[j / 2], j % 2 == 1, block_offsets);
        } else {
            block_halves(rows, l.d_offset + b * l.d_step, scales);
            if (offsets) block_halves(rows, l.m_offset + b * l.d_step, block_offsets);
        }
    }
}

// Byte k of each dword lane, as the lane's value.
FRUGAL_AVX512 inline __m512i dword_byte(__m512i x, int k) {
    return _mm512_and_si512(_mm512_srli_epi32(x, unsigned(8 * k)), _mm512_set1_epi32(0xFF));
}

// A Q4_K / Q5_K super-block's 8 sub-block scales d · sc_j (q8::k_quant_sub_scales, the 6-bit
// pairs of unpack_k_scales) and its offsets (the mins m_j in pairs and −dmin, k_neg_dmin_block)
// for a tile's rows at once, lanes as columns (0 past the live ones), into the slots at blk.
// head: the super-block's offset within each row; its first 16 bytes are d, dmin and the 12
// scale bytes. Column by column, with scalar
// unpacking and scattered stores, this was 8.5 % of a Q4_K_M prefill on Zen 4 (`perf`).
FRUGAL_AVX512 inline void k_sub_scales(const tile_rows & rows, int64_t head, std::byte * blk) {
    __m512i v[4]; // lane c: row c's d | dmin, then scale bytes 0-3 (a), 4-7 (b), 8-11 (c)
    transposed_dwords(rows, head, v);
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v[0]));
    const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v[0], 16)));
    const __m512i low6 = _mm512_set1_epi32(63), low4 = _mm512_set1_epi32(15);
    __m512i mins[8];
    for (int j = 0; j < 8; ++j) {
        __m512i sc, mn;
        if (j < 4) {
            sc = _mm512_and_si512(dword_byte(v[1], j), low6);
            mn = _mm512_and_si512(dword_byte(v[2], j), low6);
        } else { // the low 4 bits from c, the top 2 from a's (b's) top bits
            const __m512i c = dword_byte(v[3], j - 4);
            const __m512i top_sc = _mm512_slli_epi32(_mm512_srli_epi32(dword_byte(v[1], j - 4), 6), 4);
            const __m512i top_mn = _mm512_slli_epi32(_mm512_srli_epi32(dword_byte(v[2], j - 4), 6), 4);
            sc = _mm512_or_si512(_mm512_and_si512(c, low4), top_sc);
            mn = _mm512_or_si512(_mm512_srli_epi32(c, 4), top_mn);
        }
        _mm512_storeu_ps(reinterpret_cast<float *>(blk + j * q8::k_block_bytes + q8::k_block_scales),
                         _mm512_maskz_mul_ps(rows.live, d, _mm512_cvtepi32_ps(sc)));
        mins[j] = _mm512_maskz_mov_epi32(rows.live, mn);
    }
    for (int p = 0; p < 4; ++p) // m_2p in each lane's low int16, m_2p+1 in its high one
        _mm512_storeu_si512(blk + p * q8::k_block_bytes + q8::k_block_offsets,
                            _mm512_or_si512(mins[2 * p], _mm512_slli_epi32(mins[2 * p + 1], 16)));
    _mm512_storeu_ps(reinterpret_cast<float *>(blk + k_neg_dmin_block * q8::k_block_bytes + q8::k_block_offsets),
                     _mm512_maskz_sub_ps(rows.live, _mm512_setzero_ps(), dmin));
}

// The same for Q4_K / Q5_K (Block): super-block sb's sub-block j = 2h + p holds nibble p of
// qs[32h + e] (plus, Q5_K, bit j of qh[e] as the fifth bit) for its elements e < 32, with
// scale d · sc_j and the super-block's offsets (k_sub_scales).
template <class Block>
FRUGAL_AVX512 inline void pack_tile_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                      std::byte * out) {
    constexpr bool q5 = std::is_same_v<Block, frugal::block_q5_k>;
    static_assert(offsetof(Block, scales) == 4 && sizeof(Block::scales) == 12); // k_sub_scales' 16 bytes
    const tile_rows rows = rows_of(w, w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const int64_t at = sb * int64_t(sizeof(Block)); // within each row
        std::byte * blk = out + sb * 8 * q8::k_block_bytes; // its 8 sub-blocks' slots
        __m512i high_bits[q8::k_groups];
        if constexpr (q5) transposed_groups(rows, at + int64_t(offsetof(Block, qh)), high_bits);
        for (int h = 0; h < 4; ++h) {
            __m512i q[2][q8::k_groups], v[q8::k_groups];
            transposed_groups(rows, at + int64_t(offsetof(Block, qs)) + 32 * h, v);
            for (int g = 0; g < q8::k_groups; ++g) {
                for (int p = 0; p < 2; ++p) {
                    __m512i quant = nibbles(v[g], 4 * p);
                    if constexpr (q5) {
                        const __m512i bit =
                            _mm512_and_si512(_mm512_srli_epi32(high_bits[g], 2 * h + p), _mm512_set1_epi8(1));
                        quant = _mm512_or_si512(quant, _mm512_slli_epi32(bit, 4));
                    }
                    q[p][g] = _mm512_maskz_mov_epi32(rows.live, quant);
                }
            }
            for (int p = 0; p < 2; ++p) store_quants(blk + (2 * h + p) * q8::k_block_bytes, q[p]);
        }
        k_sub_scales(rows, at, blk);
    }
}

// A halves block's −Σ qw per half (q6_k_half_correction), from each column's Σ qw in sum[h]:
// |Σ qw| <= 16 · 32 (Q6_K), so int16.
FRUGAL_AVX512 inline void store_half_corrections(std::byte * blk, const __m512i (&sum)[2]) {
    for (int h = 0; h < 2; ++h)
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(blk + q8::k_block_corrections) + h,
                            _mm512_cvtepi32_epi16(_mm512_sub_epi32(_mm512_setzero_si512(), sum[h])));
}

// Rows 0..cols-1 (cols <= 16) of Q6_K super-blocks into one tile at out: block j of super-block
// sb (q6_k_block_of) into slot 8 · sb + j, its quants as q − 32, and per half the scales d · sc
// and −Σ (q − 32) (q6_k_half_scales, q6_k_half_correction).
FRUGAL_AVX512 inline void pack_tile_q6_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                         std::byte * out) {
    using frugal::block_q6_k;
    static_assert(offsetof(block_q6_k, d) + sizeof(block_q6_k::d) == sizeof(block_q6_k)); // d ends the block
    const tile_rows rows = rows_of(w, w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const int64_t at = sb * int64_t(sizeof(block_q6_k)); // within each row
        // The super-block's 16 int8 scales (lane c of scales[k / 4], byte k % 4: row c's scale k)
        // and d (the high half of the dword that ends the block), for all 8 blocks. Read row by
        // row for every block, they had been 2.1 % of a Q4_K_M prefill on Zen 4 (`perf`).
        __m512i scales[4];
        transposed_dwords(rows, at + int64_t(offsetof(block_q6_k, scales)), scales);
        const __m512i d_high = row_dwords(rows, at + int64_t(offsetof(block_q6_k, d)) - 2);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(d_high, 16)));
        for (int j = 0; j < 8; ++j) {
            const q8::q6_k_block l = q8::q6_k_block_of(j);
            std::byte * blk = out + (sb * 8 + j) * q8::k_block_bytes;
            __m512i low[q8::k_groups], high[q8::k_groups];
            transposed_groups(rows, at + int64_t(offsetof(block_q6_k, ql)) + l.ql, low);
            transposed_groups(rows, at + int64_t(offsetof(block_q6_k, qh)) + l.qh, high);
            for (int h = 0; h < 2; ++h) { // d · sc: at most 11 · 8 significant bits, exact in f32; 0 past cols
                const int k = int(l.scale) + h;
                const __m512i sc = _mm512_cvtepi8_epi32(_mm512_cvtepi32_epi8(dword_byte(scales[k / 4], k % 4)));
                _mm512_storeu_ps(reinterpret_cast<float *>(blk + q6_k_half_scales(h)),
                                 _mm512_maskz_mul_ps(rows.live, d, _mm512_cvtepi32_ps(sc)));
            }
            __m512i sum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
            for (int g = 0; g < q8::k_groups; ++g) {
                const __m512i two_bits =
                    _mm512_and_si512(_mm512_srli_epi32(high[g], unsigned(l.qh_shift)), _mm512_set1_epi8(3));
                const __m512i q6 = _mm512_or_si512(nibbles(low[g], int(l.ql_shift)), _mm512_slli_epi32(two_bits, 4));
                const __m512i quant = _mm512_maskz_mov_epi32(rows.live, _mm512_sub_epi8(q6, _mm512_set1_epi8(32)));
                _mm512_storeu_si512(blk + g * 4 * q8::k_tile_cols, quant);
                sum[g / 4] = _mm512_dpbusd_epi32(sum[g / 4], _mm512_set1_epi8(1), quant);
            }
            store_half_corrections(blk, sum);
        }
    }
}

// Rows 0..cols-1 (cols <= 16) of Q3_K super-blocks into one tile at out, laid out as Q6_K's:
// block j of super-block sb (elements 32j..32j+31: bits 2 · (j % 4) of qs[32 · (j / 4) + l] with
// bit j of hmask[l] as 4, less 4) into slot 8 · sb + j, its quants as q in −4..3, and per half the
// scales d · (sc − 32) and −Σ q (q6_k_half_scales, q6_k_half_correction).
FRUGAL_AVX512 inline void pack_tile_q3_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                         std::byte * out) {
    using frugal::block_q3_k;
    static_assert(offsetof(block_q3_k, scales) == 96 && offsetof(block_q3_k, d) == 108 && sizeof(block_q3_k) == 110);
    const tile_rows rows = rows_of(w, w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const int64_t at = sb * int64_t(sizeof(block_q3_k)); // within each row
        // The block's last 16 bytes (from 94: two quant bytes, the 12 scale bytes, d), so that no
        // read passes its end: scale byte i is byte 2 + i, d the last dword's high half.
        __m512i tail[4];
        transposed_dwords(rows, at + 94, tail);
        const auto scale_byte = [&](int i) FRUGAL_AVX512 { return dword_byte(tail[(2 + i) / 4], (2 + i) % 4); };
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(tail[3], 16)));
        __m512i low[2][q8::k_groups], third[q8::k_groups];
        for (int half = 0; half < 2; ++half)
            transposed_groups(rows, at + int64_t(offsetof(block_q3_k, qs)) + 32 * half, low[half]);
        transposed_groups(rows, at + int64_t(offsetof(block_q3_k, hmask)), third);
        for (int j = 0; j < 8; ++j) {
            std::byte * blk = out + (sb * 8 + j) * q8::k_block_bytes;
            for (int h = 0; h < 2; ++h) { // unpack_k3_scales' bits; d · (sc − 32) is exact in f32
                const int k = 2 * j + h;
                const __m512i low4 = k < 8 ? _mm512_and_si512(scale_byte(k), _mm512_set1_epi32(15))
                                           : _mm512_srli_epi32(scale_byte(k - 8), 4);
                const __m512i top2 =
                    _mm512_and_si512(_mm512_srli_epi32(scale_byte(8 + k % 4), unsigned(2 * (k / 4))), _mm512_set1_epi32(3));
                const __m512i sc = _mm512_sub_epi32(_mm512_or_si512(low4, _mm512_slli_epi32(top2, 4)), _mm512_set1_epi32(32));
                _mm512_storeu_ps(reinterpret_cast<float *>(blk + q6_k_half_scales(h)),
                                 _mm512_maskz_mul_ps(rows.live, d, _mm512_cvtepi32_ps(sc)));
            }
            __m512i sum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
            for (int g = 0; g < q8::k_groups; ++g) {
                const __m512i two_bits =
                    _mm512_and_si512(_mm512_srli_epi32(low[j / 4][g], unsigned(2 * (j % 4))), _mm512_set1_epi8(3));
                const __m512i bit = _mm512_and_si512(_mm512_srli_epi32(third[g], unsigned(j)), _mm512_set1_epi8(1));
                const __m512i q3 = _mm512_or_si512(two_bits, _mm512_slli_epi32(bit, 2));
                const __m512i quant = _mm512_maskz_mov_epi32(rows.live, _mm512_sub_epi8(q3, _mm512_set1_epi8(4)));
                _mm512_storeu_si512(blk + g * 4 * q8::k_tile_cols, quant);
                sum[g / 4] = _mm512_dpbusd_epi32(sum[g / 4], _mm512_set1_epi8(1), quant);
            }
            store_half_corrections(blk, sum);
        }
    }
}

// Rows 0..cols-1 (cols <= 16) of Q2_K super-blocks into one tile at out, as halves: block j of
// super-block sb (bits 2 · (j % 4) of qs[32 · (j / 4) + l]) into slot 8 · sb + j, its quants q
// in 0..3, per half k = 2j + h the scale d · sc_k and −Σ q; the super-block's mins and −dmin at
// offsets + sb · k_q2_k_offsets_bytes.
FRUGAL_AVX512 inline void pack_tile_q2_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                         std::byte * out, std::byte * offsets) {
    using frugal::block_q2_k;
    static_assert(offsetof(block_q2_k, qs) == 16 && offsetof(block_q2_k, d) == 80 && offsetof(block_q2_k, dmin) == 82);
    const tile_rows rows = rows_of(w, w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const int64_t at = sb * int64_t(sizeof(block_q2_k)); // within each row
        __m512i scales[4]; // lane c of scales[k / 4], byte k % 4: row c's byte k (sc in the low nibble, m in the high)
        transposed_dwords(rows, at, scales);
        const __m512i d_dmin = row_dwords(rows, at + int64_t(offsetof(block_q2_k, d)));
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d_dmin));
        const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(d_dmin, 16)));
        __m512i low[2][q8::k_groups];
        for (int half = 0; half < 2; ++half)
            transposed_groups(rows, at + int64_t(offsetof(block_q2_k, qs)) + 32 * half, low[half]);
        const auto scale_byte = [&](int k) FRUGAL_AVX512 { return dword_byte(scales[k / 4], k % 4); };
        for (int j = 0; j < 8; ++j) {
            std::byte * blk = out + (sb * 8 + j) * q8::k_block_bytes;
            for (int h = 0; h < 2; ++h) { // d · sc: exact in f32
                const __m512i sc = _mm512_and_si512(scale_byte(2 * j + h), _mm512_set1_epi32(15));
                _mm512_storeu_ps(reinterpret_cast<float *>(blk + q6_k_half_scales(h)),
                                 _mm512_maskz_mul_ps(rows.live, d, _mm512_cvtepi32_ps(sc)));
            }
            __m512i sum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
            for (int g = 0; g < q8::k_groups; ++g) {
                const __m512i two_bits = _mm512_and_si512(_mm512_srli_epi32(low[j / 4][g], unsigned(2 * (j % 4))), _mm512_set1_epi8(3));
                const __m512i quant = _mm512_maskz_mov_epi32(rows.live, two_bits);
                _mm512_storeu_si512(blk + g * 4 * q8::k_tile_cols, quant);
                sum[g / 4] = _mm512_dpbusd_epi32(sum[g / 4], _mm512_set1_epi8(1), quant);
            }
            store_half_corrections(blk, sum);
        }
        std::byte * mins = offsets + sb * k_q2_k_offsets_bytes;
        for (int p = 0; p < 8; ++p) { // m_2p in each lane's low int16, m_2p+1 in its high one
            const __m512i m0 = _mm512_srli_epi32(scale_byte(2 * p), 4), m1 = _mm512_srli_epi32(scale_byte(2 * p + 1), 4);
            _mm512_storeu_si512(mins + p * 64, _mm512_maskz_mov_epi32(rows.live, _mm512_or_si512(m0, _mm512_slli_epi32(m1, 16))));
        }
        _mm512_storeu_ps(reinterpret_cast<float *>(mins + 8 * 64), _mm512_maskz_sub_ps(rows.live, _mm512_setzero_ps(), dmin));
    }
}

// Rows 0..cols-1 (cols <= 16) of IQ4_XS super-blocks into one tile at out, as plain blocks: block j
// of super-block sb (qs[16j..16j+15], low nibbles first) into slot 8 · sb + j, its nibbles through
// IQ4_NL's levels (one byte shuffle) as the quants, d · (ls − 32) as its scale (exact in f32).
FRUGAL_AVX512 inline void pack_tile_iq4_xs(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                           std::byte * out) {
    using frugal::block_iq4_xs;
    static_assert(offsetof(block_iq4_xs, scales_h) == 2 && offsetof(block_iq4_xs, scales_l) == 4 &&
                  offsetof(block_iq4_xs, qs) == 8);
    const tile_rows rows = rows_of(w, w_stride, cols);
    const __m512i levels = iq4_nl_levels();
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const int64_t at = sb * int64_t(sizeof(block_iq4_xs)); // within each row
        const __m512i head = row_dwords(rows, at);             // d | scales_h << 16
        const __m512i low_bits = row_dwords(rows, at + 4);     // scales_l: scale j's low 4 bits at bit 4j
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head));
        const __m512i high_bits = _mm512_srli_epi32(head, 16); // scale j's top 2 bits at bit 2j
        for (int j = 0; j < 8; ++j) {
            std::byte * blk = out + (sb * 8 + j) * q8::k_block_bytes;
            __m512i v[q8::k_groups / 2], q[q8::k_groups];
            transposed_dwords(rows, at + int64_t(offsetof(block_iq4_xs, qs)) + 16 * j, v);
            for (int g = 0; g < q8::k_groups / 2; ++g) {
                q[g] = _mm512_maskz_mov_epi32(rows.live, _mm512_shuffle_epi8(levels, nibbles(v[g], 0)));
                q[g + q8::k_groups / 2] = _mm512_maskz_mov_epi32(rows.live, _mm512_shuffle_epi8(levels, nibbles(v[g], 4)));
            }
            store_quants(blk, q);
            const __m512i low = _mm512_and_si512(_mm512_srli_epi32(low_bits, unsigned(4 * j)), _mm512_set1_epi32(15));
            const __m512i high = _mm512_and_si512(_mm512_srli_epi32(high_bits, unsigned(2 * j)), _mm512_set1_epi32(3));
            const __m512i ls = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)), _mm512_set1_epi32(32));
            _mm512_storeu_ps(reinterpret_cast<float *>(blk + q8::k_block_scales),
                             _mm512_maskz_mul_ps(rows.live, d, _mm512_cvtepi32_ps(ls)));
        }
    }
}

// The activation rows of a chunk, four at a time, then the 1 to 3 left, prefetching the next
// chunk's weight rows meanwhile (q8::next_chunk_prefetch: `ahead`, `ahead_bytes`).
template <int NT, block_kind Kind>
FRUGAL_AVX512 inline void q8_all_rows(const q8::tiles_part & part, const q8::activations & a, int64_t m, float * y,
                                      int64_t ldy, const int64_t * cols, const std::byte * ahead,
                                      int64_t ahead_bytes) {
    q8::next_chunk_prefetch prefetch(ahead, ahead_bytes, m / 4);
    const auto rows = [&](auto mr, int64_t i) FRUGAL_AVX512 {
        q8_rows<decltype(mr)::value, NT, Kind>(part.tiles, part.b0, part.nb, a, i, y + i * ldy, ldy, cols,
                                               part.accumulate);
    };
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
        rows(std::integral_constant<int, 4>{}, i);
        prefetch.step();
    }
    switch (m - i) {
    case 1: rows(std::integral_constant<int, 1>{}, i); break;
    case 2: rows(std::integral_constant<int, 2>{}, i); break;
    case 3: rows(std::integral_constant<int, 3>{}, i); break;
    default: break;
    }
}

// q8_all_rows for the kind of block weight type t has.
template <int NT>
FRUGAL_AVX512 inline void q8_multiply(frugal::dtype t, const q8::tiles_part & part, const q8::activations & a, int64_t m,
                                      float * y, int64_t ldy, const int64_t * cols, const std::byte * ahead,
                                      int64_t ahead_bytes) {
    switch (block_kind_of(t)) {
    case block_kind::plain: q8_all_rows<NT, block_kind::plain>(part, a, m, y, ldy, cols, ahead, ahead_bytes); break;
    case block_kind::plain_offsets:
        q8_all_rows<NT, block_kind::plain_offsets>(part, a, m, y, ldy, cols, ahead, ahead_bytes);
        break;
    case block_kind::super_offsets:
        q8_all_rows<NT, block_kind::super_offsets>(part, a, m, y, ldy, cols, ahead, ahead_bytes);
        break;
    case block_kind::halves: q8_all_rows<NT, block_kind::halves>(part, a, m, y, ldy, cols, ahead, ahead_bytes); break;
    case block_kind::halves_offsets:
        q8_all_rows<NT, block_kind::halves_offsets>(part, a, m, y, ldy, cols, ahead, ahead_bytes);
        break;
    }
}

// Packed tiles a chunk keeps in L2 at most (q8::packed_parts). Without parts,
// a 2-tile chunk of a 18944-wide row (833 KiB, the R1-Distill-Qwen-7B down projection) ran at
// 584 GMAC/s and of 28672 (1.2 MiB, Llama-70B's) at 505-534, against 690-740 for rows of
// 4096-14336 (Zen 5's L2: 1 MiB; Q4_0, 512 rows, 2 threads). One tile per chunk instead ran slower
// still (541 and 492).
inline constexpr int64_t k_packed_bytes_max = 640 << 10;

// 16 activations times scale, rounded to nearest with ties to even (as nearest_int), at most 127,
// stored as q + 128 at out; returns the quants.
FRUGAL_AVX512 inline __m512i quantize16(const float * x, __m512 scale, uint8_t * out) {
    const __m512i v = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), scale)),
                                       _mm512_set1_epi32(127));
    const __m512i stored = _mm512_add_epi32(v, _mm512_set1_epi32(q8::k_act_offset));
    _mm_storeu_si128(reinterpret_cast<__m128i *>(out), _mm512_cvtepi32_epi8(stored));
    return v;
}

// q8::quantize_fn: q8::quantize_activations bit for bit, without its per-row block buffer. Rows
// are contiguous, so x is a run of m · k/32 blocks.
//   Q8_0 blocks: amax → d = fp16(amax / 127) (widened again), q = x · (127 / amax); sums = Σ q
//   per block where t has offsets (Q4_1, Q5_1);
//   Q8_K super-blocks (super_blocks(t)): the signed value of largest magnitude, the first on
//   ties, sets iscale = −127 / max and d = 1 / iscale for its 8 blocks; sums = Σ q per block (per half for Q2_K)
//   where t has offsets. An all-zero super-block has d = 0, quants 0.
FRUGAL_AVX512 inline void quantize_activations(frugal::dtype t, const float * x, int64_t m, int64_t k, uint8_t * q,
                                               float * d, int16_t * sums) {
    using frugal::k_qk;
    const int64_t blocks = m * (k / k_qk);
    const bool offsets = q8::sums_per_block(t) == 1, per_half = q8::sums_per_block(t) == 2;
    if (!q8::super_blocks(t)) {
        for (int64_t b = 0; b < blocks; ++b) {
            const float * xb = x + b * k_qk;
            const __m512 both =
                _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb)), _mm512_abs_ps(_mm512_loadu_ps(xb + 16)));
            const float amax = _mm512_reduce_max_ps(both);
            // Through fp16 and back with F16C, which rounds as fp32_to_fp16 does (to nearest even).
            d[b] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(amax / 127.f), _MM_FROUND_TO_NEAREST_INT)));
            const __m512 id = _mm512_set1_ps(amax != 0.f ? 127.f / amax : 0.f);
            const __m512i lo = quantize16(xb, id, q + b * k_qk), hi = quantize16(xb + 16, id, q + b * k_qk + 16);
            if (offsets) sums[b] = int16_t(_mm512_reduce_add_epi32(_mm512_add_epi32(lo, hi)));
        }
        return;
    }
    constexpr int64_t per_super = frugal::k_qk_k / k_qk; // 8 blocks
    for (int64_t sb = 0; sb < blocks / per_super; ++sb) {
        const float * xs = x + sb * frugal::k_qk_k;
        uint8_t * qs = q + sb * frugal::k_qk_k;
        __m512 most = _mm512_setzero_ps();
        for (int v = 0; v < 16; ++v) most = _mm512_max_ps(most, _mm512_abs_ps(_mm512_loadu_ps(xs + 16 * v)));
        const float amax = _mm512_reduce_max_ps(most);
        float max = 0.f;
        for (int v = 0; v < 16 && amax != 0.f; ++v) {
            const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xs + 16 * v)), _mm512_set1_ps(amax),
                                                     _CMP_EQ_OQ);
            if (hit) {
                max = xs[16 * v + __builtin_ctz(hit)];
                break;
            }
        }
        const float iscale = amax != 0.f ? -127.f / max : 0.f;
        const float dv = amax != 0.f ? 1.f / iscale : 0.f;
        for (int64_t j = 0; j < per_super; ++j) {
            const __m512i lo = quantize16(xs + j * k_qk, _mm512_set1_ps(iscale), qs + j * k_qk);
            const __m512i hi = quantize16(xs + j * k_qk + 16, _mm512_set1_ps(iscale), qs + j * k_qk + 16);
            const int64_t b = sb * per_super + j;
            d[b] = dv;
            if (offsets) sums[b] = int16_t(_mm512_reduce_add_epi32(_mm512_add_epi32(lo, hi)));
            if (per_half) {
                sums[2 * b] = int16_t(_mm512_reduce_add_epi32(lo));
                sums[2 * b + 1] = int16_t(_mm512_reduce_add_epi32(hi));
            }
        }
    }
}

// q8::chunk_fn: packs up to 32 weight rows into two tiles (one when cols <= 16), then runs every
// activation row against them. The packed tiles (704 bytes per block each: 385 KiB for
// k = 8960) stay in L2 while the activations stream past; longer rows go in parts of their
// blocks (k_packed_bytes_max).
FRUGAL_AVX512 inline void q8_chunk(frugal::dtype t, const std::byte * w, size_t w_stride, int64_t cols,
                                   const q8::activations & a, int64_t m, float * y, int64_t ldy, std::byte * scratch) {
    const int64_t row_blocks = a.k / frugal::k_qk;
    const int64_t tiles = cols > q8::k_tile_cols ? 2 : 1;
    const int64_t tile_cols[2] = {std::min(cols, q8::k_tile_cols), cols - q8::k_tile_cols};
    const bool q2_k = t == frugal::dtype::q2_k;
    const int64_t block_bytes = q8::k_block_bytes + (q2_k ? k_q2_k_offsets_per_block : 0);
    const q8::packed_parts parts(t, row_blocks, tiles * block_bytes, k_packed_bytes_max);
    for (int64_t part = 0; part < parts.count(); ++part) {
        const int64_t b0 = parts.first(part), nb = parts.first(part + 1) - b0;
        for (int64_t tile = 0; tile < tiles; ++tile) {
            const std::byte * rows = w + tile * q8::k_tile_cols * int64_t(w_stride);
            std::byte * out = scratch + tile * nb * q8::k_block_bytes;
            const int64_t sb0 = b0 / 8; // the K-quants' first super-block
            if (t == frugal::dtype::q6_k)
                pack_tile_q6_k(rows + sb0 * int64_t(sizeof(frugal::block_q6_k)), w_stride, tile_cols[tile], nb / 8, out);
            else if (t == frugal::dtype::q3_k)
                pack_tile_q3_k(rows + sb0 * int64_t(sizeof(frugal::block_q3_k)), w_stride, tile_cols[tile], nb / 8, out);
            else if (q2_k) // its offsets after the tiles (q8_rows)
                pack_tile_q2_k(rows + sb0 * int64_t(sizeof(frugal::block_q2_k)), w_stride, tile_cols[tile], nb / 8, out,
                               scratch + tiles * nb * q8::k_block_bytes + tile * (nb / 8) * k_q2_k_offsets_bytes);
            else if (t == frugal::dtype::iq4_xs)
                pack_tile_iq4_xs(rows + sb0 * int64_t(sizeof(frugal::block_iq4_xs)), w_stride, tile_cols[tile], nb / 8,
                                 out);
            else if (t == frugal::dtype::q4_k)
                pack_tile_k<frugal::block_q4_k>(rows + sb0 * int64_t(sizeof(frugal::block_q4_k)), w_stride,
                                                tile_cols[tile], nb / 8, out);
            else if (t == frugal::dtype::q5_k)
                pack_tile_k<frugal::block_q5_k>(rows + sb0 * int64_t(sizeof(frugal::block_q5_k)), w_stride,
                                                tile_cols[tile], nb / 8, out);
            else
                pack_tile(q8::layout_of(t, row_blocks), rows, w_stride, tile_cols[tile], row_blocks, b0, nb, out);
        }
        // The next chunk's rows are asked for while the last part multiplies.
        const bool last = part + 1 == parts.count();
        const std::byte * next = w + cols * int64_t(w_stride);
        const int64_t next_bytes = last ? cols * int64_t(w_stride) : 0;
        const q8::tiles_part packed{scratch, b0, nb, part > 0};
        if (tiles == 2)
            q8_multiply<2>(t, packed, a, m, y, ldy, tile_cols, next, next_bytes);
        else
            q8_multiply<1>(t, packed, a, m, y, ldy, tile_cols, next, next_bytes);
    }
}

} // namespace FRUGAL_AVX512_NS
