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

#include "ops/q8_gemm.hpp"

namespace FRUGAL_AVX512_NS {

namespace q8 = frugal::ops::q8;

// y[i, 16t + c] for i < MR activation rows, t < NT tiles, c < cols[t] (<= 16).
// Per block b of 32 inputs: the int32 lanes start at the tile's corrections (−128 · Σ qw, see
// q8_gemm.hpp), take 8 vpdpbusd (4 activation bytes broadcast × 4 quants of 16 columns each),
// and then hold the exact block sums Σ qw · qx; one fused multiply-add scales them by dw · dx
// into the f32 accumulators. Registers: MR·NT int32 + MR·NT f32 accumulators (16 at 4 × 2).
//   tiles: NT tiles of nb blocks, tile t at tiles + t · nb · k_block_bytes
//   xq: [MR, ldx] u8 (qx + 128), xd: [MR, nb] f32, y: [MR, ldy]
template <int MR, int NT>
FRUGAL_AVX512 inline void q8_rows(const std::byte * tiles, int64_t nb, const uint8_t * xq, int64_t ldx,
                                  const float * xd, float * y, int64_t ldy, const int64_t * cols) {
    __m512 acc[MR][NT];
    for (int r = 0; r < MR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
    const int64_t tile_stride = nb * q8::k_block_bytes;
    for (int64_t b = 0; b < nb; ++b) {
        const std::byte * blk[NT];
        __m512i sums[MR][NT];
        for (int t = 0; t < NT; ++t) {
            blk[t] = tiles + t * tile_stride + b * q8::k_block_bytes;
            const __m512i correction = _mm512_loadu_si512(blk[t] + q8::k_block_quant_bytes + 4 * q8::k_tile_cols);
            for (int r = 0; r < MR; ++r) sums[r][t] = correction;
        }
#pragma GCC unroll 8
        for (int64_t g = 0; g < q8::k_groups; ++g) {
            __m512i w[NT];
            for (int t = 0; t < NT; ++t) w[t] = _mm512_loadu_si512(blk[t] + g * 4 * q8::k_tile_cols);
            for (int r = 0; r < MR; ++r) {
                int32_t four;
                std::memcpy(&four, xq + r * ldx + b * frugal::k_qk + g * 4, 4);
                const __m512i x = _mm512_set1_epi32(four);
                for (int t = 0; t < NT; ++t) sums[r][t] = _mm512_dpbusd_epi32(sums[r][t], x, w[t]);
            }
        }
        for (int t = 0; t < NT; ++t) {
            const __m512 dw = _mm512_loadu_ps(reinterpret_cast<const float *>(blk[t] + q8::k_block_quant_bytes));
            for (int r = 0; r < MR; ++r) {
                const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(xd[r * nb + b]));
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][t]), scale, acc[r][t]);
            }
        }
    }
    for (int r = 0; r < MR; ++r)
        for (int t = 0; t < NT; ++t) {
            float * out = y + r * ldy + t * q8::k_tile_cols;
            if (cols[t] == q8::k_tile_cols) {
                _mm512_storeu_ps(out, acc[r][t]);
            } else { // a partial last tile (plain stores: SIMDe, which the test builds with, has no masked ones)
                alignas(64) float lanes[q8::k_tile_cols];
                _mm512_store_ps(lanes, acc[r][t]);
                std::memcpy(out, lanes, size_t(cols[t]) * sizeof(float));
            }
        }
}

