#include "ops/rope.hpp"

#include <cmath>

namespace frugal::ops {

void rope_table::build(const rope_params & p, const int32_t * positions, int64_t n_pos) {
    half = p.n_rot / 2;
    cos.resize(size_t(n_pos * half));
    sin.resize(size_t(n_pos * half));
    for (int64_t t = 0; t < n_pos; ++t) {
        for (int64_t i = 0; i < half; ++i) {
            // Angles in double: at position 100k a float angle would be off by ~1e-2 rad.
            double theta = double(positions[t]) * p.freq_scale * std::pow(double(p.freq_base), -2.0 * double(i) / double(p.n_rot));
            if (p.freq_factors) theta /= double(p.freq_factors[i]);
            cos[size_t(t * half + i)] = float(std::cos(theta));
            sin[size_t(t * half + i)] = float(std::sin(theta));
        }
    }
}

void rope_apply(const rope_params & p, const rope_table & table, float * x, int64_t n_pos, int64_t n_heads,
                int64_t head_dim, int n_threads) {
    const int64_t half = table.half;
    // neox pairs (i, i + half); normal pairs (2i, 2i + 1)
    const int64_t stride_pair = p.mode == rope_mode::neox ? 1 : 2;
    const int64_t offset_second = p.mode == rope_mode::neox ? half : 1;
#pragma omp parallel for collapse(2) num_threads(n_threads) schedule(static) if (n_pos * n_heads > 64)
    for (int64_t t = 0; t < n_pos; ++t) {
        for (int64_t h = 0; h < n_heads; ++h) {
            float * v = x + (t * n_heads + h) * head_dim;
            const float * c = table.cos.data() + t * half;
            const float * s = table.sin.data() + t * half;
            for (int64_t i = 0; i < half; ++i) {
                float & a = v[i * stride_pair];
                float & b = v[i * stride_pair + offset_second];
                const float a0 = a, b0 = b;
                a = a0 * c[i] - b0 * s[i];
                b = a0 * s[i] + b0 * c[i];
            }
        }
    }
}

} // namespace frugal::ops
