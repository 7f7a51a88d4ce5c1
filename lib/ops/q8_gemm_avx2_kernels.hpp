// q8_gemm_avx2_kernels.hpp - the q8 prefill path's AVX2 kernel (q8_gemm_avx2.cpp, whose head
// comment describes it), written once and compiled twice there: with vpmaddubsw runs (AVX2), and
// with AVX-VNNI's vpdpbusd on 256-bit lanes (Intel's client cores since Alder Lake, which have no
// AVX-512; AMD's since Zen 5), which sums 4 products into int32 in one instruction, needs no int16
// runs, and so takes Q8_0 as well. The includer defines:
//   FRUGAL_AVX2       the function attribute (a target("avx2,...") list);
//   FRUGAL_AVX2_NS    the namespace the kernel goes into (within frugal::ops::q8::detail);
//   FRUGAL_AVX2_VNNI  1 for the AVX-VNNI build, 0 for plain AVX2.
// Private to q8_gemm_avx2.cpp: no include guard, as it is included once per build.

namespace frugal::ops::q8::detail::FRUGAL_AVX2_NS {

inline constexpr bool k_vnni = FRUGAL_AVX2_VNNI;

constexpr int64_t k_cols = 8;                              // columns per tile: one ymm of int32 lanes
constexpr int64_t k_tiles = 2;                             // tiles per chunk call
constexpr int64_t k_scales = k_qk * k_cols;               // f32 [8], after the 256 quant bytes
constexpr int64_t k_corrections = k_scales + 4 * k_cols;   // int32 [8]
constexpr int64_t k_offsets = k_corrections + 4 * k_cols;  // f32 [8] or int8 [2][8]
constexpr int64_t k_block = k_offsets + 4 * k_cols;        // 352
// A packed Q2_K super-block's offsets, after a chunk's tiles (q8_chunk), per tile: its 16 mins as
// int16 pairs (m_2p, m_2p+1) per column for p < 8 (vpmaddwd's operand against a row's pair of
// half sums), then −dmin (f32 [8]).
constexpr int64_t k_q2_k_offsets = 8 * 4 * k_cols + 4 * k_cols; // 288 per super-block
constexpr int64_t k_q2_k_offsets_per_block = k_q2_k_offsets / 8;
// A chunk's scratch per 32-element block of k (kernel::scratch_per_block): two tiles, and Q2_K's
// offsets.
constexpr size_t k_scratch_per_block = size_t(k_tiles * (k_block + k_q2_k_offsets_per_block));
// Groups of weight type t summed in int16 before vpmaddwd widens them (see above).
constexpr int span_of(dtype t) {
    if (t == dtype::q5_k || t == dtype::q5_1 || t == dtype::q6_k) return 2;
    return t == dtype::q4_k || t == dtype::q4_1 || t == dtype::q5_0 || t == dtype::q2_k ? 4 : 8;
}
// Q6_K's and Q2_K's int8 scale per 16-element half (Q3_K packs as Q6_K and takes its kernel).
constexpr bool halves(dtype t) { return t == dtype::q6_k || t == dtype::q2_k; }

// All ones in the int32 lanes c < cols.
FRUGAL_AVX2 inline __m256i live_columns(int64_t cols) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// y[i, 8t + c] for i < MR activation rows, t < NT tiles, c < cols[t] (<= 8). Per block b: the
// int32 sums start at the tile's corrections; the 8 groups add vpmaddubsw products (4 activation
// bytes broadcast × 4 quants of 8 columns) into int16 runs, widened by vpmaddwd every span_of(T)
// groups (against 1, or Q6_K's and Q2_K's half-block scales); then one fused multiply-add scales
// the exact block sums by dw · dx into the f32 accumulators (and, with offsets, a second adds
// mw · dx · Σ qx; Q2_K's offsets come at each super-block's end: its 16 mins against the row's
// sums per half in 8 vpmaddwd, exact in int32, then one fused multiply-add by −dmin · dx).
//   part: NT tiles of blocks [b0, b0 + nb) of the rows, tile t at tiles + t · nb · k_block
//   a: the activations, first row at row i0; y: [MR, ldy], written or (part.accumulate) added to
template <int MR, int NT, dtype T>
FRUGAL_AVX2 inline void q8_rows(const tiles_part & part, const activations & a, int64_t i0, float * y, int64_t ldy,
                                const int64_t * cols) {
    constexpr bool offsets = has_offsets(T);
    constexpr int span = span_of(T);
    const std::byte * tiles = part.tiles;
    const int64_t nb = part.nb, row_blocks = a.k / k_qk;
    const uint8_t * xq = a.q + i0 * a.k + part.b0 * k_qk;
    const float * xd = a.d + i0 * row_blocks + part.b0;
    constexpr bool half_offsets = T == dtype::q2_k;
    const int64_t row_sums = half_offsets ? 2 * row_blocks : row_blocks; // Σ qx per block, or per half
    const int16_t * x_sums =
        offsets || half_offsets ? a.sums + i0 * row_sums + part.b0 * (half_offsets ? 2 : 1) : nullptr;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MR][NT];
    for (int r = 0; r < MR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    const int64_t tile_stride = nb * k_block;
    for (int64_t b = 0; b < nb; ++b) {
        const std::byte * blk[NT];
        __m256i sums[MR][NT];
        for (int t = 0; t < NT; ++t) {
            blk[t] = tiles + t * tile_stride + b * k_block;
            const __m256i correction = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(blk[t] + k_corrections));
            for (int r = 0; r < MR; ++r) sums[r][t] = correction;
        }
        // Q6_K and Q2_K widen each run against the scale of its half of the block: int8 sc per
        // column into both int16 halves of the column's lane.
        __m256i half_scales[NT][2];
        if constexpr (halves(T))
            for (int t = 0; t < NT; ++t)
                for (int h = 0; h < 2; ++h) {
                    const __m256i sc = _mm256_cvtepi8_epi32(
                        _mm_loadl_epi64(reinterpret_cast<const __m128i *>(blk[t] + k_offsets + h * k_cols)));
                    half_scales[t][h] = _mm256_blend_epi16(sc, _mm256_slli_epi32(sc, 16), 0xAA);
                }
        const uint8_t * xb = xq + b * k_qk;
        // Group g: op(r, t, x, w) takes tile t's quants w against row r's 4 activation bytes x
        // (broadcast).
        const auto group = [&](int g, auto op) FRUGAL_AVX2 {
            __m256i w[NT];
            for (int t = 0; t < NT; ++t)
                w[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(blk[t] + g * 4 * k_cols));
            for (int r = 0; r < MR; ++r) {
                int32_t four;
                std::memcpy(&four, xb + r * a.k + g * 4, 4);
                const __m256i x = _mm256_set1_epi32(four);
                for (int t = 0; t < NT; ++t) op(r, t, x, w[t]);
            }
        };
        if constexpr (k_vnni && !halves(T)) {
            // AVX-VNNI: vpdpbusd adds each lane's 4 products straight into its int32 sum, for
            // every type whose block sums need no per-half scale.
            for (int g = 0; g < k_groups; ++g)
                group(g, [&](int r, int t, __m256i x, __m256i w) FRUGAL_AVX2 {
                    sums[r][t] = _mm256_dpbusd_avx_epi32(sums[r][t], x, w);
                });
        } else
        for (int g0 = 0; g0 < k_groups; g0 += span) {
            __m256i run[MR][NT];
            for (int r = 0; r < MR; ++r)
                for (int t = 0; t < NT; ++t) run[r][t] = _mm256_setzero_si256();
            // Not unrolled: GCC would reassociate the unrolled int16 sums and spill the products.
#pragma GCC unroll 1
            for (int g = g0; g < g0 + span; ++g)
                group(g, [&](int r, int t, __m256i x, __m256i w) FRUGAL_AVX2 {
                    run[r][t] = _mm256_add_epi16(run[r][t], _mm256_maddubs_epi16(x, w));
                });
            for (int r = 0; r < MR; ++r)
                for (int t = 0; t < NT; ++t) {
                    const __m256i by = halves(T) ? half_scales[t][g0 / 4] : ones;
                    sums[r][t] = _mm256_add_epi32(sums[r][t], _mm256_madd_epi16(run[r][t], by));
                }
        }
        for (int t = 0; t < NT; ++t) {
            const __m256 dw = _mm256_loadu_ps(reinterpret_cast<const float *>(blk[t] + k_scales));
            for (int r = 0; r < MR; ++r) {
                const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(xd[r * row_blocks + b]));
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r][t]), s, acc[r][t]);
            }
            if constexpr (offsets) {
                const __m256 mw = _mm256_loadu_ps(reinterpret_cast<const float *>(blk[t] + k_offsets));
                for (int r = 0; r < MR; ++r) {
                    const int64_t at = r * row_blocks + b;
                    acc[r][t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xd[at] * float(x_sums[at])), acc[r][t]);
                }
            }
            if (half_offsets && b % 8 == 7) { // after the NT tiles (q8_chunk)
                const std::byte * mins = tiles + NT * tile_stride + (t * (nb / 8) + b / 8) * k_q2_k_offsets;
                const __m256 neg_dmin = _mm256_loadu_ps(reinterpret_cast<const float *>(mins + 8 * 4 * k_cols));
                for (int r = 0; r < MR; ++r) {
                    __m256i sum = _mm256_setzero_si256();
                    for (int p = 0; p < 8; ++p) {
                        int32_t sum_pair; // Σ qx of halves 2p and 2p + 1 of the super-block, int16 each
                        std::memcpy(&sum_pair, x_sums + r * row_sums + 2 * (b - 7) + 2 * p, sizeof sum_pair);
                        const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(mins + p * 4 * k_cols));
                        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(m, _mm256_set1_epi32(sum_pair)));
                    }
                    const __m256 s = _mm256_mul_ps(neg_dmin, _mm256_set1_ps(xd[r * row_blocks + b]));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), s, acc[r][t]);
                }
            }
        }
    }
    for (int t = 0; t < NT; ++t) {
        const __m256i live = live_columns(cols[t]);
        for (int r = 0; r < MR; ++r) {
            float * out = y + r * ldy + t * k_cols;
            const __m256 sum = part.accumulate ? _mm256_add_ps(_mm256_maskload_ps(out, live), acc[r][t]) : acc[r][t];
            _mm256_maskstore_ps(out, live, sum);
        }
    }
}

