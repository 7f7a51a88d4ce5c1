// forward_test.cpp - model::forward's batching on the tiny fixtures of every architecture. A
// prompt runs its last layer's attention output and feed-forward on the last row only, and a
// prompt longer than one batch skips them for the earlier batches (model::output_rows); neither
// may change the prompt's logits nor the cache later tokens read.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "common/test_support.hpp"
#include "models/model.hpp"
#include "runtime/session.hpp"
#include "util/profile.hpp"

namespace {

double max_abs_diff(std::span<const float> a, const float * b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
    return m;
}

} // namespace

TEST_CASE("a prompt's logits and the next token's equal evaluate_all's rows, across batch boundaries" *
          doctest::timeout(300)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    // F32 weights: the paths differ only in float summation order (the last layer's one row runs
    // the row kernels, evaluate_all's GEMM runs every row), ~1e-6.
    for (const char * name : {"tiny-llama-f32", "tiny-qwen2-f32", "tiny-deepseek2-f32", "tiny-deepseek3-f32"}) {
        CAPTURE(name);
        const auto model = frugal::load_model(frugal::test::parity_fixture(std::string(name) + ".gguf").string(), {});
        const int64_t V = model->config().n_vocab;
        // 512 tokens a batch for the dense models, 2048 for the MoE ones (deepseek2/3)
        const bool moe = std::string(name).find("deepseek") != std::string::npos;
        CHECK(model->max_batch() == (moe ? 2048 : 512));
        const auto batch = size_t(model->max_batch());
        const auto tokens = frugal::test::random_tokens(int64_t(batch) + 89, V, 5);
        for (const size_t n_prompt : {size_t(40), batch + 88}) { // a batch without logits, then 88
            CAPTURE(n_prompt);
            frugal::session all(model, int64_t(batch) + 100), step(model, int64_t(batch) + 100);
            const auto want = all.evaluate_all(std::span(tokens.data(), n_prompt + 1)); // [n_prompt + 1, V]
            step.prompt_tokens(std::span(tokens.data(), n_prompt));
            const double prompt_diff = max_abs_diff(step.logits(), want.data() + (n_prompt - 1) * V);
            step.prompt_tokens(std::span(&tokens[n_prompt], 1)); // reads every layer's cache rows
            const double next_diff = max_abs_diff(step.logits(), want.data() + n_prompt * V);
            MESSAGE(std::string(name) << ", prompt of " << n_prompt << ": max |logit diff| prompt " << prompt_diff << ", next "
                         << next_diff);
            CHECK(prompt_diff <= 1e-4);
            CHECK(next_diff <= 1e-4);
        }
    }
}

TEST_CASE("the last layer's feed-forward runs only for rows whose logits are read" * doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    const auto model = frugal::load_model(frugal::test::parity_fixture("tiny-qwen2-f32.gguf").string(), {});
    const int64_t n_layer = model->config().n_layer;
    const auto tokens = frugal::test::random_tokens(600, model->config().n_vocab, 6);
    const auto swiglu_calls = [&](auto && run) {
        frugal::profile::enable(true);
        frugal::profile::take();
        run();
        const auto t = frugal::profile::take();
        frugal::profile::enable(false);
        return t.calls[size_t(frugal::profile::op::activation)];
    };
    frugal::session s(model, 1024);
    // Two batches (512 + 88): the first needs no logits and skips the last layer's feed-forward.
    CHECK(swiglu_calls([&] { s.prompt_tokens(tokens); }) == 2 * n_layer - 1);
    s.reset();
    CHECK(swiglu_calls([&] { s.evaluate_all(tokens); }) == 2 * n_layer);
}
