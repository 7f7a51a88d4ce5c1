// swiglu.hpp - the gated FFN activation: out = silu(gate) * up, silu(x) = x / (1 + e^-x).
#pragma once
#include <cstdint>
#include <vector>

namespace frugal::ops {
// gate, up, out: [n] (out may alias gate).
void swiglu(const float * gate, const float * up, float * out, int64_t n, int n_threads);
// Rows i < m of n elements, each operand with its own row stride: gate [m, ld_gate], up
// [m, ld_up], out [m, ld_out] (out may alias gate with ld_out == ld_gate).
void swiglu_rows(const float * gate, int64_t ld_gate, const float * up, int64_t ld_up, float * out, int64_t ld_out,
                 int64_t m, int64_t n, int n_threads);

namespace detail {
using swiglu_kernel = void (*)(const float * gate, const float * up, float * out, int64_t n);
// Test hook: the vector kernels this CPU runs (AVX2, then AVX-512 F), whose results must agree
// to the bit.
std::vector<swiglu_kernel> swiglu_kernels_for_tests();
} // namespace detail
} // namespace frugal::ops