// The 8 rows' byte offsets for vpgatherdd (columns past cols repeat the last row's, always valid),
// a mask of the live columns, with which packing zeroes the others, and the rows' stride.
struct tile_rows {
    __m256i offsets, live;
    int64_t stride, cols;
};
FRUGAL_AVX2 inline tile_rows rows_of(size_t w_stride, int64_t cols) {
    alignas(32) int32_t offsets[k_cols];
    for (int64_t c = 0; c < k_cols; ++c) offsets[c] = int32_t(std::min(c, cols - 1) * int64_t(w_stride));
    return {_mm256_load_si256(reinterpret_cast<const __m256i *>(offsets)), live_columns(cols), int64_t(w_stride), cols};
}

// Column c's dword at base + offsets[c], for the live columns (0 elsewhere).
FRUGAL_AVX2 inline __m256i gather(const std::byte * base, const tile_rows & rows) {
    const __m256i v = _mm256_i32gather_epi32(reinterpret_cast<const int *>(base), rows.offsets, 1);
    return _mm256_and_si256(v, rows.live);
}

// gather() of the 4 dwords at base + 4i into dwords[i] (i < 4), from 8 row loads
// of 16 bytes and a 4 x 8 dword transpose: short prompts pay for packing in full, and
// vpgatherdd took half of it on Zen 3 (pp16 of repacked Q4_0: packing 40 % of the time).
FRUGAL_AVX2 inline void gather_4(const std::byte * base, const tile_rows & rows, __m256i * dwords) {
    const auto row = [&](int64_t c) FRUGAL_AVX2 {
        return _mm_loadu_si128(reinterpret_cast<const __m128i *>(base + std::min(c, rows.cols - 1) * rows.stride));
    };
    // Rows c and c + 4 in the two 128-bit lanes; the unpacks work within lanes.
    const auto pair = [&](int64_t c) FRUGAL_AVX2 {
        return _mm256_inserti128_si256(_mm256_castsi128_si256(row(c)), row(c + 4), 1);
    };
    const __m256i r04 = pair(0), r15 = pair(1), r26 = pair(2), r37 = pair(3);
    const __m256i lo01 = _mm256_unpacklo_epi32(r04, r15), hi01 = _mm256_unpackhi_epi32(r04, r15); // dwords 0-1, 2-3
    const __m256i lo23 = _mm256_unpacklo_epi32(r26, r37), hi23 = _mm256_unpackhi_epi32(r26, r37);
    dwords[0] = _mm256_and_si256(_mm256_unpacklo_epi64(lo01, lo23), rows.live);
    dwords[1] = _mm256_and_si256(_mm256_unpackhi_epi64(lo01, lo23), rows.live);
    dwords[2] = _mm256_and_si256(_mm256_unpacklo_epi64(hi01, hi23), rows.live);
    dwords[3] = _mm256_and_si256(_mm256_unpackhi_epi64(hi01, hi23), rows.live);
}

