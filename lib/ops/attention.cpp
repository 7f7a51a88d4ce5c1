#include "ops/attention.hpp"

#include <omp.h>

#include <algorithm>

#include "util/profile.hpp"
#include "ops/softmax.hpp"

namespace frugal::ops {

void attention(const attention_params & p, const float * q, int64_t n_tokens, int64_t pos0, const float * k,
               const float * v, float * out, std::vector<float> & scratch, int n_threads) {
    const profile::scope timed(profile::op::attention);
    const int64_t n_kv_total = pos0 + n_tokens;
    const int64_t group = p.n_head / p.n_head_kv;
    const int threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    scratch.resize(size_t(threads) * size_t(n_kv_total));
    const int64_t k_row = p.k_stride ? p.k_stride : p.n_head_kv * p.head_dim; // floats between positions
    const int64_t v_row = p.v_stride ? p.v_stride : p.n_head_kv * p.v_dim;

    // Tiny problems (a decode step of a small model) run on the calling thread.
    const bool parallel = n_tokens * p.n_head * n_kv_total * p.head_dim >= (int64_t(1) << 15);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(dynamic, 1) if (parallel)
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t h = 0; h < p.n_head; ++h) {
            float * scores = scratch.data() + size_t(omp_get_thread_num()) * size_t(n_kv_total);
            const int64_t n_kv = pos0 + t + 1; // causal
            const int64_t hk = h / group;
            const float * qh = q + (t * p.n_head + h) * p.head_dim;
            // scores[j] = scale * q · k_j. The simd reduction lets the compiler keep vector partial
            // sums (a sequential float sum cannot be vectorised): several times faster at depth.
            for (int64_t j = 0; j < n_kv; ++j) {
                const float * kj = k + j * k_row + hk * p.head_dim;
                float s = 0;
#pragma omp simd reduction(+ : s)
                for (int64_t d = 0; d < p.head_dim; ++d) s += qh[d] * kj[d];
                scores[j] = s * p.scale;
            }
            softmax(scores, n_kv);
            // out = Σ_j scores[j] · v_j   [v_dim]
            float * oh = out + (t * p.n_head + h) * p.v_dim;
            std::fill(oh, oh + p.v_dim, 0.f);
            for (int64_t j = 0; j < n_kv; ++j) {
                const float * vj = v + j * v_row + hk * p.v_dim;
                const float w = scores[j];
                for (int64_t d = 0; d < p.v_dim; ++d) oh[d] += w * vj[d];
            }
        }
    }
}

} // namespace frugal::ops
