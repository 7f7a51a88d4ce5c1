// attention_tiles.hpp - attention's kernels (attention_kernels.hpp) written once for any vector
// width: register tiles for the two small matrix products, the online-softmax step, the F16
// widening. Each includer compiles them for its instruction set (attention.cpp: AVX2;
// attention_avx512_kernels.hpp: AVX-512, natively and on SIMDe in the tests). It defines
//   FRUGAL_TILES_TARGET  the function attribute (a target(...) list, or nothing);
//   FRUGAL_TILES_NS      its own namespace, which must already hold `struct vec`:
//     reg, lanes (floats per reg), tile_rows (rows per register tile, sized to the register file),
//     direct_rows and direct_rows_q8_0 (attention_kernels'), and where the latter is not 0,
//     q8_tile_rows (tile_rows for Q8_0 caches read directly, whose query rows come from memory);
//     zero, load, store, set1, fmadd, sub, add, mul, max; hsum, hmax (of the lanes), hsum4 (the
//     four totals of four regs as an __m128); exp2_nonpositive (simd_exp.hpp's polynomial);
//     load_tail(p, count, fill) (lanes past count = fill), store_tail(p, count, v), first(v);
//     widen(const uint16_t *) (lanes F16 values as floats), half(uint16_t) (an F16 value in every
//     lane), widen_q8(const int8_t *, reg scale) (lanes Q8_0 quants times scale).
// head_dim and v_dim must be multiples of vec::lanes (the kernels' dim_multiple). Private to
// lib/ops and its tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "ops/attention_kernels.hpp"

namespace FRUGAL_TILES_NS {

// A vector of K or V as F32: from an F32 tile or cache, or widened from an F16 or Q8_0 cache as
// it is read (the kernels take K and V as KV: a pointer to their first value, or a q8_0_cursor).
using frugal::block_q8_0;
using frugal::ops::detail::q8_0_cursor;
FRUGAL_TILES_TARGET inline typename vec::reg load_kv(const float * p) { return vec::load(p); }
FRUGAL_TILES_TARGET inline typename vec::reg load_kv(const uint16_t * p) { return vec::widen(p); }
FRUGAL_TILES_TARGET inline typename vec::reg load_kv(q8_0_cursor p) {
    return vec::widen_q8(p.quants(), vec::half(p.block().d));
}

// s[r · ld_s + j] = the total of acc[r][j]'s lanes (J = 4: four at once).
template <int R, int J>
FRUGAL_TILES_TARGET inline void store_totals(const typename vec::reg (&acc)[R][J], float * s, int64_t ld_s) {
    static_assert(J == 1 || J == 4);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        if constexpr (J == 4)
            _mm_storeu_ps(s + r * ld_s, vec::hsum4(acc[r]));
        else
            s[r * ld_s] = vec::hsum(acc[r][0]);
    }
}

// s[r, j] for an R × J tile: dot products along head_dim in R·J vector accumulators, each reduced
// to its total at the end (J = 4: four at once). KV: const float *, or const uint16_t * (F16) for
// keys read from the cache directly.
template <int R, int J, class KV>
FRUGAL_TILES_TARGET inline void scores_tile(const float * q, int64_t hd, KV k, int64_t k_row, float * s,
                                            int64_t ld_s) {
    typename vec::reg acc[R][J];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j) acc[r][j] = vec::zero();
    for (int64_t d = 0; d < hd; d += vec::lanes) {
        typename vec::reg qv[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) qv[r] = vec::load(q + r * hd + d);
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j) {
            const typename vec::reg kv = load_kv(k + j * k_row + d);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r][j] = vec::fmadd(qv[r], kv, acc[r][j]);
        }
    }
    store_totals<R, J>(acc, s, ld_s);
}

// tile(integral_constant<int, R'>, r) over rows in tiles of R rows, the rest in one smaller tile.
template <int R, class Tile>
FRUGAL_TILES_TARGET inline void by_row_tiles(int64_t rows, Tile tile) {
    int64_t r = 0;
    for (; r + R <= rows; r += R) tile(std::integral_constant<int, R>{}, r);
    if constexpr (R > 1)
        if (r < rows) by_row_tiles<R - 1>(rows - r, [&](auto rt, int64_t r2) FRUGAL_TILES_TARGET { tile(rt, r + r2); });
}