// The fp16 at byte `at` of each live row as out[c] (0 past cols), converted by one vcvtph2ps (one
// conversion each in scalar code had been a tenth of packing on Zen 3).
FRUGAL_AVX2 inline void halves_of(const std::byte * w, const tile_rows & rows, int64_t at, float * out) {
    alignas(16) uint16_t h[k_cols] = {};
    for (int64_t c = 0; c < rows.cols; ++c) std::memcpy(&h[c], w + c * rows.stride + at, sizeof h[c]);
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i *>(h))));
}

// Each byte's nibble at bit `shift` (0: low, 4: high) of its dword, as 0..15.
FRUGAL_AVX2 inline __m256i nibbles(__m256i v, int shift) {
    return _mm256_and_si256(_mm256_srli_epi32(v, shift), _mm256_set1_epi8(0x0F));
}

// Bits [shift, shift + 4) of each lane's dword, bit i moved to bit 4 of byte i: Q5_0's fifth bits
// of 4 consecutive elements, over their nibbles. (x · 0x00204081 puts bit i of a 4-bit x at bit
// 8i; its four shifted copies never overlap, so nothing carries.)
FRUGAL_AVX2 inline __m256i fifth_bits(__m256i bits, int shift) {
    const __m256i four = _mm256_and_si256(_mm256_srli_epi32(bits, shift), _mm256_set1_epi32(0xF));
    const __m256i spread = _mm256_mullo_epi32(four, _mm256_set1_epi32(0x00204081));
    return _mm256_slli_epi32(_mm256_and_si256(spread, _mm256_set1_epi32(0x01010101)), 4);
}

// Bit `bit` (< 8) of each byte at its bit 4, the other bits cleared: a repacked row's fifth bits
// (fifth_bits_in) over their nibbles. A dword shift by 4 − bit brings no other byte's bit to a
// bit 4.
FRUGAL_AVX2 inline __m256i byte_bit_at_4(__m256i v, int bit) {
    const __m256i moved = bit <= 4 ? _mm256_slli_epi32(v, 4 - bit) : _mm256_srli_epi32(v, bit - 4);
    return _mm256_and_si256(moved, _mm256_set1_epi8(0x10));
}

