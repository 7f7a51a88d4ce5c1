// q8_gemm.hpp - the q8 prefill path (ops::prefill_gemm::q8): llama.cpp's block arithmetic with the
// block sums taken in integers,
//   Y[m, n] = Σ_b dw[n, b] · dx[m, b] · Σ_{k ∈ block b} qw[n, k] · qx[m, k]
//                + Σ_b mw[n, b] · dx[m, b] · Σ_{k ∈ block b} qx[m, k]      (Q4_K, Q5_K, Q4_1, Q5_1)
// qx, dx: the activations' Q8_0 blocks (Q8_K for K-quants: one dx per 256), exactly as
// quantize_activation makes them for the weight type (the values llama.cpp and frugal's decode
// kernels multiply); qw, dw, mw: the weight's own quants, block scales and offsets (Q8_0 as
// stored, Q4_0 as q − 8 and Q5_0 as q − 16 with mw = 0; Q4_1, Q5_1 as q with dw = d and mw = m; Q4_K
// and Q5_K per 32-element sub-block: dw = d · sc, mw = −dmin · m, qw = 0..15 or 0..31; Q6_K as
// q − 32 (Q3_K: q, with sc − 32 for sc) with dw = d, each 16-element half's sum multiplied by
// its int8 scale sc: in int32 as llama.cpp does (AVX2), or by d · sc in f32, exact, where the
// AVX-512 kernel scales each half's own). Each block (half) sum is exact in int32 lanes, so this
// path takes the f32 path's products and only sums them in another order: no fidelity is
// traded for speed, unlike bf16 and int8. (The AVX-512 kernel takes a Q4_K or Q5_K
// super-block's offsets as llama.cpp does: −dmin · dx · Σ_b m_b · Σ qx, the sum in int32.)
//
// The activation format here is portable. Two kernels multiply it, each packing weight rows in
// its own layout: AVX-512 VNNI (q8_gemm_avx512.hpp, whose layout follows) and AVX2
// (q8_gemm_avx2.cpp). Private to lib/ops and its tests.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "frugal/dtype.hpp"
#include "ops/quant_kernels.hpp"

