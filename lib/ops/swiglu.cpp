#include "ops/swiglu.hpp"
#include "util/profile.hpp"

#include <cmath>

namespace frugal::ops {

void swiglu(const float * gate, const float * up, float * out, int64_t n, int n_threads) {
    const profile::scope timed(profile::op::activation);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

} // namespace frugal::ops
