#include "ops/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "util/error.hpp"
#include "util/profile.hpp"

namespace frugal::ops {

void rope_table::build(const rope_params & p, const int32_t * positions, int64_t n_pos) {
    half = p.n_rot / 2;
    double mscale = p.attn_factor;
    // YaRN ramp ends in pair indices (ggml_rope_yarn_corr_dims).
    double low = 0, high = 0;
    if (p.ext_factor != 0) {
        if (p.n_ctx_orig <= 0)
            throw_error(status::invalid_argument, "rope: yarn needs the original context length, got n_ctx_orig = {}",
                        p.n_ctx_orig);
        const auto corr_dim = [&](double beta) {
            return double(p.n_rot) * std::log(double(p.n_ctx_orig) / (beta * 2 * std::numbers::pi)) /
                   (2 * std::log(double(p.freq_base)));
        };
        low = std::max(0.0, std::floor(corr_dim(p.beta_fast)));
        high = std::min(double(p.n_rot - 1), std::ceil(corr_dim(p.beta_slow)));
        mscale *= 1 + 0.1 * std::log(1 / double(p.freq_scale));
    }
    // Angle per unit of position, per pair: [half]
    std::vector<double> freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
        double extrap = std::pow(double(p.freq_base), -2.0 * double(i) / double(p.n_rot));
        if (p.freq_factors) extrap /= double(p.freq_factors[i]);
        const double interp = double(p.freq_scale) * extrap;
        double f = interp;
        if (p.ext_factor != 0) {
            // 1 below low (keep the trained angle), 0 above high (interpolate), linear between
            const double ramp = 1 - std::clamp((double(i) - low) / std::max(0.001, high - low), 0.0, 1.0);
            const double mix = ramp * double(p.ext_factor);
            f = interp * (1 - mix) + extrap * mix;
        }
        freq[size_t(i)] = f;
    }
    cos.resize(size_t(n_pos * half));
    sin.resize(size_t(n_pos * half));
    for (int64_t t = 0; t < n_pos; ++t) {
        for (int64_t i = 0; i < half; ++i) {
            // Angles in double: at position 100k a float angle would be off by ~1e-2 rad.
            const double theta = double(positions[t]) * freq[size_t(i)];
            cos[size_t(t * half + i)] = float(std::cos(theta) * mscale);
            sin[size_t(t * half + i)] = float(std::sin(theta) * mscale);
        }
    }
}

void rope_apply(const rope_params & p, const rope_table & table, float * x, int64_t n_pos, int64_t n_heads,
                int64_t head_dim, int n_threads) {
    const profile::scope timed(profile::op::rope);
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
