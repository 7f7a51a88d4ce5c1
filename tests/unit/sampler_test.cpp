// sampler_test.cpp - greedy, reproducibility, what each filter keeps, softmax frequencies and the
// llama.cpp repetition penalty, on hand-made logits with fixed seeds.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <set>

#include "common/test_support.hpp"
#include "runtime/sampler.hpp"
#include "util/error.hpp"

using frugal::sampler;
using frugal::sampling_params;

namespace {

sampling_params plain(float temperature, uint64_t seed = 1) {
    sampling_params p;
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

std::vector<float> logits_of(const std::vector<double> & probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back(float(std::log(p)));
    return l;
}

std::set<int32_t> drawn(sampler & s, const std::vector<float> & logits, int n) {
    std::set<int32_t> ids;
    for (int i = 0; i < n; ++i) ids.insert(s.sample(logits, {}));
    return ids;
}

int32_t first_argmax(const std::vector<float> & l) {
    return int32_t(std::max_element(l.begin(), l.end()) - l.begin());
}

// Pearson chi-square of counts against probabilities.
double chi_square(const std::vector<int> & counts, const std::vector<double> & probs, int n) {
    double chi = 0.0;
    for (size_t i = 0; i < probs.size(); ++i) {
        const double want = probs[i] * n;
        chi += (counts[i] - want) * (counts[i] - want) / want;
    }
    return chi;
}

std::vector<int> histogram(sampler & s, const std::vector<float> & logits, std::span<const int32_t> history, int n) {
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < n; ++i) ++counts[size_t(s.sample(logits, history))];
    return counts;
}

void check_invalid(const std::function<void(sampling_params &)> & edit, std::string_view needle) {
    sampling_params p;
    edit(p);
    for (int via_set = 0; via_set < 2; ++via_set) {
        bool thrown = false;
        try {
            if (via_set) {
                sampler s{sampling_params{}};
                s.set_params(p);
            } else {
                sampler s{p};
            }
        } catch (const frugal::error & e) {
            thrown = true;
            CHECK(e.code() == frugal::status::invalid_argument);
            CHECK_MESSAGE(std::string_view(e.what()).find(needle) != std::string_view::npos, e.what());
        }
        CHECK_MESSAGE(thrown, "no error for " << needle);
    }
}

} // namespace

TEST_CASE("sampler: greedy is the argmax, lowest id on ties" * doctest::timeout(60)) {
    sampler s(plain(0.0f));
    CHECK(s.sample(std::vector<float>{0.5f, 2.0f, -1.0f, 2.0f, 1.9f}, {}) == 1);
    s.set_params(plain(-1.0f));
    CHECK(s.sample(std::vector<float>{-3.0f, -3.0f, -4.0f}, {}) == 0);
    for (uint32_t seed = 0; seed < 20; ++seed) {
        const auto l = frugal::test::random_floats(1000, seed, -5.0f, 5.0f);
        CHECK_MESSAGE(s.sample(l, {}) == first_argmax(l), "seed " << seed);
    }
}

TEST_CASE("sampler: the same seed repeats the sequence, another seed does not" * doctest::timeout(60)) {
    const auto l = frugal::test::random_floats(256, 7, -2.0f, 2.0f);
    auto run = [&](sampler & s, int n) {
        std::vector<int32_t> out;
        for (int i = 0; i < n; ++i) out.push_back(s.sample(l, out));
        return out;
    };
    sampling_params p; // the defaults: every filter on
    p.repeat_penalty = 1.1f;
    p.temperature = 1.5f;
    sampler a(p), b(p);
    const auto first = run(a, 200);
    CHECK(first == run(b, 200));
    CHECK(std::set<int32_t>(first.begin(), first.end()).size() > 10);

    p.seed = 0xBEEF;
    sampler c(p);
    CHECK(first != run(c, 200));

    a.reset(0xF00D);
    CHECK(run(a, 200) == first);

    // changing another parameter keeps the random stream; the seed restarts it
    sampler d(p), e(p);
    (void)run(d, 5);
    (void)run(e, 5);
    p.repeat_last_n = 100; // no effect here: each run's history is shorter than 64
    d.set_params(p);
    CHECK(run(d, 50) == run(e, 50));
}

TEST_CASE("sampler: top_k = 1 is greedy" * doctest::timeout(60)) {
    sampling_params p;
    p.top_k = 1;
    p.temperature = 1.5f;
    sampler s(p);
    for (uint32_t seed = 0; seed < 50; ++seed) {
        auto l = frugal::test::random_floats(300, seed, -3.0f, 3.0f);
        l[seed] = l[size_t(first_argmax(l))]; // a tie, with the lower id first half of the time
        CHECK_MESSAGE(s.sample(l, {}) == first_argmax(l), "seed " << seed);
    }
}

