// moe_router.hpp - picks each token's experts and their weights from the router logits
// (DeepSeek V2/V3 MoE gate; llama.cpp build_moe_ffn semantics):
//   1. scores = softmax(logits) (V2) or sigmoid(logits) (V3);
//   2. selection scores = scores + bias (V3 exp_probs_b), used only to choose;
//   3. with n_group > 1 the experts form n_group contiguous groups; only the n_group_used groups
//      with the best group score stay eligible;
//   4. the n_used eligible experts with the highest selection scores are chosen;
//   5. weights = unbiased scores of the chosen, divided by their sum if norm_topk, times scale.
// Ties, in groups and in experts, go to the lower index (llama.cpp leaves them to its sort).
#pragma once

#include <cstdint>

namespace frugal::ops {

enum class gating_func { softmax, sigmoid };

// How a group is ranked: the sum of its two best selection scores (V3 noaux_tc, and llama.cpp for
// every model), or its best one (V2 236B group_limited_greedy).
enum class group_score { top2_sum, max };

struct router_config {
    int64_t n_expert = 0;
    int64_t n_used = 0;       // experts per token (k)
    int64_t n_group = 1;      // 1 = no group limit
    int64_t n_group_used = 1; // groups kept per token when n_group > 1
    gating_func gating = gating_func::softmax;
    bool norm_topk = false;   // divide the k weights by their sum
    float scale = 1.f;        // applied after the normalisation (expert_weights_scale)
    group_score grouping = group_score::top2_sum;
};

// Throws frugal::error(invalid_argument) naming the offending values unless 1 <= n_used <= n_expert,
// n_expert % n_group == 0, 1 <= n_group_used <= n_group and the kept groups hold >= n_used experts.
void validate(const router_config & c);

// logits: [n_tokens, n_expert]; bias: [n_expert] or null. Writes ids: [n_tokens, n_used], each row
// in descending selection score, and weights: [n_tokens, n_used] to match. Validates c first.
void route(const router_config & c, const float * logits, const float * bias, int64_t n_tokens, int32_t * ids,
           float * weights);

} // namespace frugal::ops
