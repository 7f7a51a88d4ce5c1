// swiglu.hpp - the gated FFN activation: out = silu(gate) * up, silu(x) = x / (1 + e^-x).
#pragma once
#include <cstdint>

namespace frugal::ops {
// gate, up, out: [n] (out may alias gate).
void swiglu(const float * gate, const float * up, float * out, int64_t n, int n_threads);
} // namespace frugal::ops
