// attention_kernels.hpp - private to lib/ops/attention*.cpp and their tests: the small matrix
// products, the softmax step and the F16 and Q8_0 widening that attention.cpp's blocked loop
// calls, one set per instruction set (portable, AVX2 in attention.cpp; AVX-512 in
// attention_avx512_kernels.hpp).
#pragma once

#include <cstdint>

#include "frugal/dtype.hpp"

namespace frugal::ops::detail {

// Element `at` of a Q8_0 cache's blocks, used as a pointer is (cursor + n is element at + n). The
// kernels read values a vector at a time from offsets that are multiples of their lanes (dims
// and strides are multiples of 32), so no read straddles two blocks.
struct q8_0_cursor {
    const block_q8_0 * blocks;
    int64_t at;
    friend q8_0_cursor operator+(q8_0_cursor c, int64_t n) { return {c.blocks, c.at + n}; }
    const block_q8_0 & block() const { return blocks[uint64_t(at) / k_qk]; } // at >= 0
    const int8_t * quants() const { return block().qs + uint64_t(at) % k_qk; }
};

struct attention_kernels {
    // Dims (head_dim and v_dim) must be multiples of this (1: any).
    int64_t dim_multiple;
    // s[r, j] = Σ_d q[r, d] · k[j, d] for r < rows, j < n. q: [rows, hd] packed; k rows k_row
    // floats apart; s rows ld_s apart.
    void (*scores)(const float * q, int64_t rows, int64_t hd, const float * k, int64_t k_row, int64_t n, float * s,
                   int64_t ld_s);
    // One row's online-softmax step over its block of scores s[0, n), of which the first
    // `visible` (>= 1) are not masked: with m' = max(m, max s[0, visible)) and α = 2^(m − m'),
    // s[j] = 2^(s[j] − m') for j < visible and 0 after, l = l · α + Σ s, o[0, vd) *= α, m = m'.
    void (*softmax_row)(float * s, int64_t visible, int64_t n, float & m, float & l, float * o, int64_t vd);
    // o[r, e] += Σ_j p[r, j] · v[j, e] for r < rows, j < n, e < vd. p rows ld_p apart; v rows v_row
    // floats apart; o: [rows, vd] packed.
    void (*accumulate)(const float * p, int64_t ld_p, int64_t rows, const float * v, int64_t v_row, int64_t n,
                       float * o, int64_t vd);
    // dst[j, c] = src[j · src_row + c] as F32, for j < n, c < cols: F16 (Q8_0: d · q) cache rows
    // as a packed tile.
    void (*widen)(const uint16_t * src, int64_t src_row, int64_t n, int64_t cols, float * dst);
    void (*widen_q8_0)(q8_0_cursor src, int64_t src_row, int64_t n, int64_t cols, float * dst);
    // scores and accumulate on F16 (Q8_0) keys and values read from the cache as they are
    // multiplied (for few rows, where widening a tile first costs more than it saves), with the
    // same arithmetic on the same widened values; nullptr: widen first.
    void (*scores_f16)(const float * q, int64_t rows, int64_t hd, const uint16_t * k, int64_t k_row, int64_t n,
                       float * s, int64_t ld_s);
    void (*accumulate_f16)(const float * p, int64_t ld_p, int64_t rows, const uint16_t * v, int64_t v_row, int64_t n,
                           float * o, int64_t vd);
    void (*scores_q8_0)(const float * q, int64_t rows, int64_t hd, q8_0_cursor k, int64_t k_row, int64_t n, float * s,
                        int64_t ld_s);
    void (*accumulate_q8_0)(const float * p, int64_t ld_p, int64_t rows, q8_0_cursor v, int64_t v_row, int64_t n,
                            float * o, int64_t vd);
    // scores against keys transposed into kt [hd][k_kt_keys] (keys in lanes, so no horizontal
    // sums), for n <= k_kt_keys; columns past n up to the next 4 vectors are written too, from
    // whatever kt holds there. nullptr: this set has none (its keys stay as rows).
    void (*scores_kt)(const float * q, int64_t rows, int64_t hd, const float * kt, int64_t n, float * s, int64_t ld_s);
    // BF16 products (attention_params::bf16_products), nullptr where this set has none. Their
    // operands are BF16 pairs in 32-bit words, element 2i in the low half: q [rows, hd/2]
    // packed, kt [hd/2, k_kt_keys] (keys in lanes; columns past n up to the next 4 vectors are
    // written too, as scores_kt's), p rows of key pairs ld_p words apart, vp [ceil(n/2), vd]
    // (word (i, e) = value column e of keys 2i and 2i + 1). Products are exact in F32; sums F32.
    void (*scores_kt_bf16)(const uint32_t * q, int64_t rows, int64_t hd, const uint32_t * kt, int64_t n, float * s,
                           int64_t ld_s);
    void (*accumulate_bf16)(const uint32_t * p, int64_t ld_p, int64_t rows, const uint32_t * vp, int64_t n, float * o,
                            int64_t vd);
    // dst[i] = (x[2i], x[2i + 1]) rounded to BF16 (to nearest, ties to even), i < n / 2, n even.
    void (*to_bf16_pairs)(const float * x, int64_t n, uint32_t * dst);
    // dst[e] = (a[e], b[e]) rounded to BF16, e < n: two rows of values as one row of pairs.
    void (*interleave_bf16)(const float * a, const float * b, int64_t n, uint32_t * dst);
    // Rows up to this many (a decode step's group of query heads, a few tokens' groups) go
    // through the direct scores and accumulate rather than a widened tile, which more rows share;
    // for Q8_0 caches, up to direct_rows_q8_0.
    int64_t direct_rows;
    int64_t direct_rows_q8_0;
};

// The row length of a transposed key tile: keys per block.
inline constexpr int64_t k_kt_keys = 64;

// The library's AVX-512 F set (attention_avx512.cpp), or nullptr where the CPU (or the OS) lacks it.
const attention_kernels * avx512_attention_kernels();

// Test hook: a set every attention call uses (for its dims) in place of the CPU's choice;
// nullptr restores the choice.
void set_attention_kernels_for_tests(const attention_kernels * k);

} // namespace frugal::ops::detail