// Each column's Σ of its 4 quants (s8) in a group, as int32.
FRUGAL_AVX2 inline __m256i column_sums(__m256i q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
}

// IQ4_NL's 16 levels in each 128-bit half: a nibble indexes them with one byte shuffle.
FRUGAL_AVX2 inline __m256i iq4_nl_levels() {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i *>(k_iq4_nl_values)));
}

FRUGAL_AVX2 inline void store(std::byte * at, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i *>(at), v); }

// −128 · Σ q (activations are stored as qx + 128, so each block sum carries 128 · Σ q too much).
FRUGAL_AVX2 inline void store_correction(std::byte * blk, __m256i sum) {
    store(blk + k_corrections, _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 7)));
}

// Rows 0..cols-1 (cols <= 8) of Q4_0 blocks (either layout), Q4_1, Q5_0 or Q5_1 blocks or (the VNNI
// build) Q8_0 or IQ4_NL blocks, laid out as l, into one tile at out: each block's groups gathered
// across the rows.
FRUGAL_AVX2 inline void pack_tile(const block_layout & l, const std::byte * w, size_t w_stride, int64_t cols,
                                  int64_t row_blocks, int64_t b0, int64_t nb, std::byte * out) {
    const tile_rows rows = rows_of(w_stride, cols);
    const __m256i zero = _mm256_set1_epi8(int8_t(l.zero));
    const __m256i levels = iq4_nl_levels();
    const auto signed_quants = [&](__m256i q) FRUGAL_AVX2 {
        return l.levels ? _mm256_shuffle_epi8(levels, q) : _mm256_sub_epi8(q, zero);
    };
    const bool five = l.fifth != fifth_bits::none;
    for (int64_t b = b0; b < b0 + nb; ++b) {
        std::byte * blk = out + (b - b0) * k_block;
        const std::byte * quants = w + l.q_offset + b * l.q_step;
        // The fifth bits: a qh word per column, or a repacked group's 16 bytes (dword g: those of
        // elements 4g..4g+3 and 16 + 4g..).
        const frugal::ops::detail::fifth_bits_place fifth =
            five ? fifth_bits_in(l, row_blocks, b) : frugal::ops::detail::fifth_bits_place{};
        const __m256i high = five && fifth.bit < 0 ? gather(w + fifth.bytes, rows) : _mm256_setzero_si256();
        __m256i sum = _mm256_setzero_si256();
        if (!l.nibbles) { // Q8_0 (the VNNI build): group g is bytes 4g..4g+3 as stored
            for (int half = 0; half < 2; ++half) {
                __m256i q[4];
                gather_4(quants + 16 * half, rows, q);
                for (int g = 0; g < 4; ++g) {
                    store(blk + (4 * half + g) * 4 * k_cols, q[g]);
                    sum = _mm256_add_epi32(sum, column_sums(q[g]));
                }
            }
            store_correction(blk, sum);
            halves_of(w, rows, l.d_offset + b * l.d_step, reinterpret_cast<float *>(blk + k_scales));
            continue;
        }
        __m256i v[4], fifth_groups[4];
        gather_4(quants, rows, v);
        if (five && fifth.bit >= 0) gather_4(w + fifth.bytes, rows, fifth_groups);
        // group g < 4: low nibbles of bytes 4g..4g+3 (elements 4g..), g >= 4: their high ones
        // (elements 16 + 4g..)
        for (int g = 0; g < k_groups / 2; ++g) {
            __m256i q_lo = nibbles(v[g], 0), q_hi = nibbles(v[g], 4);
            if (five && fifth.bit < 0) {
                q_lo = _mm256_or_si256(q_lo, fifth_bits(high, 4 * g));
                q_hi = _mm256_or_si256(q_hi, fifth_bits(high, 16 + 4 * g));
            } else if (five) {
                q_lo = _mm256_or_si256(q_lo, byte_bit_at_4(fifth_groups[g], fifth.bit));
                q_hi = _mm256_or_si256(q_hi, byte_bit_at_4(fifth_groups[g], fifth.bit + 1));
            }
            const __m256i lo = _mm256_and_si256(signed_quants(q_lo), rows.live);
            const __m256i hi = _mm256_and_si256(signed_quants(q_hi), rows.live);
            store(blk + g * 4 * k_cols, lo);
            store(blk + (g + k_groups / 2) * 4 * k_cols, hi);
            sum = _mm256_add_epi32(sum, _mm256_add_epi32(column_sums(lo), column_sums(hi)));
        }
        store_correction(blk, sum);
        halves_of(w, rows, l.d_offset + b * l.d_step, reinterpret_cast<float *>(blk + k_scales));
        if (l.m_offset >= 0) // Q4_1's and Q5_1's offsets m
            halves_of(w, rows, l.m_offset + b * l.d_step, reinterpret_cast<float *>(blk + k_offsets));
    }
}

