#include "ops/moe_router.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "util/profile.hpp"
#include "ops/softmax.hpp"
#include "util/error.hpp"

namespace frugal::ops {
namespace {

// Index of the largest v[i] not yet taken; the first (lowest) index wins a tie. A plain scan:
// k <= 8 passes over <= 256 scores, and unlike a sort it stays well defined if a score is NaN.
int64_t best_free(const float * v, const std::vector<char> & taken, int64_t n) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i)
        if (!taken[size_t(i)] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

float group_rank(const float * s, int64_t n, group_score how) {
    float first = s[0], second = -std::numeric_limits<float>::infinity();
    for (int64_t i = 1; i < n; ++i) {
        if (s[i] > first) {
            second = first;
            first = s[i];
        } else if (s[i] > second) {
            second = s[i];
        }
    }
    // A one-expert group has no second score: its rank is its only one.
    if (how == group_score::max || n == 1) return first;
    return first + second;
}

} // namespace

void validate(const router_config & c) {
    if (c.n_expert < 1 || c.n_used < 1 || c.n_used > c.n_expert)
        throw_error(status::invalid_argument, "moe_router: n_used = {} must be in [1, n_expert = {}]", c.n_used,
                    c.n_expert);
    if (c.n_group < 1 || c.n_expert % c.n_group != 0)
        throw_error(status::invalid_argument, "moe_router: n_expert = {} does not split into n_group = {} groups",
                    c.n_expert, c.n_group);
    if (c.n_group > 1) {
        if (c.n_group_used < 1 || c.n_group_used > c.n_group)
            throw_error(status::invalid_argument, "moe_router: n_group_used = {} must be in [1, n_group = {}]",
                        c.n_group_used, c.n_group);
        const int64_t kept = c.n_group_used * (c.n_expert / c.n_group);
        if (kept < c.n_used)
            throw_error(status::invalid_argument,
                        "moe_router: n_group_used = {} groups of {} experts hold {} < n_used = {} experts",
                        c.n_group_used, c.n_expert / c.n_group, kept, c.n_used);
    }
}

void route(const router_config & c, const float * logits, const float * bias, int64_t n_tokens, int32_t * ids,
           float * weights) {
    const profile::scope timed(profile::op::moe_routing);
    validate(c);
    const int64_t n_expert = c.n_expert, group_size = n_expert / c.n_group;
    const auto n = static_cast<size_t>(n_expert);
    std::vector<float> score(n), biased(n), group(static_cast<size_t>(c.n_group));
    std::vector<char> taken(size_t(std::max(n_expert, c.n_group)));
    for (int64_t t = 0; t < n_tokens; ++t) {
        const float * l = logits + t * n_expert;
        // [n_expert] gate scores; softmax as ggml_soft_max (float exp, double sum, times float 1/sum)
        if (c.gating == gating_func::softmax) {
            std::copy(l, l + n_expert, score.begin());
            softmax(score.data(), n_expert);
        } else {
            for (int64_t e = 0; e < n_expert; ++e) score[size_t(e)] = 1.f / (1.f + std::exp(-l[e]));
        }
        // [n_expert] selection scores: the bias steers the choice, never the weights
        for (int64_t e = 0; e < n_expert; ++e) biased[size_t(e)] = bias ? score[size_t(e)] + bias[e] : score[size_t(e)];

        if (c.n_group > 1) {
            // [n_group] group ranks; the losing groups' experts drop to -inf, as llama.cpp and [DS] do
            for (int64_t g = 0; g < c.n_group; ++g)
                group[size_t(g)] = group_rank(biased.data() + g * group_size, group_size, c.grouping);
            std::fill(taken.begin(), taken.end(), 0);
            for (int64_t j = 0; j < c.n_group_used; ++j) taken[size_t(best_free(group.data(), taken, c.n_group))] = 1;
            for (int64_t g = 0; g < c.n_group; ++g)
                if (!taken[size_t(g)])
                    std::fill_n(biased.begin() + g * group_size, group_size, -std::numeric_limits<float>::infinity());
        }

        // [n_used] chosen experts, best first, and their unbiased scores
        std::fill(taken.begin(), taken.end(), 0);
        int32_t * id = ids + t * c.n_used;
        float * w = weights + t * c.n_used;
        double sum = 0; // ggml_sum_rows accumulates in double
        for (int64_t j = 0; j < c.n_used; ++j) {
            const int64_t e = best_free(biased.data(), taken, n_expert);
            taken[size_t(e)] = 1;
            id[j] = int32_t(e);
            w[j] = score[size_t(e)];
            sum += w[j];
        }
        if (c.norm_topk) {
            // 1e-20 as [HF]: absorbed by any sum above ~1e-13 (so equal to llama.cpp, which adds nothing),
            // but an all-underflowed sigmoid row gives zero weights instead of NaN.
            const float denom = float(sum) + 1e-20f;
            for (int64_t j = 0; j < c.n_used; ++j) w[j] /= denom;
        }
        for (int64_t j = 0; j < c.n_used; ++j) w[j] *= c.scale;
    }
}

} // namespace frugal::ops
