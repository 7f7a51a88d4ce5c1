#include "runtime/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/error.hpp"

namespace frugal {
namespace {

void check(const sampling_params & p) {
    if (!std::isfinite(p.temperature))
        throw_error(status::invalid_argument, "sampler: temperature = {} is not finite", p.temperature);
    if (p.top_k < 0) throw_error(status::invalid_argument, "sampler: top_k = {} is negative (0 = off)", p.top_k);
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
        throw_error(status::invalid_argument, "sampler: top_p = {} is outside (0, 1]", p.top_p);
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
        throw_error(status::invalid_argument, "sampler: min_p = {} is outside [0, 1]", p.min_p);
    if (!(p.repeat_penalty > 0.0f) || std::isinf(p.repeat_penalty))
        throw_error(status::invalid_argument, "sampler: repeat_penalty = {} is not positive and finite",
                    p.repeat_penalty);
    if (p.repeat_last_n < -1)
        throw_error(status::invalid_argument, "sampler: repeat_last_n = {} is below -1 (-1 = all history)",
                    p.repeat_last_n);
}

// A strict total order, so top-k keeps the same set whatever the standard library's sort does.
template <class C>
bool better(const C & a, const C & b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

template <class C>
float max_logit(std::span<const C> c) {
    float m = -std::numeric_limits<float>::infinity();
    for (const auto & x : c) m = std::max(m, x.logit);
    return m;
}

} // namespace

sampler::sampler(sampling_params p) : rng_(p.seed) {
    check(p);
    params_ = p;
}

void sampler::set_params(const sampling_params & p) {
    check(p);
    if (p.seed != params_.seed) rng_.seed(p.seed);
    params_ = p;
}

void sampler::reset(uint64_t seed) {
    params_.seed = seed;
    rng_.seed(seed);
}

int32_t sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
    const size_t n = logits.size();
    if (n == 0 || n > size_t(std::numeric_limits<int32_t>::max()))
        throw_error(status::invalid_argument, "sampler: {} logits, want 1..{}", n, std::numeric_limits<int32_t>::max());
    cand_.resize(n);
    float top = -std::numeric_limits<float>::infinity();
    for (size_t i = 0; i < n; ++i) {
        const float x = logits[i];
        if (std::isnan(x) || x == std::numeric_limits<float>::infinity())
            throw_error(status::invalid_argument, "sampler: logit of token {} is {}", i, x);
        cand_[i] = {x, 0.0f, int32_t(i)};
        top = std::max(top, x);
    }
    if (top == -std::numeric_limits<float>::infinity())
        throw_error(status::invalid_argument, "sampler: all {} logits are -inf", n);
    penalize_recent(history);

    if (params_.temperature <= 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < n; ++i)
            if (cand_[i].logit > cand_[best].logit) best = i; // strict: the lowest id wins ties
        return cand_[best].id;
    }

    size_t size = n;
    size_t sorted = 0; // cand_[0, sorted) holds the best, in order
    if (params_.top_k > 0 && size_t(params_.top_k) < size) {
        size = size_t(params_.top_k);
        std::partial_sort(cand_.begin(), cand_.begin() + ptrdiff_t(size), cand_.end(), better<candidate>);
        sorted = size;
    }

    if (params_.top_p < 1.0f) {
        // smallest prefix of the best whose softmax mass (over the survivors) reaches top_p
        const float m = max_logit(std::span<const candidate>(cand_.data(), size));
        float sum = 0.0f;
        for (size_t i = 0; i < size; ++i) sum += std::exp(cand_[i].logit - m);
        float cum = 0.0f;
        for (size_t i = 0;; ++i) {
            if (i == sorted) sorted = sort_more(sorted, size);
            cum += std::exp(cand_[i].logit - m) / sum;
            if (cum >= params_.top_p || i + 1 == size) {
                size = i + 1;
                break;
            }
        }
    }

    if (params_.min_p > 0.0f) {
        // p_i >= min_p * p_max  <=>  logit_i >= max_logit + log(min_p); the best always stays
        const float min_logit = max_logit(std::span<const candidate>(cand_.data(), size)) + std::log(params_.min_p);
        if (sorted >= size) {
            size_t keep = 1;
            while (keep < size && cand_[keep].logit >= min_logit) ++keep;
            size = keep;
        } else {
            const auto end = std::remove_if(cand_.begin(), cand_.begin() + ptrdiff_t(size),
                                            [&](const candidate & c) { return c.logit < min_logit; });
            size = size_t(end - cand_.begin());
        }
    }
    return draw(size);
}

// llama.cpp's penalties sampler with only the repetition term: each distinct token among the last
// repeat_last_n of history is penalised once.
void sampler::penalize_recent(std::span<const int32_t> history) {
    if (params_.repeat_penalty == 1.0f || params_.repeat_last_n == 0 || history.empty()) return;
    const size_t take = params_.repeat_last_n < 0 ? history.size()
                                                  : std::min(history.size(), size_t(params_.repeat_last_n));
    recent_.assign(history.end() - ptrdiff_t(take), history.end());
    std::sort(recent_.begin(), recent_.end());
    recent_.erase(std::unique(recent_.begin(), recent_.end()), recent_.end());
    for (const int32_t id : recent_) {
        if (id < 0 || size_t(id) >= cand_.size())
            throw_error(status::invalid_argument, "sampler: history token {} is out of range [0, {})", id,
                        cand_.size());
        cand_[size_t(id)].logit = detail::penalize(cand_[size_t(id)].logit, params_.repeat_penalty);
    }
}

// Extends the sorted prefix of cand_[0, size); the rest is never better than the prefix, so
// sorting the next block of the remainder keeps the whole prefix in order.
size_t sampler::sort_more(size_t sorted, size_t size) {
    const size_t next = std::min(size, std::max<size_t>(64, 2 * sorted));
    std::partial_sort(cand_.begin() + ptrdiff_t(sorted), cand_.begin() + ptrdiff_t(next),
                      cand_.begin() + ptrdiff_t(size), better<candidate>);
    return next;
}

// Temperature, softmax and one draw. u takes the top 53 bits of the generator, so the mapping to
// [0, 1) does not depend on the standard library's distributions.
int32_t sampler::draw(size_t size) {
    const float m = max_logit(std::span<const candidate>(cand_.data(), size));
    const float inv_t = 1.0f / params_.temperature;
    double total = 0.0;
    for (size_t i = 0; i < size; ++i) {
        cand_[i].weight = std::exp((cand_[i].logit - m) * inv_t);
        total += cand_[i].weight;
    }
    const double u = double(rng_() >> 11) * 0x1.0p-53 * total;
    double cum = 0.0;
    for (size_t i = 0; i + 1 < size; ++i) {
        cum += cand_[i].weight;
        if (u < cum) return cand_[i].id;
    }
    return cand_[size - 1].id; // also catches rounding at the top end
}

} // namespace frugal
