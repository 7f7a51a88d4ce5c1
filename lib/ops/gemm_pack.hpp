// gemm_pack.hpp - weight rows written straight into the panels oneDNN's AVX-512 matmul (brgemm)
// takes its weights in, so the GEMM does not copy them again.
//
// The layout (oneDNN's BA16a64b for F32, BA16a64b2a for BF16) of a [K, N] weight, in 32-bit
// words (one F32 value, or two BF16 values adjacent along K): N in panels of 64 columns, each
// panel a [K words][64] row-major matrix, panels one after another; K padded to whole blocks of
// 16 words and N to whole panels, with zeros:
//   word (kw, n) at (n / 64) · k_words_padded · 64 + kw · 64 + n % 64.
// Weight rows (columns here) go in 16 at a time, transposed in 16 × 16 word blocks.
//
// Why, measured on Zen 5 (2 threads, oneDNN 2.6.3, GFLOP/s of the GEMM alone, weights as a file
// holds them ([N, K], M left open: gemm:jit, which copies them itself) → in panels (brgemm)):
// F32, M = 512, K = 1536, N = 1408: 436 → 508; K = 8960, N = 256: 439 → 497; M = 48: 184 → 520
// and 291 → 516. BF16, the same shapes: 889 → 1031, 904 → 1037; M = 48: 853 → 1039.
#pragma once

#include <cstddef>
#include <cstdint>

namespace frugal::ops::gemm_pack {

inline constexpr int64_t panel_cols = 64;  // N per panel
inline constexpr int64_t group_rows = 16;  // weight rows transposed at once
inline constexpr int64_t block_words = 16; // K words per transposed block

// Word kw of row r (at rows + r · row_bytes) to out[kw · 64 + r], for the 16 rows r and every
// kw < k_words (a multiple of 16): 16 weight rows become 16 adjacent columns of a panel, out
// pointing at the first one's word 0. Words of any type (F32 values, BF16 pairs), read from a
// scratch copy or straight from the mapped file. AVX-512 F where the CPU has it, plain loops
// otherwise.
void transpose_group(const std::byte * rows, int64_t row_bytes, int64_t k_words, void * out);

// transpose_group for 16 F16 rows of k values (k % 16 == 0), widened to F32 on the way: F16
// weights go from the file into F32 panels in one step. False (nothing written) where the CPU
// lacks AVX-512 F.
bool transpose_group_f16(const std::byte * rows, int64_t row_bytes, int64_t k, float * out);

// transpose_group for 16 F32 rows (row_floats apart) of k values (k % 32 == 0), rounded to BF16
// pairs on the way: quantized rows dequantized to F32 go into BF16 panels in one step. False
// (nothing written) where the CPU lacks AVX512-BF16. Its rounding is round_to_bf16's.
bool transpose_group_bf16(const float * rows, int64_t row_floats, int64_t k, void * out);

// An F16 weight as two BF16 parts, W = hi + lo exactly (hi = W rounded to BF16; lo = W − hi, 3
// significant bits at most): for 16 F16 rows of k values (k % 32 == 0), each step of 32 values
// of K becomes three in the panel, hi, lo and hi again (3k values a row), to meet activations
// split as hi, hi, lo (amx::pack_activations): x·W to about 2^-17 of each product, from three
// BF16 products. False (nothing written) where the CPU lacks AVX512-BF16.
bool transpose_group_f16_split(const std::byte * rows, int64_t row_bytes, int64_t k, void * out);
// One such row: k F16 values (k % 32 == 0) as 3k BF16 values, hi, lo, hi per step of 32.
void split_f16_row(const uint16_t * row, int64_t k, uint16_t * out);

// out[i] = x[i] in BF16 by AVX512-BF16's conversion (nearest even, as fp32_to_bf16, except that
// F32 denormals, below 1.2e-38, become zeros), or false (nothing written) where the CPU lacks it.
bool round_to_bf16(const float * x, uint16_t * out, int64_t n);

namespace detail {
// The plain-loop transpose_group, for tests.
void transpose_group_portable(const std::byte * rows, int64_t row_bytes, int64_t k_words, void * out);
} // namespace detail

} // namespace frugal::ops::gemm_pack