namespace frugal::ops::q8 {

// Weight types the path multiplies: integer quants with one scale (and, for Q4_K, Q5_K, Q4_1 and
// Q5_1, one offset) per 32-element block, or (Q6_K, Q3_K) one int8 scale per 16 under a float one per
// 256. IQ4_NL and IQ4_XS are plain types here: their nibbles through IQ4_NL's levels are the
// quants (−127..113), with IQ4_NL's d, or IQ4_XS's d · (ls − 32) under the Q8_K activations' dx
// (which the quantizers repeat for each block), as their blocks' scales. Q2_K is Q6_K's shape
// with an offset per half as well, −dmin · m_h, which meets the activations' sums per 16.
// Q5_0 and Q5_1 are what llama.cpp's quantizer writes for a Q4_K and a Q5_K tensor whose rows are
// not a multiple of 256 (DeepSeek-V2-Lite's 1408-wide expert down projections in Q4_K_M and
// Q5_K_M files).
constexpr bool supports(dtype t) {
    return t == dtype::q8_0 || t == dtype::q4_0 || t == dtype::q4_0_repacked || t == dtype::q4_1 || t == dtype::q5_0 ||
           t == dtype::q5_0_repacked || t == dtype::q5_1 || t == dtype::q3_k || t == dtype::q4_k || t == dtype::q5_k ||
           t == dtype::q6_k || t == dtype::iq4_nl || t == dtype::iq4_nl_repacked || t == dtype::iq4_xs || t == dtype::q2_k ||
           t == dtype::q4_1_repacked || t == dtype::q5_1_repacked;
}
// K-quants and IQ4_XS: Q8_K activations (one dx per 256).
constexpr bool super_blocks(dtype t) {
    return t == dtype::q2_k || t == dtype::q3_k || t == dtype::q4_k || t == dtype::q5_k || t == dtype::q6_k ||
           t == dtype::iq4_xs;
}
// Q6_K and Q3_K: an int8 scale per 16-element half of each block, under a float d per 256. Both
// pack into the same tiles (Q3_K's quants are q in −4..3, its scales sc − 32).
constexpr bool half_scales(dtype t) { return t == dtype::q6_k || t == dtype::q3_k; }
// Q4_K, Q5_K, Q4_1 and Q5_1: an offset mw per block, which meets the activations' block sums.
constexpr bool has_offsets(dtype t) {
    return t == dtype::q4_k || t == dtype::q5_k || has_block_offsets(t);
}
// The activations' int16 sums Σ qx per 32-element block that weight type t needs: one (offsets
// per block), two (Q2_K: one per 16-element half) or none.
constexpr int64_t sums_per_block(dtype t) { return has_offsets(t) ? 1 : t == dtype::q2_k ? 2 : 0; }

// The AVX-512 kernel's layout. Output columns per tile: one zmm of int32 (and then f32) lanes,
// one column per lane.
inline constexpr int64_t k_tile_cols = 16;
// Columns one chunk call packs and multiplies: two tiles side by side. A tile's block b sits at
// tile + b · k_block_bytes.
inline constexpr int64_t k_chunk_cols = 2 * k_tile_cols;
// Bytes per (tile, block): the quants in vpdpbusd's order, [group g < 8][column c < 16][4 quants]
// (lane c of one instruction sums the 4 products of group g), then the 16 columns' scales dw
// (f32), corrections −128 · Σ qw (int32: activations are stored as qx + 128, the unsigned operand
// vpdpbusd takes, so each block sum carries 128 · Σ qw too much) and 64 bytes for offsets
// (Q4_K and Q5_K: their super-block's mins and −dmin, q8_gemm_avx512.hpp). Q6_K and Q3_K keep
// their two 16-element halves' scales d · sc (f32) where the others keep dw and offsets, and
// their −Σ qw (int16 [2][16]) where the others keep corrections.
inline constexpr int64_t k_groups = k_qk / 4;
inline constexpr int64_t k_block_quant_bytes = k_qk * k_tile_cols;                 // 512
inline constexpr int64_t k_block_scales = k_block_quant_bytes;                     // f32 [16]
inline constexpr int64_t k_block_corrections = k_block_scales + 4 * k_tile_cols;   // int32 [16]
inline constexpr int64_t k_block_offsets = k_block_corrections + 4 * k_tile_cols;  // [16] of f32 or int16 pairs
inline constexpr int64_t k_block_bytes = k_block_offsets + 4 * k_tile_cols;        // 704
inline constexpr int k_act_offset = 128;

// Activations [m, k]: q[i·k + j] = qx + 128 (u8), d[i·(k/32) + b] = dx of row i's block b and,
// for weight types with offsets, sums[(i·(k/32) + b) · s + h] = Σ qx over that block, or (s =
// sums_per_block = 2) its half h (|Σ| <= 32 · 127: int16), else nullptr.
struct activations {
    const uint8_t * q;
    const float * d;
    const int16_t * sums;
    int64_t k;
};

// Rows x[m, k] into q [m, k], d [m, k/32] and sums [m, k/32 · sums_per_block(t)] (if any) through
// quantize_activation's blocks for weight type t (Q8_0, whose quants and d are Q8_1's for Q4_1
// and Q5_1, or super_blocks(t): Q8_K, its d repeated over 8 blocks).
void quantize_activations(dtype t, const float * x, int64_t m, int64_t k, uint8_t * q, float * d, int16_t * sums);

// Packs weight rows 0..cols-1 (cols <= the kernel's chunk_cols; row r at w + r · w_stride, k
// elements of type t) and writes y[i · ldy + c] for i < a's m rows, c < cols. scratch: the
// kernel's scratch_bytes(k).
using chunk_fn = void (*)(dtype t, const std::byte * w, size_t w_stride, int64_t cols, const activations & a,
                          int64_t m, float * y, int64_t ldy, std::byte * scratch);

// quantize_activations' signature: a kernel's own build of it, bit for bit the same.
using quantize_fn = void (*)(dtype t, const float * x, int64_t m, int64_t k, uint8_t * q, float * d, int16_t * sums);

// A kernel: its chunk function, the weight types it takes (of supports()), the weight rows one
// call packs (sized so the packed chunk stays in L2 while every activation row streams past it),
// the scratch that takes per 32-element block of k, and its build of quantize_activations
// (nullptr: the portable one).
struct kernel {
    const char * isa;
    chunk_fn run;
    bool (*takes)(dtype t);
    int64_t chunk_cols;
    size_t scratch_per_block;
    quantize_fn quantize = nullptr;
    // The fewest activation rows from which this kernel beats the row kernels (matmul_rows) on a
    // weight of type t, as measured on a whole model; 0 or no function: not measured
    // (matmul_context::small_batch decides).
    int64_t (*gemm_from)(dtype t) = nullptr;
    size_t scratch_bytes(int64_t k) const { return size_t(k / k_qk) * scratch_per_block; }
};

// The kernel of this CPU: AVX-512 VNNI, else AVX2 with AVX-VNNI, else AVX2, else nullptr. Weight
// types it does not take go through the f32 path, which is the same arithmetic. Tests may put
// another kernel in its place (nullptr restores the CPU's).
const kernel * chunk_kernel();
// chunk_kernel() if it takes weight type t, else nullptr.
const kernel * kernel_for(dtype t);
void set_chunk_kernel_for_tests(const kernel * k);
// The builds for each instruction set, nullptr where this CPU lacks it (tests hold both to the
// reference wherever they run).
const kernel * avx512_kernel();
const kernel * avx2_kernel();
const kernel * avx2_vnni_kernel();

// A chunk's rows are packed and multiplied in parts of their blocks when the packed tiles would
// outgrow max_bytes (a kernel's share of L2): n parts of whole units (super-blocks for the
// K-quants, whose packing starts on one), each part's products added to the last's.
class packed_parts {
public:
    packed_parts(dtype t, int64_t row_blocks, int64_t bytes_per_block, int64_t max_bytes)
        : row_blocks_(row_blocks), unit_(super_blocks(t) ? k_qk_k / k_qk : 1),
          n_(std::max<int64_t>(1, (row_blocks * bytes_per_block + max_bytes - 1) / max_bytes)) {}
    int64_t count() const { return n_; }
    // Part i: blocks [first(i), first(i + 1)).
    int64_t first(int64_t i) const { return i == n_ ? row_blocks_ : row_blocks_ / unit_ * i / n_ * unit_; }

private:
    int64_t row_blocks_, unit_, n_;
};

// Where one pass over a chunk's activation rows multiplies: the packed tiles of blocks
// [b0, b0 + nb), and whether y is added to (a later part) or written.
struct tiles_part {
    const std::byte * tiles;
    int64_t b0, nb;
    bool accumulate;
};

// While a chunk's activation rows run, the weight rows the next chunk will pack (the bytes
// after this chunk's rows) are prefetched into L2, a share per step: packing reads 8 or 16
// rows at once, more streams than the hardware prefetcher follows, and waited on memory
// without it. (A prefetch never faults, so the last chunk's look past the weight's end is
// harmless.)
class next_chunk_prefetch {
public:
    next_chunk_prefetch(const std::byte * next, int64_t bytes, int64_t steps)
        : at_(next), lines_per_step_((bytes / 64 + std::max<int64_t>(steps, 1) - 1) / std::max<int64_t>(steps, 1)) {}
    void step() {
        for (int64_t l = 0; l < lines_per_step_; ++l, at_ += 64) __builtin_prefetch(at_, 0, 2);
    }

private:
    const std::byte * at_;
    int64_t lines_per_step_;
};

// Where block b's scale (fp16) and quants sit in a weight row of nb 32-element blocks (Q8_0,
// Q4_0 and Q5_0, either layout, Q4_1, Q5_1 and IQ4_NL; the K-quants have their own packing): at
// d_offset + b · d_step and q_offset + b · q_step bytes. Nibble quants (4-bit, low nibbles first as
// Q4_0 stores them) are q − zero, or (levels: IQ4_NL) k_iq4_nl_values[q]; Q5_0's and Q5_1's
// fifth bits are the 32 bits (element e: bit e) at fifth_bits_offset + b · q_step, or, repacked,
// where fifth_bits_in puts them. Q5_1's offset m (fp16) sits at m_offset + b · d_step (m_offset
// < 0: no offsets), as Q4_1's.
enum class fifth_bits { none, words, repacked };
struct block_layout {
    int64_t d_offset, d_step, q_offset, q_step;
    bool nibbles;
    int zero;
    fifth_bits fifth;
    int64_t fifth_bits_offset;
    int64_t m_offset = -1;
    bool levels = false;
};
constexpr block_layout layout_of(dtype t, int64_t nb) {
    constexpr int64_t half = sizeof(uint16_t), nibble_bytes = k_qk / 2;
    switch (t) {
    case dtype::q8_0: return {0, sizeof(block_q8_0), 2, sizeof(block_q8_0), false, 0, fifth_bits::none, 0};
    case dtype::q4_0: return {0, sizeof(block_q4_0), 2, sizeof(block_q4_0), true, 8, fifth_bits::none, 0};
    case dtype::q4_0_repacked:
        return {0, half, detail::repacked_nibbles_offset(t, nb), nibble_bytes, true, 8, fifth_bits::none, 0};
    case dtype::q4_1:
        return {0, sizeof(block_q4_1), offsetof(block_q4_1, qs), sizeof(block_q4_1), true, 0, fifth_bits::none, 0,
                offsetof(block_q4_1, m)};
    case dtype::q5_0:
        return {0,    sizeof(block_q5_0), offsetof(block_q5_0, qs), sizeof(block_q5_0),
                true, 16,                 fifth_bits::words,        offsetof(block_q5_0, qh)};
    case dtype::q5_0_repacked:
        return {0,    half, detail::repacked_nibbles_offset(t, nb), nibble_bytes,
                true, 16,   fifth_bits::repacked,                   detail::repacked_fifth_bits_offset(nb)};
    case dtype::q5_1:
        return {0,    sizeof(block_q5_1), offsetof(block_q5_1, qs), sizeof(block_q5_1),
                true, 0,                  fifth_bits::words,        offsetof(block_q5_1, qh),
                offsetof(block_q5_1, m)};
    case dtype::iq4_nl:
        return {0, sizeof(block_iq4_nl), offsetof(block_iq4_nl, qs), sizeof(block_iq4_nl), true, 0, fifth_bits::none, 0,
                -1, true};
    case dtype::iq4_nl_repacked:
        return {0, half, detail::repacked_nibbles_offset(t, nb), nibble_bytes, true, 0, fifth_bits::none, 0, -1, true};
    case dtype::q4_1_repacked:
        return {0,    half, detail::repacked_nibbles_offset(t, nb), nibble_bytes,
                true, 0,    fifth_bits::none,                       0,
                detail::repacked_mins_offset(t, nb)};
    case dtype::q5_1_repacked:
        return {0,    half, detail::repacked_nibbles_offset(t, nb), nibble_bytes,
                true, 0,    fifth_bits::repacked,                   detail::repacked_fifth_bits_offset(nb),
                detail::repacked_mins_offset(t, nb)};
    default: return {0, 0, 0, 0, false, 0, fifth_bits::none, 0}; // not reached: callers check supports(t)
    }
}

// Where block b's fifth bits sit within each row of nb blocks laid out as l (l.fifth != none):
// bit < 0: a qh word (element e: bit e) at byte `bytes`; else (a repacked row's full group,
// detail::fifth_bits_of) bit `bit` of byte i of the 16 bytes there for element i, bit + 1 for
// element 16 + i. The packers take the latter as it is, one shift a group: rebuilt into qh words
// column by column, the fifth bits made Q5_0 prompts of 8-64 tokens 1.4-2.2x slower repacked
// than stored on Zen 4.
constexpr detail::fifth_bits_place fifth_bits_in(const block_layout & l, int64_t nb, int64_t b) {
    if (l.fifth == fifth_bits::words) return {l.fifth_bits_offset + b * l.q_step, -1};
    const detail::fifth_bits_place place = detail::fifth_bits_of(nb, b);
    return {l.fifth_bits_offset + place.bytes, place.bit};
}

// Where the quants of 32-element block j < 8 of a Q6_K super-block come from: element l < 32 is
// nibble (ql[ql + l] >> ql_shift) & 15 with bits (qh[qh + l] >> qh_shift) & 3 above it, minus 32;
// its halves (l < 16, l >= 16) take scales[scale] and scales[scale + 1] (ggml's layout: each
// 128-element half of the super-block has 64 ql and 32 qh bytes and 8 scales).
struct q6_k_block {
    int64_t ql, ql_shift, qh, qh_shift, scale;
};
constexpr q6_k_block q6_k_block_of(int j) {
    const int h = j / 4, jb = j % 4;
    return {64 * h + 32 * (jb & 1), 4 * (jb >> 1), 32 * h, 2 * jb, 8 * h + 2 * jb};
}

// Block l of the Q6_K super-blocks at `base` (tile rows w_stride apart) for the first `cols` of
// a tile's `tile_cols` columns: scales dw[c] = d and the halves' int8 scales sc[h · tile_cols + c]
// (0 past cols).
inline void q6_k_block_scales(const std::byte * base, size_t w_stride, int64_t cols, int64_t tile_cols,
                              const q6_k_block & l, float * dw, int8_t * sc) {
    for (int64_t c = 0; c < tile_cols; ++c) {
        uint16_t d = 0;
        sc[c] = sc[tile_cols + c] = 0;
        if (c < cols) {
            const std::byte * row = base + c * int64_t(w_stride);
            std::memcpy(&d, row + offsetof(block_q6_k, d), sizeof d);
            for (int h = 0; h < 2; ++h)
                std::memcpy(&sc[h * tile_cols + c], row + offsetof(block_q6_k, scales) + l.scale + h, 1);
        }
        dw[c] = fp16_to_fp32(d);
    }
}

// A Q3_K super-block's scales for the first `cols` of a tile's `tile_cols` rows (w_stride apart,
// base: the super-block within the first row): d[c] and, per 16-element half k < 16, the scale
// sc[k · tile_cols + c] less its 32 (0 past cols).
inline void q3_k_scales(const std::byte * base, size_t w_stride, int64_t cols, int64_t tile_cols, float * d,
                        int8_t * sc) {
    for (int64_t c = 0; c < tile_cols; ++c) {
        block_q3_k b{};
        if (c < cols) std::memcpy(&b, base + c * int64_t(w_stride), sizeof b);
        const frugal::ops::detail::k3_scales s = frugal::ops::detail::unpack_k3_scales(b.scales);
        for (int k = 0; k < 16; ++k) sc[k * tile_cols + c] = c < cols ? int8_t(s.sc(k) - 32) : 0;
        d[c] = fp16_to_fp32(b.d);
    }
}

// A Q4_K / Q5_K super-block's 8 sub-blocks as the path multiplies them: scale dw[j] = d · sc_j and
// offset mw[j] = −dmin · m_j. head: the super-block's first bytes (d, dmin and the scales).
template <class Block>
inline void k_quant_sub_scales(const std::byte * head, float * dw, float * mw) {
    Block b{}; // the scales are all that is read
    std::memcpy(&b, head, offsetof(Block, scales) + sizeof b.scales);
    const frugal::ops::detail::k_scales s = frugal::ops::detail::unpack_k_scales(b.scales);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    for (int j = 0; j < 8; ++j) {
        dw[j] = d * float(s.sc[j]);
        mw[j] = -(dmin * float(s.mn[j]));
    }
}

} // namespace frugal::ops::q8
