#include "reference/ops_ref.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace frugal::ref {
namespace {

// In place; subtracting the max changes nothing mathematically and keeps exp finite.
void softmax_in_place(std::vector<double> & s) {
    double mx = -std::numeric_limits<double>::infinity();
    for (double e : s) mx = std::max(mx, e);
    double sum = 0;
    for (double & e : s) {
        e = std::exp(e - mx);
        sum += e;
    }
    for (double & e : s) e /= sum;
}

} // namespace

std::vector<double> rmsnorm(const float * x, const float * w, int64_t rows, int64_t n, double eps) {
    std::vector<double> y(size_t(rows * n));
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += double(x[r * n + i]) * double(x[r * n + i]);
        const double rms = std::sqrt(ss / double(n) + eps);
        for (int64_t i = 0; i < n; ++i)
            y[size_t(r * n + i)] = double(x[r * n + i]) / rms * (w ? double(w[i]) : 1.0);
    }
    return y;
}

std::vector<double> rope(const rope_config & c, const float * x, const int32_t * positions, int64_t n_pos,
                         int64_t n_heads, int64_t head_dim) {
    std::vector<double> y(x, x + n_pos * n_heads * head_dim);
    const int64_t half = c.n_rot / 2;
    const double pi = std::acos(-1.0);
    const double d = double(c.n_rot);
    // The pair index at which a frequency completes `rotations` turns over the original context.
    const auto pair_for = [&](double rotations) {
        return d * std::log(c.n_ctx_orig / (rotations * 2 * pi)) / (2 * std::log(c.freq_base));
    };
    const double lo = std::max(std::floor(pair_for(c.beta_fast)), 0.0);
    const double hi = std::min(std::ceil(pair_for(c.beta_slow)), d - 1);
    const double magnitude = c.ext_factor != 0 ? c.attn_factor * (0.1 * std::log(1 / c.freq_scale) + 1) : c.attn_factor;
    for (int64_t t = 0; t < n_pos; ++t) {
        for (int64_t h = 0; h < n_heads; ++h) {
            double * v = y.data() + (t * n_heads + h) * head_dim;
            for (int64_t i = 0; i < half; ++i) {
                double inv_freq = std::pow(c.freq_base, -2.0 * double(i) / d);
                if (c.freq_factors) inv_freq /= double(c.freq_factors[i]);
                double f = inv_freq * c.freq_scale;
                if (c.ext_factor != 0) {
                    // 0 at and below lo, 1 at and above hi: the share of the scaled (interpolated) frequency
                    const double interp_share = std::clamp((double(i) - lo) / std::max(hi - lo, 0.001), 0.0, 1.0);
                    const double keep = (1 - interp_share) * c.ext_factor;
                    f = inv_freq * keep + inv_freq * c.freq_scale * (1 - keep);
                }
                const double theta = double(positions[t]) * f;
                const int64_t a = c.neox ? i : 2 * i;
                const int64_t b = c.neox ? i + half : 2 * i + 1;
                const double x0 = v[a], x1 = v[b];
                const double cs = magnitude * std::cos(theta), sn = magnitude * std::sin(theta);
                v[a] = x0 * cs - x1 * sn;
                v[b] = x0 * sn + x1 * cs;
            }
        }
    }
    return y;
}

std::vector<double> softmax(const float * x, int64_t n) {
    std::vector<double> s(x, x + n);
    softmax_in_place(s);
    return s;
}

std::vector<double> swiglu(const float * gate, const float * up, int64_t n) {
    std::vector<double> y(size_t(n), 0.0);
    for (int64_t i = 0; i < n; ++i) {
        const double g = gate[i];
        // sigmoid written so exp never overflows
        const double sig = g >= 0 ? 1.0 / (1.0 + std::exp(-g)) : std::exp(g) / (1.0 + std::exp(g));
        y[size_t(i)] = g * sig * double(up[i]);
    }
    return y;
}

std::vector<double> attention(const attention_config & c, const float * q, int64_t n_tokens, int64_t pos0,
                              const float * k, const float * v) {
    const int64_t n_kv = pos0 + n_tokens;
    const int64_t group = c.n_head / c.n_head_kv;
    std::vector<double> out(size_t(n_tokens * c.n_head * c.v_dim), 0.0);
    for (int64_t h = 0; h < c.n_head; ++h) {
        const int64_t hk = h / group;
        for (int64_t t = 0; t < n_tokens; ++t) {
            // full score row over the whole cache, then the causal mask: position j > pos0 + t is the future
            const float * qt = q + (t * c.n_head + h) * c.head_dim;
            std::vector<double> s(size_t(n_kv), 0.0);
            for (int64_t j = 0; j < n_kv; ++j) {
                const float * kj = k + (j * c.n_head_kv + hk) * c.head_dim;
                double dot = 0;
                for (int64_t d = 0; d < c.head_dim; ++d) dot += double(qt[d]) * double(kj[d]);
                s[size_t(j)] = j > pos0 + t ? -std::numeric_limits<double>::infinity() : c.scale * dot;
            }
            softmax_in_place(s);
            double * o = out.data() + (t * c.n_head + h) * c.v_dim;
            for (int64_t j = 0; j < n_kv; ++j) {
                const float * vj = v + (j * c.n_head_kv + hk) * c.v_dim;
                for (int64_t d = 0; d < c.v_dim; ++d) o[d] += s[size_t(j)] * double(vj[d]);
            }
        }
    }
    return out;
}

std::vector<double> matmul(const float * x, const float * w, int64_t m, int64_t n, int64_t k) {
    std::vector<double> y(size_t(m * n));
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            double acc = 0;
            for (int64_t l = 0; l < k; ++l) acc += double(x[i * k + l]) * double(w[j * k + l]);
            y[size_t(i * n + j)] = acc;
        }
    }
    return y;
}

} // namespace frugal::ref
