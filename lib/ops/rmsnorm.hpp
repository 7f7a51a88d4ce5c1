// rmsnorm.hpp - y = x / sqrt(mean(x²) + eps) * w, per row.
#pragma once
#include <cstdint>

namespace frugal::ops {
// x, y: [rows, n] (may alias); w: [n] or nullptr for no weight.
void rmsnorm(const float * x, const float * w, float * y, int64_t rows, int64_t n, float eps, int n_threads);
} // namespace frugal::ops
