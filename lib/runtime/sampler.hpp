// sampler.hpp - next-token selection from logits, in llama.cpp's common default order:
// repetition penalty, top-k, top-p, min-p, temperature, then a draw from the softmax.
// Reproducible: the same seed, parameters, logits and history give the same tokens for a given
// build (the draw uses std::mt19937_64 and a fixed mapping to [0, 1); expf may differ between
// C libraries). One sampler per session; not thread-safe. Once its buffers have grown to the
// vocabulary size, sample() does not allocate.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace frugal {

struct sampling_params {
    float temperature = 0.8f;   // <= 0: greedy (argmax, lowest id on ties)
    int32_t top_k = 40;         // 0: off
    float top_p = 0.95f;        // (0, 1]; 1: off
    float min_p = 0.05f;        // [0, 1]; 0: off
    float repeat_penalty = 1.0f; // > 0; 1: off
    int32_t repeat_last_n = 64; // tokens of history penalised; 0: off, -1: all
    uint64_t seed = 0xF00D;
};

namespace detail {
// llama.cpp's repetition penalty on one logit: dividing a positive logit and multiplying a negative
// one both make the token less likely for penalty > 1.
inline float penalize(float logit, float penalty) { return logit > 0.0f ? logit / penalty : logit * penalty; }
} // namespace detail

class sampler {
public:
    explicit sampler(sampling_params p);

    // Throws status::invalid_argument naming the parameter and value. Re-seeds only when p.seed
    // differs from the current seed, so changing e.g. the temperature keeps the random stream.
    void set_params(const sampling_params & p);
    const sampling_params & params() const { return params_; }
    void reset(uint64_t seed);

    // Picks the next token from logits[n_vocab]. `history` = the tokens so far (prompt included),
    // for the repetition penalty. Throws status::invalid_argument for empty logits, a NaN or +inf
    // logit, all logits -inf, or a history token out of range.
    int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

private:
    struct candidate {
        float logit;
        float weight; // unnormalised probability, set by the draw
        int32_t id;
    };

    void penalize_recent(std::span<const int32_t> history);
    size_t sort_more(size_t sorted, size_t size);
    int32_t draw(size_t size);

    sampling_params params_;
    std::mt19937_64 rng_;
    std::vector<candidate> cand_;
    std::vector<int32_t> recent_;
};

} // namespace frugal