// The same for Q4_K / Q5_K (Block): super-block sb's sub-block j = 2h + p holds nibble p of
// qs[32h + e] (plus, Q5_K, bit j of qh[e] as the fifth bit) for its elements e < 32.
template <class Block>
FRUGAL_AVX2 inline void pack_tile_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb, std::byte * out) {
    constexpr bool q5 = std::is_same_v<Block, block_q5_k>;
    const tile_rows rows = rows_of(w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const std::byte * base = w + sb * int64_t(sizeof(Block));
        std::byte * blk = out + sb * 8 * k_block; // its 8 sub-blocks' slots
        __m256i high_bits[k_groups];
        if constexpr (q5)
            for (int half = 0; half < 2; ++half)
                gather_4(base + offsetof(Block, qh) + 16 * half, rows, high_bits + 4 * half);
        for (int h = 0; h < 4; ++h) {
            __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            __m256i qs[k_groups];
            for (int half = 0; half < 2; ++half)
                gather_4(base + offsetof(Block, qs) + 32 * h + 16 * half, rows, qs + 4 * half);
            for (int g = 0; g < k_groups; ++g) {
                const __m256i v = qs[g];
                for (int p = 0; p < 2; ++p) {
                    __m256i quant = nibbles(v, 4 * p);
                    if constexpr (q5) {
                        const __m256i bit =
                            _mm256_and_si256(_mm256_srli_epi32(high_bits[g], 2 * h + p), _mm256_set1_epi8(1));
                        quant = _mm256_or_si256(quant, _mm256_slli_epi32(bit, 4));
                    }
                    store(blk + (2 * h + p) * k_block + g * 4 * k_cols, quant);
                    sum[p] = _mm256_add_epi32(sum[p], column_sums(quant));
                }
            }
            for (int p = 0; p < 2; ++p) store_correction(blk + (2 * h + p) * k_block, sum[p]);
        }
        for (int64_t c = 0; c < k_cols; ++c) {
            float dw[8] = {}, mw[8] = {};
            if (c < cols) k_quant_sub_scales<Block>(base + c * int64_t(w_stride), dw, mw);
            for (int j = 0; j < 8; ++j) {
                reinterpret_cast<float *>(blk + j * k_block + k_scales)[c] = dw[j];
                reinterpret_cast<float *>(blk + j * k_block + k_offsets)[c] = mw[j];
            }
        }
    }
}

// A halves block's correction (Q6_K, Q3_K): −128 · Σ_h sc_h · Σ qw over half h, from each
// column's Σ qw per half (sum[h]) and the halves' int8 scales at k_offsets.
FRUGAL_AVX2 inline void store_half_correction(std::byte * blk, const __m256i (&sum)[2]) {
    const auto * sc = reinterpret_cast<const int8_t *>(blk + k_offsets);
    const __m256i sc0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(sc)));
    const __m256i sc1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(sc + k_cols)));
    store_correction(blk, _mm256_add_epi32(_mm256_mullo_epi32(sum[0], sc0), _mm256_mullo_epi32(sum[1], sc1)));
}

// A halves block's 8 quant groups quant(g) (each 0 past the live columns) into blk, with its
// correction against the halves' int8 scales already at k_offsets.
template <class Quant>
FRUGAL_AVX2 inline void store_halves_quants(std::byte * blk, Quant quant) {
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int g = 0; g < k_groups; ++g) {
        const __m256i q = quant(g);
        store(blk + g * 4 * k_cols, q);
        sum[g / 4] = _mm256_add_epi32(sum[g / 4], column_sums(q));
    }
    store_half_correction(blk, sum);
}

// Slot 8 · sb + j of a tile at out for Q3_K or Q2_K (packed as Q6_K): the super-block's scale d
// (f32 [k_cols]) as the block scale, its halves' int8 scales from sc ([16][k_cols]: halves 2j and
// 2j + 1), and the quant groups quant(g).
template <class Quant>
FRUGAL_AVX2 inline void store_super_block_halves(std::byte * out, int64_t sb, int j, const float * d,
                                                 const int8_t * sc, Quant quant) {
    std::byte * blk = out + (sb * 8 + j) * k_block;
    std::memcpy(blk + k_scales, d, k_cols * sizeof(float));
    std::memcpy(blk + k_offsets, sc + 2 * j * k_cols, 2 * k_cols);
    store_halves_quants(blk, quant);
}