TEST_CASE("sampler: top-k, top-p and min-p keep exactly what they must" * doctest::timeout(60)) {
    // by id:                               0     1     2     3     4     5
    const auto l = logits_of(std::vector<double>{0.10, 0.40, 0.04, 0.25, 0.15, 0.06});
    auto kept = [&](int32_t top_k, float top_p, float min_p) {
        sampling_params p = plain(1.0f, 42);
        p.top_k = top_k;
        p.top_p = top_p;
        p.min_p = min_p;
        sampler s(p);
        return drawn(s, l, 4000);
    };
    CHECK(kept(0, 1.0f, 0.0f) == std::set<int32_t>{0, 1, 2, 3, 4, 5});
    CHECK(kept(3, 1.0f, 0.0f) == std::set<int32_t>{1, 3, 4});
    CHECK(kept(0, 0.6f, 0.0f) == std::set<int32_t>{1, 3});    // 0.40 + 0.25 >= 0.6
    CHECK(kept(0, 0.7f, 0.0f) == std::set<int32_t>{1, 3, 4}); // 0.80 >= 0.7
    CHECK(kept(0, 1.0f, 0.5f) == std::set<int32_t>{1, 3});    // p >= 0.5 * 0.40
    CHECK(kept(0, 1.0f, 0.3f) == std::set<int32_t>{1, 3, 4}); // p >= 0.12
    // in order: top-4 renormalised is .444 .278 .167 .111, so top-p 0.8 stops at the third
    CHECK(kept(4, 0.8f, 0.0f) == std::set<int32_t>{1, 3, 4});
    CHECK(kept(4, 0.8f, 0.5f) == std::set<int32_t>{1, 3});
    CHECK(kept(1, 0.1f, 1.0f) == std::set<int32_t>{1});

    // top-p without top-k on a big vocabulary: hundreds survive, none outside the nucleus
    const auto big = frugal::test::random_floats(1000, 3, -1.0f, 1.0f);
    std::vector<int32_t> order(big.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return big[size_t(a)] > big[size_t(b)]; });
    double sum = 0.0;
    for (float x : big) sum += std::exp(double(x));
    size_t nucleus = 0;
    for (double cum = 0.0; cum < 0.5;) cum += std::exp(double(big[size_t(order[nucleus++])])) / sum;
    sampling_params p = plain(1.0f, 9);
    p.top_p = 0.5f;
    sampler s(p);
    const auto got = drawn(s, big, 20000);
    // one slot of slack at the boundary: the sampler sums in float, in another order
    const std::set<int32_t> allowed(order.begin(), order.begin() + ptrdiff_t(nucleus + 1));
    CHECK(std::includes(allowed.begin(), allowed.end(), got.begin(), got.end()));
    CHECK(nucleus > 200); // several blocks of the sampler's incremental sort
    CHECK(got.size() + 1 >= nucleus);
    MESSAGE("top-p 0.5 nucleus " << nucleus << " of 1000, drawn " << got.size() << " distinct");
}

TEST_CASE("sampler: draws follow the softmax (temperature 1 and 0.5)" * doctest::timeout(60)) {
    const std::vector<double> probs{0.05, 0.10, 0.15, 0.20, 0.50};
    const auto l = logits_of(probs);
    const int n = 20000;
    sampler s(plain(1.0f, 123));
    const double chi1 = chi_square(histogram(s, l, {}, n), probs, n);
    // 4 degrees of freedom: 30 is far in the tail (p ~ 5e-6) yet catches any wrong distribution
    CHECK_MESSAGE(chi1 < 30.0, "chi-square " << chi1);

    // temperature 0.5 squares the probabilities (renormalised)
    std::vector<double> sq;
    for (double p : probs) sq.push_back(p * p);
    const double z = std::accumulate(sq.begin(), sq.end(), 0.0);
    for (double & p : sq) p /= z;
    s.set_params(plain(0.5f, 123));
    const double chi2 = chi_square(histogram(s, l, {}, n), sq, n);
    CHECK_MESSAGE(chi2 < 30.0, "chi-square " << chi2);
    MESSAGE("chi-square t=1 " << chi1 << ", t=0.5 " << chi2 << " (df 4, n " << n << ")");
}

