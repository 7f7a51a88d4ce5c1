// session.hpp - one conversation with a model: KV cache, token history, sampler and the
// streaming state behind frugal_session_next. Used by one thread at a time; cancel() may be
// called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "models/model.hpp"
#include "runtime/sampler.hpp"
#include "runtime/tokenizer.hpp"

namespace frugal {

// Evaluation counters: tokens given as a prompt, and sampled tokens evaluated by next().
struct eval_stats {
    int64_t n_prompt = 0, n_decode = 0;
    double prompt_seconds = 0, decode_seconds = 0;
};

struct next_result {
    bool done = false;       // end of generation (an end-of-generation token was sampled)
    int32_t token = -1;      // the sampled token (the EOG token when done)
    std::string piece;       // complete UTF-8 text released by this token (may be empty)
};

class session {
public:
    session(std::shared_ptr<const frugal::model> m, int64_t n_ctx);

    const frugal::model & model() const { return *model_; }
    int64_t n_ctx() const { return state_->n_ctx(); }
    int64_t n_past() const { return state_->n_past(); }
    uint64_t kv_bytes() const { return state_->kv_bytes(); }
    const std::vector<int32_t> & history() const { return history_; }
    const eval_stats & stats() const { return stats_; }

    // Tokenizes (BOS added when the context is empty and the vocabulary asks for it, special
    // token texts recognised) and evaluates.
    void prompt_text(std::string_view text);
    // Evaluates the tokens; afterwards logits() is the next-token distribution.
    void prompt_tokens(std::span<const int32_t> tokens);
    // Samples one token from the current logits and evaluates it lazily (on the next call that
    // needs logits), so a stop after N tokens costs N forward passes, not N + 1.
    next_result next();
    // Logits of the most recent evaluation ([n_vocab]); empty before any evaluation. After next()
    // returned token t they are still those that t was drawn from; t is evaluated on the next call.
    std::span<const float> logits() const;
    // Evaluates every position of `tokens` from an empty context and returns their logits
    // ([n, n_vocab]). For evaluation tools (perplexity, parity tests); resets the session.
    std::vector<float> evaluate_all(std::span<const int32_t> tokens);

    void reset();
    void set_sampling(const sampling_params & p);
    const sampling_params & sampling() const { return params_; }
    void set_n_threads(int n) { state_->set_n_threads(n); }
    // The model's per-session state (architecture-specific settings such as deepseek2's MLA form).
    model_state & state() { return *state_; }
    void reseed() { sampler_.reset(params_.seed); }
    void cancel() { cancel_.store(true, std::memory_order_relaxed); }

private:
    void eval(std::span<const int32_t> tokens, bool is_prompt);
    void flush_pending();

    std::shared_ptr<const frugal::model> model_;
    std::unique_ptr<model_state> state_;
    sampling_params params_;
    frugal::sampler sampler_;
    std::vector<int32_t> history_;   // every token evaluated or pending
    std::vector<float> logits_;
    bool have_logits_ = false;
    std::optional<int32_t> pending_; // sampled but not yet evaluated
    utf8_stream utf8_;
    std::atomic<bool> cancel_{false};
    eval_stats stats_;
};

} // namespace frugal