// Rows 0..cols-1 (cols <= 8) of Q6_K super-blocks into one tile at out: block j of super-block
// sb (q6_k_block_of) into slot 8 · sb + j, its quants as q − 32, its halves' scales sc as int8
// and the super-block's d as the block scale.
FRUGAL_AVX2 inline void pack_tile_q6_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                       std::byte * out) {
    const tile_rows rows = rows_of(w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const std::byte * base = w + sb * int64_t(sizeof(block_q6_k));
        for (int j = 0; j < 8; ++j) {
            const q6_k_block l = q6_k_block_of(j);
            std::byte * blk = out + (sb * 8 + j) * k_block;
            int8_t sc[2 * k_cols]; // the halves' scales, [2][k_cols] (flat: the callee writes both rows)
            q6_k_block_scales(base, w_stride, cols, k_cols, l, reinterpret_cast<float *>(blk + k_scales), sc);
            std::memcpy(blk + k_offsets, sc, sizeof sc);
            __m256i lo[k_groups], hi[k_groups];
            for (int half = 0; half < 2; ++half) {
                gather_4(base + offsetof(block_q6_k, ql) + l.ql + 16 * half, rows, lo + 4 * half);
                gather_4(base + offsetof(block_q6_k, qh) + l.qh + 16 * half, rows, hi + 4 * half);
            }
            store_halves_quants(blk, [&](int g) FRUGAL_AVX2 {
                const __m256i two_bits =
                    _mm256_and_si256(_mm256_srli_epi32(hi[g], int(l.qh_shift)), _mm256_set1_epi8(3));
                const __m256i q6 = _mm256_or_si256(nibbles(lo[g], int(l.ql_shift)), _mm256_slli_epi32(two_bits, 4));
                return _mm256_and_si256(_mm256_sub_epi8(q6, _mm256_set1_epi8(32)), rows.live);
            });
        }
    }
}

// Rows 0..cols-1 (cols <= 8) of Q3_K super-blocks into one tile at out, as Q6_K's: block j of
// super-block sb (bits 2 · (j % 4) of qs[32 · (j / 4) + l] with bit j of hmask[l] as 4, less 4)
// into slot 8 · sb + j, its quants as q in −4..3, its halves' scales sc − 32 as int8 and the
// super-block's d as the block scale.
FRUGAL_AVX2 inline void pack_tile_q3_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                       std::byte * out) {
    const tile_rows rows = rows_of(w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const std::byte * base = w + sb * int64_t(sizeof(block_q3_k));
        float d[k_cols];
        int8_t sc[16 * k_cols]; // [half][column]
        q3_k_scales(base, w_stride, cols, k_cols, d, sc);
        __m256i third[k_groups], qs[2][k_groups]; // hmask; qs of each 128-element half
        for (int half = 0; half < 2; ++half) {
            gather_4(base + offsetof(block_q3_k, hmask) + 16 * half, rows, third + 4 * half);
            for (int h = 0; h < 2; ++h)
                gather_4(base + offsetof(block_q3_k, qs) + 32 * h + 16 * half, rows, qs[h] + 4 * half);
        }
        for (int j = 0; j < 8; ++j)
            store_super_block_halves(out, sb, j, d, sc, [&](int g) FRUGAL_AVX2 {
                const __m256i v = qs[j / 4][g];
                const __m256i two_bits = _mm256_and_si256(_mm256_srli_epi32(v, 2 * (j % 4)), _mm256_set1_epi8(3));
                const __m256i bit = _mm256_and_si256(_mm256_srli_epi32(third[g], j), _mm256_set1_epi8(1));
                const __m256i q3 = _mm256_or_si256(two_bits, _mm256_slli_epi32(bit, 2));
                return _mm256_and_si256(_mm256_sub_epi8(q3, _mm256_set1_epi8(4)), rows.live);
            });
    }
}

// Rows 0..cols-1 (cols <= 8) of Q2_K super-blocks into one tile at out, as Q6_K's: block j of
// super-block sb (bits 2 · (j % 4) of qs[32 · (j / 4) + l]) into slot 8 · sb + j, its quants q in
// 0..3, its halves' scales sc as int8 and the super-block's d as the block scale; the
// super-block's mins and −dmin at offsets + sb · k_q2_k_offsets.
FRUGAL_AVX2 inline void pack_tile_q2_k(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                       std::byte * out, std::byte * offsets) {
    const tile_rows rows = rows_of(w_stride, cols);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const std::byte * base = w + sb * int64_t(sizeof(block_q2_k));
        float d[k_cols] = {}, neg_dmin[k_cols] = {};
        int8_t sc[16 * k_cols] = {};     // [half][column]
        int16_t mins[8][k_cols][2] = {}; // [pair][column]: m_2p, m_2p+1
        for (int64_t c = 0; c < cols; ++c) {
            block_q2_k b;
            std::memcpy(&b, base + c * int64_t(w_stride), sizeof b);
            d[c] = fp16_to_fp32(b.d);
            neg_dmin[c] = -fp16_to_fp32(b.dmin);
            for (int h = 0; h < 16; ++h) {
                sc[h * k_cols + c] = int8_t(b.scales[h] & 0xF);
                mins[h / 2][c][h % 2] = int16_t(b.scales[h] >> 4);
            }
        }
        std::memcpy(offsets + sb * k_q2_k_offsets, mins, sizeof mins);
        std::memcpy(offsets + sb * k_q2_k_offsets + sizeof mins, neg_dmin, sizeof neg_dmin);
        __m256i qs[2][k_groups]; // of each 128-element half
        for (int h = 0; h < 2; ++h)
            for (int half = 0; half < 2; ++half)
                gather_4(base + offsetof(block_q2_k, qs) + 32 * h + 16 * half, rows, qs[h] + 4 * half);
        for (int j = 0; j < 8; ++j)
            store_super_block_halves(out, sb, j, d, sc, [&](int g) FRUGAL_AVX2 {
                const __m256i v = qs[j / 4][g];
                return _mm256_and_si256(_mm256_srli_epi32(v, 2 * (j % 4)), _mm256_set1_epi8(3));
            });
    }
}

