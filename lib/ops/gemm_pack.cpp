// gemm_pack.cpp - see gemm_pack.hpp. The file is built for baseline x86-64; the AVX-512
// transposes carry their own target attribute and run only where the CPU has AVX-512 F.
#include "ops/gemm_pack.hpp"

#include <cstring>

#include "ops/quant.hpp"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers build "undefined" pass-through operands as `__m512 __Y = __Y;`, which
// -W(maybe-)uninitialized reports once inlined (see quant_avx512.cpp).
#  pragma GCC diagnostic ignored "-Wuninitialized"
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#  include <immintrin.h>

#  include "ops/bf16_avx512.hpp"
#endif

namespace frugal::ops::gemm_pack {

namespace detail {
void transpose_group_portable(const std::byte * rows, int64_t row_bytes, int64_t k_words, void * out) {
    auto * to = static_cast<std::byte *>(out);
    for (int64_t kw = 0; kw < k_words; ++kw)
        for (int64_t r = 0; r < group_rows; ++r) std::memcpy(to + (kw * panel_cols + r) * 4, rows + r * row_bytes + kw * 4, 4);
}
} // namespace detail

namespace {

#if defined(__x86_64__)
#  define FRUGAL_PACK_AVX512 __attribute__((target("avx512f,f16c")))

// r[i] holds 16 words of row i; stores word j of every row, rows 0..15 in order, at panel row j
// (out + j · 64 words).
FRUGAL_PACK_AVX512 void transpose_block(const __m512i (&r)[16], std::byte * out) {
    constexpr int64_t row_bytes = panel_cols * 4;
    __m512i t[16], u[16];
    // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved word by word within each 128-bit lane.
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + j], 128-bit lane L: rows 4i .. 4i+3 of word 4L + j.
    for (int i = 0; i < 4; ++i) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    // Word 4L + j: lane L of u[j], u[4 + j], u[8 + j], u[12 + j], gathered in two lane shuffles.
    for (int j = 0; j < 4; ++j) {
        const __m512i even_lo = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88); // lanes 0, 2 of each
        const __m512i odd_lo = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);  // lanes 1, 3
        const __m512i even_hi = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        const __m512i odd_hi = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
        _mm512_storeu_si512(out + (0 + j) * row_bytes, _mm512_shuffle_i32x4(even_lo, even_hi, 0x88));
        _mm512_storeu_si512(out + (4 + j) * row_bytes, _mm512_shuffle_i32x4(odd_lo, odd_hi, 0x88));
        _mm512_storeu_si512(out + (8 + j) * row_bytes, _mm512_shuffle_i32x4(even_lo, even_hi, 0xdd));
        _mm512_storeu_si512(out + (12 + j) * row_bytes, _mm512_shuffle_i32x4(odd_lo, odd_hi, 0xdd));
    }
}

// 16 rows, a block of 16 words at a time: 32-bit words as they are, or (widen_f16) F16 values
// widened to F32. Rows read from the mapped file usually come from memory: each row's line
// 1 KiB ahead is prefetched as a block starts a new line.
template <bool widen_f16>
FRUGAL_PACK_AVX512 inline void transpose_rows(const std::byte * rows, int64_t row_bytes, int64_t k_words, void * out) {
    constexpr int64_t in_bytes = widen_f16 ? 2 : 4; // per word
    auto * to = static_cast<std::byte *>(out);
    for (int64_t k0 = 0; k0 < k_words; k0 += block_words) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) {
            const std::byte * at = rows + i * row_bytes + k0 * in_bytes;
            if (k0 * in_bytes % 64 == 0) _mm_prefetch(reinterpret_cast<const char *>(at + 1024), _MM_HINT_T0);
            if constexpr (widen_f16)
                r[i] = _mm512_castps_si512(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(at))));
            else
                r[i] = _mm512_loadu_si512(at);
        }
        transpose_block(r, to + k0 * panel_cols * 4);
    }
}

// Floats x[0..32) as 16 words of BF16 pairs.
FRUGAL_AVX512_BF16 inline __m512i bf16_pairs(const float * x) {
    return bf16_avx512::pairs(_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16));
}

