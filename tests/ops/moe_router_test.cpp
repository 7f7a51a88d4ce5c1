// moe_router_test.cpp - lib/ops/moe_router against hand-made router scores (group limits, bias,
// normalisation, gating) and against a plain double-precision router on random logits.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "common/test_support.hpp"
#include "ops/moe_router.hpp"
#include "util/error.hpp"

using namespace frugal;

namespace {

struct routed {
    std::vector<int32_t> ids;
    std::vector<float> weights;
};

routed run(const ops::router_config & c, const std::vector<float> & logits, const float * bias = nullptr) {
    const int64_t n_tokens = int64_t(logits.size()) / c.n_expert;
    routed r{std::vector<int32_t>(size_t(n_tokens * c.n_used)), std::vector<float>(size_t(n_tokens * c.n_used))};
    ops::route(c, logits.data(), bias, n_tokens, r.ids.data(), r.weights.data());
    return r;
}

// The logit whose sigmoid is p, so hand-made cases can be written as router scores.
float logit_of(double p) { return float(std::log(p / (1 - p))); }

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// Plain reference for one token, from MODEL-SPEC 1.7 / 2: sort-based, in double. Returns the chosen
// experts best first and their weights.
struct ref_choice {
    std::vector<int32_t> ids;
    std::vector<double> weights;
};
ref_choice ref_route(const ops::router_config & c, const float * logits, const float * bias) {
    const auto n = size_t(c.n_expert);
    std::vector<double> p(n);
    if (c.gating == ops::gating_func::softmax) {
        const double mx = *std::max_element(logits, logits + n);
        double sum = 0;
        for (size_t e = 0; e < n; ++e) sum += p[e] = std::exp(double(logits[e]) - mx);
        for (auto & v : p) v /= sum;
    } else {
        for (size_t e = 0; e < n; ++e) p[e] = sigmoid(logits[e]);
    }
    std::vector<double> s(n);
    for (size_t e = 0; e < n; ++e) s[e] = p[e] + (bias ? double(bias[e]) : 0.0);

    std::vector<int32_t> eligible(n);
    std::iota(eligible.begin(), eligible.end(), 0);
    if (c.n_group > 1) {
        const auto size = n / size_t(c.n_group);
        std::vector<double> rank(size_t(c.n_group));
        for (size_t g = 0; g < rank.size(); ++g) {
            std::vector<double> v(s.begin() + long(g * size), s.begin() + long((g + 1) * size));
            std::sort(v.begin(), v.end(), std::greater<>());
            rank[g] = c.grouping == ops::group_score::max || v.size() == 1 ? v[0] : v[0] + v[1];
        }
        std::vector<int32_t> groups(rank.size());
        std::iota(groups.begin(), groups.end(), 0);
        std::stable_sort(groups.begin(), groups.end(),
                         [&](int32_t a, int32_t b) { return rank[size_t(a)] > rank[size_t(b)]; });
        groups.resize(size_t(c.n_group_used));
        eligible.clear();
        for (int32_t e = 0; e < int32_t(n); ++e)
            if (std::find(groups.begin(), groups.end(), int32_t(size_t(e) / size)) != groups.end())
                eligible.push_back(e);
    }
    // stable over ascending ids: a tie goes to the lower id
    std::stable_sort(eligible.begin(), eligible.end(),
                     [&](int32_t a, int32_t b) { return s[size_t(a)] > s[size_t(b)]; });
    ref_choice r;
    r.ids.assign(eligible.begin(), eligible.begin() + c.n_used);
    double sum = 0;
    for (int32_t e : r.ids) sum += p[size_t(e)];
    for (int32_t e : r.ids) r.weights.push_back(p[size_t(e)] / (c.norm_topk ? sum : 1.0) * c.scale);
    return r;
}

} // namespace