template <int J, class KV>
FRUGAL_TILES_TARGET inline void scores_keys(const float * q, int64_t rows, int64_t hd, KV k, int64_t k_row,
                                            float * s, int64_t ld_s) {
    by_row_tiles<vec::tile_rows>(rows, [&](auto rt, int64_t r) FRUGAL_TILES_TARGET {
        scores_tile<decltype(rt)::value, J>(q + r * hd, hd, k, k_row, s + r * ld_s, ld_s);
    });
}

template <class KV>
FRUGAL_TILES_TARGET inline void scores(const float * q, int64_t rows, int64_t hd, KV k, int64_t k_row,
                                       int64_t n, float * s, int64_t ld_s) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) scores_keys<4>(q, rows, hd, k + j * k_row, k_row, s + j, ld_s);
    for (; j < n; ++j) scores_keys<1>(q, rows, hd, k + j * k_row, k_row, s + j, ld_s);
}

// Every step in vectors (a libm exp2 and the 4-lane loops of a baseline build were a fifth of a
// prefill's attention at depth). The last partial vector of s is read with −inf past `visible`:
// those lanes count for nothing in the max, and exp2_nonpositive(−inf) = 0.
FRUGAL_TILES_TARGET inline void softmax_row(float * s, int64_t visible, int64_t n, float & m, float & l, float * o,
                                            int64_t vd) {
    constexpr float minus_inf = -std::numeric_limits<float>::infinity();
    const int64_t full = visible / vec::lanes * vec::lanes, tail = visible - full;
    typename vec::reg mv = vec::set1(m);
    for (int64_t j = 0; j < full; j += vec::lanes) mv = vec::max(mv, vec::load(s + j));
    if (tail) mv = vec::max(mv, vec::load_tail(s + full, tail, minus_inf));
    const float mx = vec::hmax(mv);
    mv = vec::set1(mx);
    typename vec::reg sum = vec::zero();
    for (int64_t j = 0; j < full; j += vec::lanes) {
        const typename vec::reg y = vec::exp2_nonpositive(vec::sub(vec::load(s + j), mv));
        vec::store(s + j, y);
        sum = vec::add(sum, y);
    }
    if (tail) {
        const typename vec::reg y = vec::exp2_nonpositive(vec::sub(vec::load_tail(s + full, tail, minus_inf), mv));
        vec::store_tail(s + full, tail, y);
        sum = vec::add(sum, y);
    }
    std::fill(s + visible, s + n, 0.f);
    // α = 2^(m − m'): exactly 1 when the max did not move, 0 on the row's first block (m = −inf).
    const typename vec::reg alpha = vec::exp2_nonpositive(vec::set1(m - mx));
    const float a = vec::first(alpha);
    l = l * a + vec::hsum(sum);
    m = mx;
    if (a != 1.f)
        for (int64_t e = 0; e < vd; e += vec::lanes) vec::store(o + e, vec::mul(alpha, vec::load(o + e)));
}

// c[r, 0 .. NV·lanes) = (Accumulate: c +) Σ_t a[r · lda + t] · b[t · ldb, 0 .. NV·lanes) for an
// R-row tile over t < steps: the accumulators stay in registers over all the steps, one fused
// multiply-add per (row, vector, step). P · V (a = p, b = the values' rows, any KV) and the
// scores against a transposed key tile (a = q, b = kt's rows of keys) are both this.
template <int R, int NV, bool Accumulate, class B>
FRUGAL_TILES_TARGET inline void product_tile(const float * a, int64_t lda, B b, int64_t ldb, int64_t steps,
                                             float * c, int64_t ldc) {
    typename vec::reg acc[R][NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) acc[r][i] = Accumulate ? vec::load(c + r * ldc + vec::lanes * i) : vec::zero();
    for (int64_t t = 0; t < steps; ++t) {
        typename vec::reg bv[NV];
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) bv[i] = load_kv(b + t * ldb + vec::lanes * i);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const typename vec::reg w = vec::set1(a[r * lda + t]);
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) acc[r][i] = vec::fmadd(w, bv[i], acc[r][i]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) vec::store(c + r * ldc + vec::lanes * i, acc[r][i]);
}

