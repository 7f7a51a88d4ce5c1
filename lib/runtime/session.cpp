#include "runtime/session.hpp"

#include <chrono>

#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal {

session::session(std::shared_ptr<const frugal::model> m, int64_t n_ctx)
    : model_(std::move(m)), sampler_(params_) {
    const auto & c = model_->config();
    if (n_ctx <= 0) n_ctx = std::min<int64_t>(c.n_ctx_train, 4096);
    if (n_ctx > (int64_t(1) << 24))
        throw_error(status::invalid_argument, "session: context size {} is larger than {}", n_ctx, int64_t(1) << 24);
    if (n_ctx > c.n_ctx_train)
        FRUGAL_LOG_WARN("session: context {} exceeds the model's training context {}", n_ctx, c.n_ctx_train);
    state_ = model_->create_state(n_ctx);
    logits_.resize(size_t(c.n_vocab));
}

void session::eval(std::span<const int32_t> tokens, bool is_prompt) {
    // A cancel() that arrived while idle must not abort the next call.
    cancel_.store(false, std::memory_order_relaxed);
    const auto t0 = std::chrono::steady_clock::now();
    model_->forward(*state_, tokens, false, logits_.data(), &cancel_);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (is_prompt ? stats_.prompt_seconds : stats_.decode_seconds) += dt;
    (is_prompt ? stats_.n_prompt : stats_.n_decode) += int64_t(tokens.size());
    have_logits_ = true;
}

void session::flush_pending() {
    if (!pending_) return;
    const int32_t t = *pending_;
    eval(std::span(&t, 1), false);
    pending_.reset();
}

void session::prompt_text(std::string_view text) {
    const auto & tok = model_->tokenizer();
    // BOS only at the start of the context (a pending token is already in the history).
    const auto ids = tok.encode(text, history_.empty(), true);
    if (ids.empty()) throw_error(status::invalid_argument, "session: the prompt is empty");
    prompt_tokens(ids);
}

void session::prompt_tokens(std::span<const int32_t> tokens) {
    if (tokens.empty()) throw_error(status::invalid_argument, "session: no prompt tokens");
    flush_pending();
    eval(tokens, true);
    history_.insert(history_.end(), tokens.begin(), tokens.end());
}

next_result session::next() {
    flush_pending();
    if (!have_logits_) throw_error(status::invalid_argument, "session: next() needs a prompt first");
    // A token is only produced when it can also be evaluated.
    if (state_->n_past() >= state_->n_ctx())
        throw_error(status::context_full, "context full: all {} positions are used", state_->n_ctx());
    next_result r;
    r.token = sampler_.sample(logits_, history_);
    const auto & tok = model_->tokenizer();
    if (tok.is_eog(r.token)) {
        r.done = true;
        r.piece = utf8_.flush();
        return r;
    }
    r.piece = utf8_.push(tok.stream_piece(history_.empty() ? -1 : history_.back(), r.token));
    history_.push_back(r.token);
    pending_ = r.token;
    return r;
}

std::span<const float> session::logits() const {
    if (!have_logits_) return {};
    return logits_;
}

std::vector<float> session::evaluate_all(std::span<const int32_t> tokens) {
    reset();
    std::vector<float> all(tokens.size() * size_t(model_->config().n_vocab));
    cancel_.store(false, std::memory_order_relaxed);
    model_->forward(*state_, tokens, true, all.data(), &cancel_);
    history_.assign(tokens.begin(), tokens.end());
    std::copy(all.end() - model_->config().n_vocab, all.end(), logits_.begin());
    have_logits_ = true;
    return all;
}

void session::reset() {
    state_->reset();
    history_.clear();
    pending_.reset();
    have_logits_ = false;
    utf8_ = utf8_stream();
    sampler_.reset(params_.seed);
}

void session::set_sampling(const sampling_params & p) {
    sampler_.set_params(p);
    params_ = p;
}

} // namespace frugal