TEST_CASE("moe router keeps the groups with the best top-2 sum, or the best max when asked" * doctest::timeout(60)) {
    // 4 groups of 2. Group 0 holds the single best expert (0.95) but the worst pair but one (sum 1.00);
    // groups 1 and 2 win on their sums (1.15, 1.14) though their best experts are only 0.60 and 0.58.
    const double p[] = {0.95, 0.05, 0.60, 0.55, 0.58, 0.56, 0.10, 0.10};
    std::vector<float> logits;
    for (double v : p) logits.push_back(logit_of(v));
    ops::router_config c{.n_expert = 8, .n_used = 2, .n_group = 4, .n_group_used = 2,
                         .gating = ops::gating_func::sigmoid};

    const auto sum2 = run(c, logits);
    CHECK(sum2.ids == std::vector<int32_t>{2, 4}); // expert 0 sits in a losing group
    CHECK(sum2.weights[0] == doctest::Approx(0.60).epsilon(1e-6));
    CHECK(sum2.weights[1] == doctest::Approx(0.58).epsilon(1e-6));

    c.grouping = ops::group_score::max; // V2 236B: groups 0 (0.95) and 1 (0.60) win
    CHECK(run(c, logits).ids == std::vector<int32_t>{0, 2});

    c.n_group = 1; // no group limit: the plain top-2
    CHECK(run(c, logits).ids == std::vector<int32_t>{0, 2});
}

TEST_CASE("moe router uses the bias to choose and the unbiased sigmoid as weight" * doctest::timeout(60)) {
    const double p[] = {0.9, 0.8, 0.5, 0.1};
    std::vector<float> logits;
    for (double v : p) logits.push_back(logit_of(v));
    const std::vector<float> bias = {0.f, 0.f, 0.5f, 0.f}; // lifts expert 2 to 1.0, above expert 0
    ops::router_config c{.n_expert = 4, .n_used = 2, .gating = ops::gating_func::sigmoid};

    const auto plain = run(c, logits, bias.data());
    CHECK(plain.ids == std::vector<int32_t>{2, 0});
    CHECK(plain.weights[0] == doctest::Approx(0.5).epsilon(1e-6));
    CHECK(plain.weights[1] == doctest::Approx(0.9).epsilon(1e-6));

    // V3: normalise, then scale; the weights then sum to the scale.
    c.norm_topk = true;
    c.scale = 2.5f;
    const auto normed = run(c, logits, bias.data());
    CHECK(normed.ids == std::vector<int32_t>{2, 0});
    CHECK(normed.weights[0] == doctest::Approx(0.5 / 1.4 * 2.5).epsilon(1e-6));
    CHECK(normed.weights[1] == doctest::Approx(0.9 / 1.4 * 2.5).epsilon(1e-6));
    CHECK(double(normed.weights[0]) + normed.weights[1] == doctest::Approx(2.5).epsilon(1e-6));
}

TEST_CASE("moe router with softmax gating and no norm weights by the softmax probability" * doctest::timeout(60)) {
    const std::vector<float> logits = {0.5f, -1.f, 2.f, 1.5f, -3.f, 0.f};
    double sum = 0;
    for (float l : logits) sum += std::exp(double(l));
    const auto prob = [&](int e) { return std::exp(double(logits[size_t(e)])) / sum; };
    for (float scale : {1.f, 16.f}) { // V2-Lite, V2 236B
        CAPTURE(scale);
        const ops::router_config c{.n_expert = 6, .n_used = 3, .gating = ops::gating_func::softmax, .scale = scale};
        const auto r = run(c, logits);
        CHECK(r.ids == std::vector<int32_t>{2, 3, 0});
        for (size_t j = 0; j < 3; ++j) CHECK(r.weights[j] == doctest::Approx(scale * prob(r.ids[j])).epsilon(1e-6));
    }
}

TEST_CASE("moe router breaks ties toward the lower expert and group id" * doctest::timeout(60)) {
    const std::vector<float> logits(12, 0.25f);
    const ops::router_config flat{.n_expert = 12, .n_used = 3, .gating = ops::gating_func::sigmoid};
    CHECK(run(flat, logits).ids == std::vector<int32_t>{0, 1, 2});
    // 4 groups of 3 all rank equal: groups 0 and 1 are kept, so the pick is 0..4
    const ops::router_config grouped{.n_expert = 12, .n_used = 5, .n_group = 4, .n_group_used = 2,
                                     .gating = ops::gating_func::sigmoid};
    CHECK(run(grouped, logits).ids == std::vector<int32_t>{0, 1, 2, 3, 4});
}