// attention_kernels::scores_kt: keys 4 vectors at a time, rows in register tiles.
FRUGAL_TILES_TARGET inline void scores_kt(const float * q, int64_t rows, int64_t hd, const float * kt, int64_t n,
                                          float * s, int64_t ld_s) {
    constexpr int64_t keys = 4 * vec::lanes;
    for (int64_t j = 0; j < n; j += keys)
        by_row_tiles<vec::tile_rows>(rows, [&](auto rt, int64_t r) FRUGAL_TILES_TARGET {
            product_tile<decltype(rt)::value, 4, false>(q + r * hd, hd, kt + j, frugal::ops::detail::k_kt_keys, hd,
                                                        s + r * ld_s + j, ld_s);
        });
}

// Columns in 4 registers at a time (TileRows × 4 accumulators), then one at a time.
template <class KV, int TileRows = vec::tile_rows>
FRUGAL_TILES_TARGET inline void accumulate(const float * p, int64_t ld_p, int64_t rows, KV v, int64_t v_row,
                                           int64_t n, float * o, int64_t vd) {
    const auto cols = [&](auto nv, int64_t e) FRUGAL_TILES_TARGET {
        by_row_tiles<TileRows>(rows, [&](auto rt, int64_t r) FRUGAL_TILES_TARGET {
            product_tile<decltype(rt)::value, decltype(nv)::value, true>(p + r * ld_p, ld_p, v + e, v_row, n,
                                                                         o + r * vd + e, vd);
        });
    };
    int64_t e = 0;
    for (; e + 4 * vec::lanes <= vd; e += 4 * vec::lanes) cols(std::integral_constant<int, 4>{}, e);
    for (; e < vd; e += vec::lanes) cols(std::integral_constant<int, 1>{}, e);
}

// --- Q8_0 caches read directly (a decode step) ---------------------------------------------------
// Keys and values are widened once for all the rows of a tile, which are as many as a decode
// step's group of query heads (the 1.5B Qwen2's 6) where the registers allow (q8_tile_rows); the
// scores convert each block's scale once per key, and read the query's vectors from memory (L1)
// as operands of the multiply-adds. (P · V is accumulate<q8_0_cursor, q8_tile_rows>.) Widened
// per 4-row tile through load_kv, the 28 layers at depth 4096 took 4.9 ms a token against F16's
// 3.8 (2 threads, Zen 5).

// Vector c / lanes of a row of Q8_0 blocks (c a multiple of lanes), as F32.
FRUGAL_TILES_TARGET inline typename vec::reg q8_vector(const block_q8_0 * row, int64_t c) {
    const block_q8_0 & b = row[c / frugal::k_qk];
    return vec::widen_q8(b.qs + c % frugal::k_qk, vec::half(b.d));
}

// s[r, j] for an R × J tile of scores against keys of k_row_blocks blocks each.
template <int R, int J>
FRUGAL_TILES_TARGET inline void scores_q8_tile(const float * q, int64_t hd, const block_q8_0 * k, int64_t k_row_blocks,
                                               float * s, int64_t ld_s) {
    typename vec::reg acc[R][J];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j) acc[r][j] = vec::zero();
    for (int64_t b = 0; b < hd / frugal::k_qk; ++b)
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j) {
            const block_q8_0 & blk = k[j * k_row_blocks + b];
            const typename vec::reg scale = vec::half(blk.d);
#pragma GCC unroll 4
            for (int v = 0; v < frugal::k_qk / vec::lanes; ++v) {
                const typename vec::reg kv = vec::widen_q8(blk.qs + v * vec::lanes, scale);
                const float * qv = q + b * frugal::k_qk + v * vec::lanes;
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) acc[r][j] = vec::fmadd(vec::load(qv + r * hd), kv, acc[r][j]);
            }
        }
    store_totals<R, J>(acc, s, ld_s);
}

