// concurrency_test.cpp - the C ABI's threading contract (frugal.h, docs/ABI.md), through frugal.h
// only: 8 threads, each with its own session on one shared model, generate at once while another
// thread cancels sessions at random. Every call returns ok, done or cancelled; a cancelled call
// leaves its session as it was, so calling again resumes; every thread's greedy tokens equal a
// single-threaded run. scripts/test.sh also runs it under ThreadSanitizer (preset tsan).
// Uses stories260K when ../shared has it, else the tiny model of gguf_builder.hpp.
#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/gguf_builder.hpp"
#include "common/test_support.hpp"
#include "frugal.h"

namespace {

constexpr int k_threads = 8;

std::string model_path() {
    if (const auto stories = frugal::test::shared_data("stories260K/stories260K.gguf")) return stories->string();
    return frugal::test::gguf::write_scratch_model("concurrency", "tiny.gguf", frugal::test::gguf::tiny_llama())
        .string();
}

// A session slot the canceller may reach: the owner publishes and retracts its session under the
// mutex, so a cancel never lands on a freed session. Cancel itself takes no lock.
struct slot {
    std::mutex lifetime;
    frugal_session * session = nullptr;
};

struct outcome {
    std::vector<int32_t> ids;
    int cancelled = 0;
    std::string failure; // the first unexpected status, if any
};

// Runs `call` until it returns something other than FRUGAL_ERR_CANCELLED, counting the retries.
template <class F>
frugal_status retry_cancelled(outcome & out, F && call) {
    for (;;) {
        frugal_error * err = nullptr;
        const frugal_status st = call(&err);
        if (st == FRUGAL_ERR_CANCELLED) {
            ++out.cancelled;
        } else if (st < 0 && out.failure.empty()) {
            out.failure = std::string(frugal_status_string(st)) + ": " + frugal_error_message(err);
        }
        frugal_error_free(err);
        if (st != FRUGAL_ERR_CANCELLED) return st;
    }
}

// One session's greedy generation of n tokens after `prompt`; `published` (if any) lets the
// canceller reach the session while it runs.
outcome generate(frugal_model * model, const std::string & prompt, int n, slot * published) {
    outcome out;
    frugal_session * s = nullptr;
    if (frugal_session_create(model, 0, &s, nullptr) != FRUGAL_OK) {
        out.failure = "session_create failed";
        return out;
    }
    frugal_session_set_param_f32(s, FRUGAL_PARAM_TEMPERATURE, 0.0f, nullptr);
    frugal_session_set_param_i64(s, FRUGAL_PARAM_N_THREADS, 1, nullptr);
    if (published) {
        std::lock_guard lock(published->lifetime);
        published->session = s;
    }
    frugal_status st = retry_cancelled(
        out, [&](frugal_error ** err) { return frugal_session_prompt(s, prompt.data(), prompt.size(), err); });
    char piece[256];
    for (int i = 0; st == FRUGAL_OK && i < n; ++i) {
        int32_t token = -1;
        size_t len = 0;
        st = retry_cancelled(out, [&](frugal_error ** err) {
            return frugal_session_next(s, &token, piece, sizeof piece, &len, err);
        });
        if (st >= 0) out.ids.push_back(token);
    }
    if (published) {
        std::lock_guard lock(published->lifetime);
        published->session = nullptr;
    }
    frugal_session_free(s);
    return out;
}

} // namespace

TEST_CASE("concurrency: 8 sessions on one model generate at once under random cancels, as single-threaded" *
          doctest::timeout(600)) {
    frugal_model_options opts;
    FRUGAL_MODEL_OPTIONS_INIT(&opts);
    opts.n_threads = 1; // the sessions are the parallelism here
    frugal_model * model = nullptr;
    const std::string path = model_path();
    REQUIRE(frugal_model_load(path.c_str(), &opts, &model, nullptr) == FRUGAL_OK);
    const std::array<std::string, k_threads> prompts = {
        "Once upon a time", "The little dog", "Lily and Tom", "One day, a bird",
        "The sun was", "Sam liked to", "In the park", "Mom said"};
    constexpr int n_tokens = 96;

    std::array<outcome, k_threads> alone;
    for (int t = 0; t < k_threads; ++t) {
        alone[size_t(t)] = generate(model, prompts[size_t(t)], n_tokens, nullptr);
        REQUIRE_MESSAGE(alone[size_t(t)].failure.empty(), alone[size_t(t)].failure);
    }

    std::array<slot, k_threads> slots;
    std::array<outcome, k_threads> together;
    std::atomic<int> running{k_threads};
    std::atomic<int> cancels_sent{0};
    std::thread canceller([&] {
        std::mt19937 rng(7);
        while (running.load() > 0) {
            slot & target = slots[rng() % k_threads];
            {
                std::lock_guard lock(target.lifetime);
                if (target.session) {
                    frugal_session_cancel(target.session);
                    ++cancels_sent;
                }
            }
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
        }
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < k_threads; ++t) {
        workers.emplace_back([&, t] {
            together[size_t(t)] = generate(model, prompts[size_t(t)], n_tokens, &slots[size_t(t)]);
            --running;
        });
    }
    for (auto & w : workers) w.join();
    canceller.join();
    frugal_model_free(model); // sessions are gone; the model may go now

    int cancelled = 0;
    for (int t = 0; t < k_threads; ++t) {
        CAPTURE(prompts[size_t(t)]);
        CHECK_MESSAGE(together[size_t(t)].failure.empty(), together[size_t(t)].failure);
        CHECK(together[size_t(t)].ids == alone[size_t(t)].ids);
        cancelled += together[size_t(t)].cancelled;
    }
    MESSAGE(cancels_sent.load() << " cancels sent, " << cancelled << " calls cancelled and retried");
    CHECK(cancelled > 0); // the cancels did interrupt running calls
}
