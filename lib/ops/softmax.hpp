// softmax.hpp - numerically stable softmax over a row, in place.
#pragma once
#include <cstdint>

namespace frugal::ops {
// x[n] <- exp(x - max) / sum. Returns the max (useful to callers that merge partial softmaxes).
float softmax(float * x, int64_t n);
} // namespace frugal::ops