TEST_CASE("sampler: repetition penalty follows llama.cpp's formula" * doctest::timeout(60)) {
    using frugal::detail::penalize;
    CHECK(penalize(2.0f, 1.5f) == doctest::Approx(2.0f / 1.5f));
    CHECK(penalize(-1.0f, 1.5f) == doctest::Approx(-1.5f));
    CHECK(penalize(0.0f, 2.0f) == 0.0f);

    auto greedy = [](float penalty, int32_t last_n, const std::vector<float> & l, std::vector<int32_t> history) {
        sampling_params p = plain(0.0f);
        p.repeat_penalty = penalty;
        p.repeat_last_n = last_n;
        sampler s(p);
        return s.sample(l, history);
    };
    const std::vector<float> pos{2.0f, 1.5f, 0.0f};
    CHECK(greedy(1.5f, 64, pos, {0}) == 1);       // 2 / 1.5 = 1.33 < 1.5
    CHECK(greedy(1.2f, 64, pos, {0}) == 0);       // 2 / 1.2 = 1.67 > 1.5
    CHECK(greedy(1.2f, 64, pos, {0, 0, 0, 0}) == 0); // once per distinct token, not per occurrence
    const std::vector<float> neg{-1.0f, -1.2f};
    CHECK(greedy(1.5f, 64, neg, {0}) == 1);       // -1 * 1.5 = -1.5 < -1.2
    CHECK(greedy(1.1f, 64, neg, {0}) == 0);       // -1.1 > -1.2
    // only the last repeat_last_n tokens count; -1 = all, 0 = off
    CHECK(greedy(1.5f, 1, pos, {0, 2}) == 0);
    CHECK(greedy(1.5f, 2, pos, {0, 2}) == 1);
    CHECK(greedy(1.5f, -1, pos, {0, 2, 2, 2, 2}) == 1);
    CHECK(greedy(1.5f, 0, pos, {0, 2}) == 0);

    // sampled: logits {1, 1}, token 0 penalised by 2 -> p0 = e^0.5 / (e^0.5 + e^1)
    sampling_params p = plain(1.0f, 5);
    p.repeat_penalty = 2.0f;
    sampler s(p);
    const std::vector<int32_t> history{0};
    const int n = 20000;
    const auto counts = histogram(s, std::vector<float>{1.0f, 1.0f}, history, n);
    const double want = std::exp(0.5) / (std::exp(0.5) + std::exp(1.0));
    CHECK(double(counts[0]) / n == doctest::Approx(want).epsilon(0.05));
}

TEST_CASE("sampler: invalid parameters and inputs are errors naming the value" * doctest::timeout(60)) {
    check_invalid([](sampling_params & p) { p.top_p = 0.0f; }, "top_p = 0");
    check_invalid([](sampling_params & p) { p.top_p = 1.5f; }, "top_p = 1.5");
    check_invalid([](sampling_params & p) { p.min_p = -0.1f; }, "min_p = -0.1");
    check_invalid([](sampling_params & p) { p.min_p = 2.0f; }, "min_p = 2");
    check_invalid([](sampling_params & p) { p.top_k = -1; }, "top_k = -1");
    check_invalid([](sampling_params & p) { p.repeat_penalty = 0.0f; }, "repeat_penalty = 0");
    check_invalid([](sampling_params & p) { p.repeat_last_n = -2; }, "repeat_last_n = -2");
    check_invalid([](sampling_params & p) { p.temperature = std::numeric_limits<float>::quiet_NaN(); },
                  "temperature = nan");

    sampler s(plain(1.0f));
    auto throws = [&](const std::vector<float> & l, std::vector<int32_t> history, std::string_view needle) {
        bool thrown = false;
        try {
            (void)s.sample(l, history);
        } catch (const frugal::error & e) {
            thrown = true;
            CHECK(e.code() == frugal::status::invalid_argument);
            CHECK_MESSAGE(std::string_view(e.what()).find(needle) != std::string_view::npos, e.what());
        }
        CHECK_MESSAGE(thrown, "no error for " << needle);
    };
    const float inf = std::numeric_limits<float>::infinity();
    throws({}, {}, "0 logits");
    throws({0.0f, std::numeric_limits<float>::quiet_NaN()}, {}, "token 1 is nan");
    throws({-inf, -inf}, {}, "all 2 logits are -inf");
    sampling_params p = plain(1.0f);
    p.repeat_penalty = 1.1f;
    s.set_params(p);
    throws({0.0f, 1.0f}, {0, 7}, "history token 7 is out of range");
    CHECK(s.sample(std::vector<float>{-inf, 0.0f, -inf}, {}) == 1);
}
