// ops_ref.hpp - plain reference kernels for lib/ops (llama2.c style): scalar loops in double,
// written from each op's math and sharing no code with lib/. Inputs are float like the ops
// take; results are double so a test measures only the op's own rounding.
#pragma once

#include <cstdint>
#include <vector>

namespace frugal::ref {

// y[rows, n] = x / sqrt(mean(x²) + eps) * w, per row; w = [n] or null (no weight).
std::vector<double> rmsnorm(const float * x, const float * w, int64_t rows, int64_t n, double eps);

struct rope_config {
    int64_t n_rot = 0;                    // rotated dims per head; the rest pass through
    double freq_base = 10000;
    double freq_scale = 1;
    bool neox = false;                    // pairs (i, i + n_rot/2) instead of (2i, 2i + 1)
    const float * freq_factors = nullptr; // [n_rot/2] divisors of each pair's angle, or null
    // YaRN (MODEL-SPEC 1.4): 0 = off; otherwise the weight of the "keep the trained frequency" side
    double ext_factor = 0;
    double attn_factor = 1;               // cos/sin magnitude (times YaRN's own mscale when on)
    double beta_fast = 32, beta_slow = 1; // rotations per original context bounding the ramp
    double n_ctx_orig = 0;
};
// x: [n_pos, n_heads, head_dim], row t at positions[t]; pair i turns by
// positions[t] * f_i with f_i = freq_scale * freq_base^(-2i/n_rot) / freq_factors[i] without YaRN;
// with YaRN f_i blends the unscaled and the scaled frequency by a ramp over pair indices.
std::vector<double> rope(const rope_config & c, const float * x, const int32_t * positions, int64_t n_pos,
                         int64_t n_heads, int64_t head_dim);

// exp(x_i) / Σ exp(x_j); -inf entries get 0.
std::vector<double> softmax(const float * x, int64_t n);

// silu(gate) * up, silu(g) = g * sigmoid(g).
std::vector<double> swiglu(const float * gate, const float * up, int64_t n);

struct attention_config {
    int64_t n_head = 0, n_head_kv = 0; // query head h uses kv head h / (n_head / n_head_kv)
    int64_t head_dim = 0, v_dim = 0;
    double scale = 1;
};
// q: [n_tokens, n_head, head_dim] at positions pos0..; k: [>= pos0 + n_tokens, n_head_kv, head_dim];
// v: [>= pos0 + n_tokens, n_head_kv, v_dim]. Returns [n_tokens, n_head, v_dim].
std::vector<double> attention(const attention_config & c, const float * q, int64_t n_tokens, int64_t pos0,
                              const float * k, const float * v);

// y[m, n] = x[m, k] · wᵀ with w = [n, k].
std::vector<double> matmul(const float * x, const float * w, int64_t m, int64_t n, int64_t k);

} // namespace frugal::ref
