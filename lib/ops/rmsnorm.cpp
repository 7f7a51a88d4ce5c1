#include "ops/rmsnorm.hpp"
#include "util/profile.hpp"

#include <cmath>

namespace frugal::ops {

void rmsnorm(const float * x, const float * w, float * y, int64_t rows, int64_t n, float eps, int n_threads) {
    const profile::scope timed(profile::op::norm);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
        const float * xr = x + r * n;
        float * yr = y + r * n;
        // Sum in double: the mean of squares of 8k activations loses digits in float. (In
        // vector lanes, in any order: double leaves the float result the same.)
        double ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
        const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
        if (w) {
            for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * w[i];
        } else {
            for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale;
        }
    }
}

} // namespace frugal::ops