// Rows 0..cols-1 (cols <= 8) of IQ4_XS super-blocks into one tile at out, as plain blocks: block j
// of super-block sb into slot 8 · sb + j, its nibbles through IQ4_NL's levels as the quants,
// d · (ls − 32) as its scale. Their quants span −127..113, which vpmaddubsw's int16 pairs cannot
// hold against u8 activations: the AVX-VNNI build alone takes them.
FRUGAL_AVX2 inline void pack_tile_iq4_xs(const std::byte * w, size_t w_stride, int64_t cols, int64_t nsb,
                                         std::byte * out) {
    const tile_rows rows = rows_of(w_stride, cols);
    const __m256i levels = iq4_nl_levels();
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const std::byte * base = w + sb * int64_t(sizeof(block_iq4_xs));
        float dw[8][k_cols] = {};
        for (int64_t c = 0; c < cols; ++c) {
            block_iq4_xs b;
            std::memcpy(&b, base + c * int64_t(w_stride), sizeof b);
            const uint64_t scales = frugal::ops::detail::unpack_iq4_xs_scales(b);
            for (int j = 0; j < 8; ++j) dw[j][c] = fp16_to_fp32(b.d) * float(int((scales >> (8 * j)) & 0xFF) - 32);
        }
        for (int j = 0; j < 8; ++j) {
            std::byte * blk = out + (sb * 8 + j) * k_block;
            __m256i sum = _mm256_setzero_si256(), v[4];
            gather_4(base + offsetof(block_iq4_xs, qs) + 16 * j, rows, v);
            for (int g = 0; g < k_groups / 2; ++g) {
                const __m256i lo = _mm256_and_si256(_mm256_shuffle_epi8(levels, nibbles(v[g], 0)), rows.live);
                const __m256i hi = _mm256_and_si256(_mm256_shuffle_epi8(levels, nibbles(v[g], 4)), rows.live);
                store(blk + g * 4 * k_cols, lo);
                store(blk + (g + k_groups / 2) * 4 * k_cols, hi);
                sum = _mm256_add_epi32(sum, _mm256_add_epi32(column_sums(lo), column_sums(hi)));
            }
            store_correction(blk, sum);
            std::memcpy(blk + k_scales, dw[j], sizeof dw[j]);
        }
    }
}

// The activation rows of a chunk, MR at a time, then the rest one by one, prefetching the next
// chunk's weight rows meanwhile.
template <int NT, dtype T>
FRUGAL_AVX2 inline void q8_all_rows(const tiles_part & part, const activations & a, int64_t m, float * y, int64_t ldy,
                                    const int64_t * cols, next_chunk_prefetch & prefetch) {
    constexpr int MR = 4;
    int64_t i = 0;
    for (; i + MR <= m; i += MR) {
        q8_rows<MR, NT, T>(part, a, i, y + i * ldy, ldy, cols);
        prefetch.step();
    }
    for (; i < m; ++i) q8_rows<1, NT, T>(part, a, i, y + i * ldy, ldy, cols);
}

template <dtype T>
FRUGAL_AVX2 inline void q8_multiply(int64_t tiles, const tiles_part & part, const activations & a, int64_t m, float * y,
                                    int64_t ldy, const int64_t * cols, next_chunk_prefetch & prefetch) {
    if (tiles == 2)
        q8_all_rows<2, T>(part, a, m, y, ldy, cols, prefetch);
    else
        q8_all_rows<1, T>(part, a, m, y, ldy, cols, prefetch);
}

// Packed tiles a chunk keeps in L2 at most (packed_parts): the AVX-512 kernel's measured share of
// Zen 5's 1 MiB L2 (640 KiB), scaled to the 512 KiB of Zen 2 and 3. Rows of up to 14.5 K
// elements stay whole. Not measured on such a CPU (there is none at hand); parts cost the
// AVX-512 kernel 0-3 % where they were not needed.
inline constexpr int64_t k_packed_bytes_max = 320 << 10;

