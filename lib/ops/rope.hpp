// rope.hpp - rotary position embedding with ggml_rope_ext semantics, YaRN included.
//   normal (llama GGUF, deepseek2): rotates adjacent pairs (x[2i], x[2i+1]).
//   neox (qwen2):                   rotates (x[i], x[i + n_rot/2]).
// Pair i turns by pos * base^(-2i/n_rot) / freq_factor[i] * (freq_scale, or with YaRN a blend of
// freq_scale and 1); dims past n_rot are kept.
#pragma once

#include <cstdint>
#include <vector>

namespace frugal::ops {

enum class rope_mode { normal, neox };

struct rope_params {
    int64_t n_rot = 0;                     // rotated dims per head (even, <= head_dim)
    float freq_base = 10000.f;
    float freq_scale = 1.f;                // 1 / linear scaling factor
    rope_mode mode = rope_mode::normal;
    const float * freq_factors = nullptr;  // [n_rot/2] angle divisors (llama3 rope_freqs.weight) or null
    // YaRN, as ggml: pairs below corr_dim(beta_fast) keep the unscaled angle, pairs above
    // corr_dim(beta_slow) get freq_scale, a linear ramp in between (mixed in by ext_factor), and
    // cos/sin grow by 1 + 0.1 ln(1/freq_scale). corr_dim(r) = pair whose period is n_ctx_orig / r.
    float ext_factor = 0.f;                // 0 = plain freq_scale (no YaRN), 1 = full YaRN ramp
    float attn_factor = 1.f;               // multiplies cos/sin, with or without YaRN
    float beta_fast = 32.f;
    float beta_slow = 1.f;
    int64_t n_ctx_orig = 0;                // training context the ramp is measured in (needed with YaRN)
};

// cos/sin for a run of positions: [n_pos, n_rot/2] each. Built once per forward, used by all layers.
struct rope_table {
    std::vector<float> cos, sin;
    int64_t half = 0;
    void build(const rope_params & p, const int32_t * positions, int64_t n_pos);
};

// x: [n_pos, n_heads, head_dim], rotated in place with row t using table row t.
void rope_apply(const rope_params & p, const rope_table & table, float * x, int64_t n_pos, int64_t n_heads,
                int64_t head_dim, int n_threads);

} // namespace frugal::ops