TEST_CASE("moe router matches the reference on random logits" * doctest::timeout(60)) {
    using ops::gating_func;
    using ops::group_score;
    struct router_case {
        ops::router_config c;
        bool bias;
    };
    const router_case cases[] = {
        {{256, 8, 8, 4, gating_func::sigmoid, true, 2.5f, group_score::top2_sum}, true},  // V3 / R1
        {{256, 8, 1, 1, gating_func::sigmoid, true, 2.5f, group_score::top2_sum}, true},  // V3 GGUF without groups
        {{160, 6, 8, 3, gating_func::softmax, false, 16.f, group_score::max}, false},     // V2 236B
        {{160, 6, 8, 3, gating_func::softmax, false, 16.f, group_score::top2_sum}, false}, // V2 236B as llama.cpp
        {{64, 6, 1, 1, gating_func::softmax, false, 1.f, group_score::top2_sum}, false},   // V2-Lite
        {{12, 5, 3, 2, gating_func::softmax, true, 0.5f, group_score::top2_sum}, true},    // odd sizes, softmax+bias
        {{10, 4, 10, 7, gating_func::sigmoid, true, 1.f, group_score::top2_sum}, true},    // one-expert groups
        {{7, 7, 1, 1, gating_func::sigmoid, true, 3.f, group_score::max}, false},          // every expert used
    };
    const int64_t n_tokens = 5;
    for (const auto & rc : cases)
        for (uint32_t seed = 1; seed <= 40; ++seed) {
            const auto & c = rc.c;
            INFO("n_expert ", c.n_expert, " n_used ", c.n_used, " n_group ", c.n_group, " n_group_used ",
                 c.n_group_used, " softmax ", c.gating == gating_func::softmax, " norm ", c.norm_topk, " scale ",
                 c.scale, " max ", c.grouping == group_score::max, " bias ", rc.bias);
            CAPTURE(seed);
            const auto logits = test::random_floats(size_t(n_tokens * c.n_expert), seed, -4.f, 4.f);
            const auto bias = test::random_floats(size_t(c.n_expert), seed + 1000, -0.3f, 0.3f);
            const float * bp = rc.bias ? bias.data() : nullptr;
            const auto got = run(c, logits, bp);
            for (int64_t t = 0; t < n_tokens; ++t) {
                CAPTURE(t);
                const auto want = ref_route(c, logits.data() + t * c.n_expert, bp);
                const auto row = got.ids.begin() + t * c.n_used;
                CHECK(std::vector<int32_t>(row, row + c.n_used) == want.ids);
                for (int64_t j = 0; j < c.n_used; ++j)
                    CHECK(got.weights[size_t(t * c.n_used + j)] ==
                          doctest::Approx(want.weights[size_t(j)]).epsilon(1e-5));
            }
        }
}

TEST_CASE("moe router rejects invalid configs, naming the values" * doctest::timeout(60)) {
    struct bad_case {
        ops::router_config c;
        std::string needle;
    };
    const bad_case cases[] = {
        {{.n_expert = 8, .n_used = 0}, "n_used = 0"},
        {{.n_expert = 8, .n_used = 9}, "n_used = 9 must be in [1, n_expert = 8]"},
        {{.n_expert = 10, .n_used = 2, .n_group = 4, .n_group_used = 2},
         "n_expert = 10 does not split into n_group = 4"},
        {{.n_expert = 8, .n_used = 2, .n_group = 4, .n_group_used = 5}, "n_group_used = 5 must be in [1, n_group = 4]"},
        {{.n_expert = 8, .n_used = 2, .n_group = 4, .n_group_used = 0}, "n_group_used = 0"},
        {{.n_expert = 8, .n_used = 3, .n_group = 4, .n_group_used = 1}, "hold 2 < n_used = 3"},
    };
    for (const auto & b : cases) {
        CAPTURE(b.needle);
        const std::vector<float> logits(size_t(std::max<int64_t>(b.c.n_expert, 1)), 0.f);
        std::vector<int32_t> ids(16);
        std::vector<float> w(16);
        bool thrown = false;
        try {
            ops::route(b.c, logits.data(), nullptr, 1, ids.data(), w.data());
        } catch (const frugal::error & e) {
            thrown = true;
            CHECK(e.code() == status::invalid_argument);
            CHECK_MESSAGE(std::string(e.what()).find(b.needle) != std::string::npos, e.what());
        }
        CHECK_MESSAGE(thrown, "no frugal::error, wanted one mentioning '" << b.needle << "'");
    }
}