// chunk_fn: packs up to 16 weight rows into two tiles (one when cols <= 8), then runs every
// activation row against them (a chunk with k = 8960 packs into 193 KiB, within L2; longer rows
// go in parts of their blocks).
FRUGAL_AVX2 void q8_chunk(dtype t, const std::byte * w, size_t w_stride, int64_t cols, const activations & a,
                          int64_t m, float * y, int64_t ldy, std::byte * scratch) {
    const int64_t row_blocks = a.k / k_qk;
    const int64_t tiles = cols > k_cols ? 2 : 1;
    const int64_t tile_cols[2] = {std::min(cols, k_cols), cols - k_cols};
    const bool q2_k = t == dtype::q2_k;
    const packed_parts parts(t, row_blocks, tiles * (k_block + (q2_k ? k_q2_k_offsets_per_block : 0)), k_packed_bytes_max);
    for (int64_t p = 0; p < parts.count(); ++p) {
        const int64_t b0 = parts.first(p), nb = parts.first(p + 1) - b0, sb0 = b0 / 8;
        for (int64_t tile = 0; tile < tiles; ++tile) {
            const std::byte * rows = w + tile * k_cols * int64_t(w_stride);
            std::byte * out = scratch + tile * nb * k_block;
            if (t == dtype::q6_k)
                pack_tile_q6_k(rows + sb0 * int64_t(sizeof(block_q6_k)), w_stride, tile_cols[tile], nb / 8, out);
            else if (t == dtype::q3_k)
                pack_tile_q3_k(rows + sb0 * int64_t(sizeof(block_q3_k)), w_stride, tile_cols[tile], nb / 8, out);
            else if (t == dtype::iq4_xs)
                pack_tile_iq4_xs(rows + sb0 * int64_t(sizeof(block_iq4_xs)), w_stride, tile_cols[tile], nb / 8, out);
            else if (q2_k) // its offsets after the tiles (q8_rows)
                pack_tile_q2_k(rows + sb0 * int64_t(sizeof(block_q2_k)), w_stride, tile_cols[tile], nb / 8, out,
                               scratch + tiles * nb * k_block + tile * (nb / 8) * k_q2_k_offsets);
            else if (t == dtype::q4_k)
                pack_tile_k<block_q4_k>(rows + sb0 * int64_t(sizeof(block_q4_k)), w_stride, tile_cols[tile], nb / 8,
                                        out);
            else if (t == dtype::q5_k)
                pack_tile_k<block_q5_k>(rows + sb0 * int64_t(sizeof(block_q5_k)), w_stride, tile_cols[tile], nb / 8,
                                        out);
            else
                pack_tile(layout_of(t, row_blocks), rows, w_stride, tile_cols[tile], row_blocks, b0, nb, out);
        }
        // The next chunk's rows are asked for while the last part multiplies.
        const bool last = p + 1 == parts.count();
        next_chunk_prefetch prefetch(w + cols * int64_t(w_stride), last ? cols * int64_t(w_stride) : 0, m / 4);
        const tiles_part part{scratch, b0, nb, p > 0};
        switch (t) {
        case dtype::q4_k: q8_multiply<dtype::q4_k>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        case dtype::q5_k: q8_multiply<dtype::q5_k>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        case dtype::q6_k:
        case dtype::q3_k: q8_multiply<dtype::q6_k>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        case dtype::q2_k: q8_multiply<dtype::q2_k>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        case dtype::q5_0:
        case dtype::q5_0_repacked: q8_multiply<dtype::q5_0>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        case dtype::q4_1:
        case dtype::q4_1_repacked: q8_multiply<dtype::q4_1>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        case dtype::q5_1:
        case dtype::q5_1_repacked: q8_multiply<dtype::q5_1>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        default: q8_multiply<dtype::q4_0>(tiles, part, a, m, y, ldy, tile_cols, prefetch); break;
        }
    }
}

// The fewest rows from which this kernel beats the row kernels (kernel::gemm_from; 0: the
// default), 2 threads, whole 1.5B Qwen2 files, pp N t/s rows / packed.
// Q4_0 (either layout), Q4_K, Q5_K and Q6_K: on a Zen 3 EPYC (AVX2 only) once the packer stopped
// gathering, 3 rounds. Repacked Q4_0: pp6 30-32 / 22-26, pp8 27-33 / 34-38, pp12 28-32 / 33-43,
// pp16 31-34 / 49-54. Q4_K_M, its Q4_K and Q6_K both from 12 rows against 28 and 40: pp16
// 34.7-38.3 / 33.6-38.5, pp24 34.1-41.2 / 40.6-49.9. (With the gathering packer on Zen 5 under
// FRUGAL_MAX_CPU_ISA=avx2 the crossovers had been later: Q6_K between 32 and 48 rows, Q4_K between
// 24 and 32, Q4_0 between 16 and 24.) Both held on Zen 5 under FRUGAL_MAX_CPU_ISA=avx2 with the
// gather-free packer (3 rounds): Q4_0 pp6 60-74 / 55-57, pp8 42-50 / 57-69; Q4_K_M pp16 67-70 /
// 65-73 (a tie), pp20 53-58 / 58-65, pp28 58-69 / 74-85.
// Q3_K and Q2_K: on Zen 4 under FRUGAL_MAX_CPU_ISA=avx2 with the gathering packer, 2 rounds:
// Q3_K_M's Q3_K at 16 69-73 / 64-67, 24 63-70 / 72-75, 32 73-75 / 80-83; Q2_K at 24 74-77 /
// 61-69, 32 71-78 / 75-77, 48 74-80 / 80-83.
constexpr int64_t gemm_from(dtype t) {
    if (t == dtype::q4_0 || t == dtype::q4_0_repacked) return 8;
    if (t == dtype::q4_k || t == dtype::q5_k || t == dtype::q6_k) return 20;
    if (t == dtype::q3_k) return 24;
    return t == dtype::q2_k ? 32 : 0;
}

} // namespace frugal::ops::q8::detail::FRUGAL_AVX2_NS
