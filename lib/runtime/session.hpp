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
#include "runtime/reasoning.hpp"
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
    std::string piece;       // complete UTF-8 text released by this token (may be empty); <think>
                             // and </think> appear as text even where they are control tokens
    std::vector<text_part> parts; // the same text split into reasoning and content, tags removed
                                  // (reasoning_splitter's rules); when done, all that was held back
};

class session {
public:
    // n_ctx <= 0: min(training context, 4096). kv_type: f16, q8_0 or f32 (status::invalid_argument
    // else, and for q8_0 where the model's heads are not whole blocks of 32).
    session(std::shared_ptr<const frugal::model> m, int64_t n_ctx, dtype kv_type = k_default_kv_type);

    const frugal::model & model() const { return *model_; }
    int64_t n_ctx() const { return state_->n_ctx(); }
    int64_t n_past() const { return state_->n_past(); }
    uint64_t kv_bytes() const { return state_->kv_bytes(); }
    dtype kv_type() const { return state_->kv_type(); }
    const std::vector<int32_t> & history() const { return history_; }
    // Whether generated text is reasoning now (inside <think>, from the prompt or the output).
    bool in_reasoning() const { return reasoning_.in_reasoning(); }
    const eval_stats & stats() const { return stats_; }

    // Tokenizes (special token texts recognised; BOS added when the context is empty, the
    // vocabulary asks for it and the text does not already start with it, as a rendered chat
    // template does) and evaluates.
    void prompt_text(std::string_view text);
    // Evaluates the tokens; afterwards logits() is the next-token distribution. Their text also
    // tells the reasoning splitter whether generation starts inside <think> (text it still held
    // back from an unfinished generation is dropped).
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
    // Starts from the library defaults, or for a DeepSeek-R1-family model (chat format
    // deepseek_r1) from DeepSeek's recommendation: temperature 0.6, top-p 0.95 (MODEL-SPEC.md §5).
    void set_sampling(const sampling_params & p);
    const sampling_params & sampling() const { return params_; }
    void set_n_threads(int n) { state_->set_n_threads(n); }
    // How prompts multiply weights that are not F32 (ops/matmul.hpp); decode is unaffected.
    void set_prefill_gemm(ops::prefill_gemm g) { state_->matmul().prefill = g; }
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
    reasoning_splitter reasoning_;
    int32_t think_open_ = -1, think_close_ = -1; // ids of <think> / </think> when they are tokens
    std::atomic<bool> cancel_{false};
    eval_stats stats_;
};

} // namespace frugal