FRUGAL_AVX512_BF16 void transpose_rows_bf16(const float * rows, int64_t row_floats, int64_t k, void * out) {
    auto * to = static_cast<std::byte *>(out);
    for (int64_t k0 = 0; k0 < k; k0 += 2 * block_words) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) r[i] = bf16_pairs(rows + i * row_floats + k0);
        transpose_block(r, to + k0 / 2 * panel_cols * 4);
    }
}

FRUGAL_AVX512_BF16 void transpose_rows_f16_split(const std::byte * rows, int64_t row_bytes, int64_t k, void * out) {
    constexpr int64_t block_bytes = block_words * panel_cols * 4; // 16 panel rows
    auto * to = static_cast<std::byte *>(out);
    for (int64_t k0 = 0; k0 < k; k0 += 2 * block_words, to += 3 * block_bytes) {
        __m512i hi[16], lo[16];
        for (int i = 0; i < 16; ++i) {
            const std::byte * at = rows + i * row_bytes + k0 * 2;
            if (k0 * 2 % 64 == 0) _mm_prefetch(reinterpret_cast<const char *>(at + 1024), _MM_HINT_T0);
            const __m512 f0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(at)));
            const __m512 f1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(at + 32)));
            bf16_avx512::split(f0, f1, hi[i], lo[i]);
        }
        transpose_block(hi, to);
        transpose_block(lo, to + block_bytes);
        transpose_block(hi, to + 2 * block_bytes);
    }
}

FRUGAL_AVX512_BF16 void round_rows_bf16(const float * x, uint16_t * out, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) _mm512_storeu_si512(out + i, bf16_pairs(x + i));
    if (i == n) return;
    float tail[32] = {};
    uint16_t rounded[32];
    std::memcpy(tail, x + i, size_t(n - i) * sizeof(float));
    _mm512_storeu_si512(rounded, bf16_pairs(tail));
    std::memcpy(out + i, rounded, size_t(n - i) * sizeof(uint16_t));
}
#endif

} // namespace

void transpose_group(const std::byte * rows, int64_t row_bytes, int64_t k_words, void * out) {
#if defined(__x86_64__)
    if (ops::detail::avx512f_supported()) {
        transpose_rows<false>(rows, row_bytes, k_words, out);
        return;
    }
#endif
    detail::transpose_group_portable(rows, row_bytes, k_words, out);
}

bool transpose_group_f16(const std::byte * rows, int64_t row_bytes, int64_t k, float * out) {
#if defined(__x86_64__)
    if (ops::detail::avx512f_supported()) {
        transpose_rows<true>(rows, row_bytes, k, out);
        return true;
    }
#endif
    (void)rows, (void)row_bytes, (void)k, (void)out;
    return false;
}

bool transpose_group_bf16(const float * rows, int64_t row_floats, int64_t k, void * out) {
#if defined(__x86_64__)
    if (ops::detail::avx512_bf16_supported()) {
        transpose_rows_bf16(rows, row_floats, k, out);
        return true;
    }
#endif
    (void)rows, (void)row_floats, (void)k, (void)out;
    return false;
}

bool transpose_group_f16_split(const std::byte * rows, int64_t row_bytes, int64_t k, void * out) {
#if defined(__x86_64__)
    if (ops::detail::avx512_bf16_supported()) {
        transpose_rows_f16_split(rows, row_bytes, k, out);
        return true;
    }
#endif
    (void)rows, (void)row_bytes, (void)k, (void)out;
    return false;
}

void split_f16_row(const uint16_t * row, int64_t k, uint16_t * out) {
    constexpr int64_t step = 2 * block_words;
    for (int64_t k0 = 0; k0 < k; k0 += step, out += 3 * step)
        for (int64_t i = 0; i < step; ++i) {
            const float v = fp16_to_fp32(row[k0 + i]);
            const uint16_t hi = fp32_to_bf16(v);
            out[i] = out[2 * step + i] = hi;
            out[step + i] = fp32_to_bf16(v - bf16_to_fp32(hi));
        }
}

bool round_to_bf16(const float * x, uint16_t * out, int64_t n) {
#if defined(__x86_64__)
    if (ops::detail::avx512_bf16_supported()) {
        round_rows_bf16(x, out, n);
        return true;
    }
#endif
    (void)x, (void)out, (void)n;
    return false;
}

} // namespace frugal::ops::gemm_pack
