// matmul.hpp - Y = X · Wᵀ for a weight stored in any supported dtype.
//
// Paths, chosen per call:
//   - few rows (decode, m < small_batch): ops::matmul_rows, which reads the weight in place in
//     any dtype (a GEMM call costs more than the work here).
//   - F32 weights: oneDNN matmul straight on the (memory-mapped) weight, no copy.
//   - BF16 weights on a CPU with native BF16: oneDNN BF16 matmul on the weight as stored.
//   - otherwise (prefill of a quantized/half weight): dequantize a slab of weight rows to F32
//     in scratch and run the oneDNN F32 matmul on it, slab by slab.
// oneDNN primitives are created once per (K, N, ldy, dtype) with the row count M left open
// (DNNL_RUNTIME_DIM_VAL) and cached in the context.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <tuple>
#include <vector>

#include "frugal/tensor_view.hpp"
#include "ops/quant.hpp"

namespace frugal::ops {

// Weight types whose prefill may go through the int8 GEMM: 4- and 5-bit formats, whose own
// rounding dwarfs a requantization to int8 rows. Q6_K, Q8_0 and F16/BF16 would lose precision to
// it (Q6_K measured: +5.8 % KL on a Q4_K_M file with it, +3.2 % without; docs/PERF.md).
bool int8_prefill_type(dtype t);

class matmul_context {
public:
    explicit matmul_context(int n_threads);
    ~matmul_context();
    matmul_context(const matmul_context &) = delete;
    matmul_context & operator=(const matmul_context &) = delete;

    int n_threads() const { return n_threads_; }
    void set_n_threads(int n) { n_threads_ = n; }
    // Row count below which every weight goes through matmul_rows instead of a GEMM. The GEMM
    // path pays a fixed cost (dequantizing the whole weight); measured on a 2-core AVX2 machine
    // with the 1.5B Qwen2 Q8_0 model the row kernels win up to ~24 rows (16 rows: 27 vs 23
    // tokens/s; 32 rows: 29 vs 33).
    int64_t small_batch = 24;
    // Opt-in: prefill (m >= small_batch) of the weight types int8_prefill_type() accepts through
    // a u8 × s8 GEMM with per-row weight and per-token activation scales (matmul.cpp) instead of
    // dequantizing to F32. oneDNN's int8 GEMM runs at about twice its F32 rate, but per-token
    // activations are coarser than llama.cpp's per-32 blocks: the next-token KL divergence grows
    // by 2-3 % (docs/PERF.md), so the default stays exact.
    bool int8_prefill = false;

    // y[m, ldy] (first N columns written) = x[m, K] · wᵀ, w = [N, K].
    void linear(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    void linear(const raw_view & w, const float * x, int64_t m, float * y) { linear(w, x, m, y, w.shape.rows()); }

    // linear() for several weights that multiply the same x[m, K]: below small_batch in one
    // conversion of x and one parallel region (ops::matmul_rows_many), else one GEMM each.
    void linear_many(std::span<const row_product> products, const float * x, int64_t m);

    // y[m, ldy] (first N columns written) = x[m, K] · w for a weight stored the other way
    // round, w = [K, N] (MLA multiplies some per-head blocks against their stored orientation).
    // The weight is dequantized to F32 and the product taken in F32: there is no vec_dot
    // pairing of activation and weight blocks in this orientation.
    void linear_t(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);

    // The oneDNN GEMM alone: y[m, ldy] = x[m, k] · wᵀ with w an [n, k] row-major matrix of
    // F32 (or BF16, with x converted to BF16). Exposed for tests.
    void gemm(dtype wtype, const void * w, int64_t n, int64_t k, const float * x, int64_t m, float * y, int64_t ldy);

private:
    void linear_int8(const raw_view & w, const float * x, int64_t m, float * y, int64_t ldy);
    // w_kn: w is [k, n] row-major instead of [n, k].
    void gemm(dtype wtype, const void * w, int64_t n, int64_t k, const float * x, int64_t m, float * y, int64_t ldy,
              bool w_kn);
    struct impl;
    std::unique_ptr<impl> impl_;
    int n_threads_;
};

} // namespace frugal::ops
