// quant_ref.hpp - plain reference for lib/ops/quant: written from MODEL-SPEC.md §3.6 and ggml's
// documented semantics with scalar loops and double accumulation, reading blocks by byte offset
// (independent of the lib/ kernels and of the block structs in dtype.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "frugal/dtype.hpp"

namespace frugal::ref {

// The n values stored as type t at src (raw GGUF bytes).
std::vector<float> dequantize(dtype t, const uint8_t * src, int64_t n);

// An activation row quantized per block: Q8_0 / Q8_1 (32 elements, fp16 scale) or Q8_K (256,
// fp32 scale).
struct q8_row {
    int64_t block = 0;
    std::vector<float> d;      // per block; Q8_0's and Q8_1's are already rounded to fp16
    std::vector<int8_t> qs;    // per element
    std::vector<int> bsums;    // Q8_K: sum of each 16 qs
    std::vector<float> s;      // Q8_1: fp16(amax/127 * sum of the block's qs), per block
};
// ggml x86 quantize_row_q8_0: d = fp16(amax/127), q = round-half-even(x * (127/amax)).
q8_row quantize_q8_0(const float * x, int64_t n);
// ggml x86 quantize_row_q8_1: Q8_0's d and q, plus s = fp16(amax/127 * sum(q)), taken with the
// scale before its fp16 rounding.
q8_row quantize_q8_1(const float * x, int64_t n);
// ggml quantize_row_q8_K: the signed value m of largest |x| (first on ties), s = -127/m,
// q = min(127, round-half-even(s * x)), d = 1/s.
q8_row quantize_q8_k(const float * x, int64_t n);

// The activation values a dot product of weight type t actually multiplies: x itself (F32),
// x rounded to F16/BF16, or d * q of its Q8_0/Q8_1/Q8_K quantization.
std::vector<double> activation_values(dtype t, const float * x, int64_t n);

struct dot_result {
    double value;    // sum_i w_i * a_i
    double abs_sum;  // sum_i |w_i * a_i|, the scale for tolerances
};
// w (type t, raw bytes) dequantized, times activation_values(t, x), accumulated in double;
// for Q5_1, d·q times the activation values plus each block's m times Q8_1's s (as ggml pairs them).
dot_result dot(dtype t, const uint8_t * w, const float * x, int64_t n);

// ggml's reference weight quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref) as raw bytes.
std::vector<uint8_t> quantize_q8_0_weights(const float * x, int64_t n);
std::vector<uint8_t> quantize_q4_0_weights(const float * x, int64_t n);

} // namespace frugal::ref