// Rows 0..cols-1 (cols <= 16) of w (type laid out as l) into one tile at out (q8_gemm.hpp):
// each block's 8 groups gathered across the 16 rows (vpgatherdd: column c's dword g), their
// sums taken with vpdpbusd against ones for the corrections, the scales converted per column.
// Columns past cols repeat the last row's addresses (always valid) and are zeroed.
FRUGAL_AVX512 inline void pack_tile(const q8::block_layout & l, const std::byte * w, size_t w_stride, int64_t cols,
                                    int64_t nb, std::byte * out) {
    alignas(64) int32_t row_offsets[q8::k_tile_cols];
    for (int64_t c = 0; c < q8::k_tile_cols; ++c) row_offsets[c] = int32_t(std::min(c, cols - 1) * int64_t(w_stride));
    const __m512i rows = _mm512_load_si512(row_offsets);
    const __mmask16 live = __mmask16(cols >= q8::k_tile_cols ? 0xFFFF : (1u << cols) - 1);
    const __m512i ones = _mm512_set1_epi8(1), low_nibbles = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    for (int64_t b = 0; b < nb; ++b) {
        std::byte * blk = out + b * q8::k_block_bytes;
        const std::byte * quants = w + l.q_offset + b * l.q_step;
        __m512i q[q8::k_groups];
        if (l.nibbles) { // group g < 4: low nibbles of bytes 4g..4g+3 (elements 4g..), g >= 4: their high ones
            for (int g = 0; g < q8::k_groups / 2; ++g) {
                const __m512i v = _mm512_i32gather_epi32(rows, quants + 4 * g, 1);
                q[g] = _mm512_maskz_mov_epi32(live, _mm512_sub_epi8(_mm512_and_si512(v, low_nibbles), eight));
                q[g + q8::k_groups / 2] = _mm512_maskz_mov_epi32(
                    live, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi32(v, 4), low_nibbles), eight));
            }
        } else {
            for (int g = 0; g < q8::k_groups; ++g)
                q[g] = _mm512_maskz_mov_epi32(live, _mm512_i32gather_epi32(rows, quants + 4 * g, 1));
        }
        __m512i sum = _mm512_setzero_si512();
        for (int g = 0; g < q8::k_groups; ++g) {
            _mm512_storeu_si512(blk + g * 4 * q8::k_tile_cols, q[g]);
            sum = _mm512_dpbusd_epi32(sum, ones, q[g]);
        }
        _mm512_storeu_si512(blk + q8::k_block_quant_bytes + 4 * q8::k_tile_cols,
                            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7))); // −128 · Σ q
        float * scales = reinterpret_cast<float *>(blk + q8::k_block_quant_bytes);
        for (int64_t c = 0; c < q8::k_tile_cols; ++c) {
            uint16_t d = 0;
            if (c < cols) std::memcpy(&d, w + c * int64_t(w_stride) + l.d_offset + b * l.d_step, sizeof d);
            scales[c] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(d))); // vcvtph2ps
        }
    }
}

// Rows of 1 to 3 activations (the last ones of m).
template <int NT>
FRUGAL_AVX512 inline void q8_rows_tail(int64_t rows, const std::byte * tiles, int64_t nb, const uint8_t * xq,
                                       int64_t ldx, const float * xd, float * y, int64_t ldy, const int64_t * cols) {
    switch (rows) {
    case 1: q8_rows<1, NT>(tiles, nb, xq, ldx, xd, y, ldy, cols); break;
    case 2: q8_rows<2, NT>(tiles, nb, xq, ldx, xd, y, ldy, cols); break;
    case 3: q8_rows<3, NT>(tiles, nb, xq, ldx, xd, y, ldy, cols); break;
    default: break;
    }
}

// q8::chunk_fn: packs up to 32 weight rows into two tiles (one when cols <= 16), then runs every
// activation row against them, four at a time. The packed tiles (640 bytes per block each: 360
// KiB for k = 8960) stay in L2 while the activations stream past.
FRUGAL_AVX512 inline void q8_chunk(frugal::dtype t, const std::byte * w, size_t w_stride, int64_t cols,
                                   const q8::activations & a, int64_t m, float * y, int64_t ldy, std::byte * scratch) {
    constexpr int64_t k_rows = 4;
    const int64_t nb = a.k / frugal::k_qk;
    const int64_t tiles = cols > q8::k_tile_cols ? 2 : 1;
    const int64_t tile_cols[2] = {std::min(cols, q8::k_tile_cols), cols - q8::k_tile_cols};
    const q8::block_layout l = q8::layout_of(t, nb);
    for (int64_t tile = 0; tile < tiles; ++tile)
        pack_tile(l, w + tile * q8::k_tile_cols * int64_t(w_stride), w_stride, tile_cols[tile], nb,
                  scratch + tile * nb * q8::k_block_bytes);
    int64_t i = 0;
    if (tiles == 2) {
        for (; i + k_rows <= m; i += k_rows)
            q8_rows<k_rows, 2>(scratch, nb, a.q + i * a.k, a.k, a.d + i * nb, y + i * ldy, ldy, tile_cols);
        q8_rows_tail<2>(m - i, scratch, nb, a.q + i * a.k, a.k, a.d + i * nb, y + i * ldy, ldy, tile_cols);
    } else {
        for (; i + k_rows <= m; i += k_rows)
            q8_rows<k_rows, 1>(scratch, nb, a.q + i * a.k, a.k, a.d + i * nb, y + i * ldy, ldy, tile_cols);
        q8_rows_tail<1>(m - i, scratch, nb, a.q + i * a.k, a.k, a.d + i * nb, y + i * ldy, ldy, tile_cols);
    }
}

} // namespace FRUGAL_AVX512_NS