// attention_kernels::scores_q8_0, in tiles of TileRows rows.
template <int TileRows>
FRUGAL_TILES_TARGET inline void scores_q8(const float * q, int64_t rows, int64_t hd, q8_0_cursor k, int64_t k_row,
                                          int64_t n, float * s, int64_t ld_s) {
    const block_q8_0 * first = &k.block();
    const int64_t row_blocks = k_row / frugal::k_qk;
    by_row_tiles<TileRows>(rows, [&](auto rt, int64_t r) FRUGAL_TILES_TARGET {
        constexpr int R = decltype(rt)::value;
        const auto keys = [&](auto j_tile, int64_t j) FRUGAL_TILES_TARGET {
            scores_q8_tile<R, decltype(j_tile)::value>(q + r * hd, hd, first + j * row_blocks, row_blocks,
                                                       s + r * ld_s + j, ld_s);
        };
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) keys(std::integral_constant<int, 4>{}, j);
        for (; j < n; ++j) keys(std::integral_constant<int, 1>{}, j);
    });
}

// Each row converts while the row k_widen_ahead further on is asked for: a kv head's rows are
// strided by the other heads', which the hardware prefetcher followed poorly (the 1.5B Qwen2's
// decode at depth 4096, when it still widened, Zen 5: 12 → 16 GB/s of cache read). Prefetches
// past the cache's end are harmless (they never fault).
inline constexpr int64_t k_widen_ahead = 16;
FRUGAL_TILES_TARGET inline void widen(const uint16_t * src, int64_t src_row, int64_t n, int64_t cols, float * dst) {
    for (int64_t j = 0; j < n; ++j) {
        const uint16_t * ahead = src + (j + k_widen_ahead) * src_row;
        for (int64_t c = 0; c < cols; c += 32) __builtin_prefetch(ahead + c); // a 64-byte line per 32 values
        for (int64_t c = 0; c < cols; c += vec::lanes) vec::store(dst + j * cols + c, vec::widen(src + j * src_row + c));
    }
}

// The same for Q8_0 rows (src_row and cols whole blocks).
FRUGAL_TILES_TARGET inline void widen_q8(q8_0_cursor src, int64_t src_row, int64_t n, int64_t cols, float * dst) {
    const block_q8_0 * first = &src.block();
    const int64_t row_blocks = src_row / frugal::k_qk, blocks = cols / frugal::k_qk;
    for (int64_t j = 0; j < n; ++j) {
        const block_q8_0 * row = first + j * row_blocks;
        const auto * ahead = reinterpret_cast<const char *>(row + k_widen_ahead * row_blocks);
        for (int64_t at = 0; at < blocks * int64_t(sizeof(block_q8_0)); at += 64) __builtin_prefetch(ahead + at);
        for (int64_t c = 0; c < cols; c += vec::lanes) vec::store(dst + j * cols + c, q8_vector(row, c));
    }
}

// The direct Q8_0 kernels of a set whose direct_rows_q8_0 is not 0, else none.
template <class V>
constexpr frugal::ops::detail::attention_kernels with_direct_q8(frugal::ops::detail::attention_kernels k) {
    if constexpr (V::direct_rows_q8_0 > 0) {
        k.scores_q8_0 = scores_q8<V::q8_tile_rows>;
        k.accumulate_q8_0 = accumulate<q8_0_cursor, V::q8_tile_rows>;
    }
    return k;
}

inline constexpr frugal::ops::detail::attention_kernels kernels = with_direct_q8<vec>({
    .dim_multiple = vec::lanes,
    .scores = scores<const float *>,
    .softmax_row = softmax_row,
    .accumulate = accumulate<const float *>,
    .widen = widen,
    .widen_q8_0 = widen_q8,
    .scores_f16 = scores<const uint16_t *>,
    .accumulate_f16 = accumulate<const uint16_t *>,
    .scores_q8_0 = nullptr,
    .accumulate_q8_0 = nullptr,
    .scores_kt = vec::transposed_keys ? scores_kt : nullptr,
    .scores_kt_bf16 = nullptr,
    .accumulate_bf16 = nullptr,
    .to_bf16_pairs = nullptr,
    .interleave_bf16 = nullptr,
    .direct_rows = vec::direct_rows,
    .direct_rows_q8_0 = vec::direct_rows_q8_0});

} // namespace FRUGAL_TILES_NS
