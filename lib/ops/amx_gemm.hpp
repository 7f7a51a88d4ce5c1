// amx_gemm.hpp - a BF16 GEMM on AMX tiles (Sapphire Rapids and later) over the BF16 panels of
// ops/gemm_pack.hpp, for the bf16 prefill path.
//
// Why not oneDNN's: on a 2-core Sapphire Rapids VM (2026-12-02), oneDNN 2.6.3's AMX brgemm ran
// a [512, 1536] · [1536, 128] BF16 product at 380-400 GFLOP/s on one thread with its weights in
// these panels (625 from plain rows, which it repacks itself), where TDPBF16PS peaks at 3.2
// TFLOP/s a core. This kernel keeps 2 × 2 output tiles (32 rows × 32 columns) in the tile
// registers over a piece of K, loading two activation tiles and two weight tiles per step of 32
// values of K, and writes its output straight into y (any row stride), so the dense [m, 128]
// output oneDNN's brgemm needs and its copy into y go too. The activations are packed once per
// product in the order the tiles load them (each step's two tiles one contiguous 2 KiB), which
// the hardware prefetcher follows as one stream where 32 rows K apart were 32 streams.
#pragma once

#include <cstddef>
#include <cstdint>

namespace frugal::ops::amx {

// Whether this CPU has AMX-BF16 (within FRUGAL_MAX_CPU_ISA's cap: avx512) and Linux lets this
// process use the tile registers (asked once, arch_prctl(ARCH_REQ_XCOMP_PERM)).
bool bf16_available();

// Activations for gemm_bf16_panels: x [m, k] F32 (rows ldx apart, k % 32 == 0) rounded to BF16
// (gemm_pack::round_to_bf16's rounding) in tile order, [ceil(m / 32)][k / 32][32 rows][32
// values], rows past m zeros. packed_elements(m, k) values; block b of 32 rows is the
// packed_elements(32, k) from b · packed_elements(32, k), so threads may pack blocks apart.
// split: each step of 32 values of K as three, BF16 x, BF16 x again and lo = BF16(x − hi),
// for weights split by gemm_pack::transpose_group_f16_split (hi·hi + hi·lo + lo·hi): packed as
// if K were 3k.
int64_t packed_elements(int64_t m, int64_t k);
void pack_activations(const float * x, int64_t ldx, int64_t m, int64_t k, uint16_t * packed, bool split = false);

// y[m, cols] (row stride ldy; other columns untouched) = (accumulate ? y : 0) + x[:, k0 : k0 +
// kc] · W, where x is pack_activations' [m, k] and W [kc, cols] in gemm_pack's BF16 panels with
// k_padded == kc (kc and k0 multiples of 32), ceil(cols / 64) panels. Runs on the calling thread;
// only where bf16_available().
void gemm_bf16_panels(const uint16_t * packed, int64_t m, int64_t k, int64_t k0, int64_t kc, const std::byte * panels,
                      int64_t cols, float * y, int64_t ldy, bool accumulate);

} // namespace frugal::ops::amx
