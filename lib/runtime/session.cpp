#include "runtime/session.hpp"

#include <chrono>

#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal {

namespace {

sampling_params default_sampling(const tokenizer & tok) {
    sampling_params p;
    if (tok.chat_format() == chat_format::deepseek_r1) {
        p.temperature = 0.6f;
        p.top_p = 0.95f;
    }
    return p;
}

} // namespace

session::session(std::shared_ptr<const frugal::model> m, int64_t n_ctx, dtype kv_type)
    : model_(std::move(m)), params_(default_sampling(model_->tokenizer())), sampler_(params_) {
    const auto & c = model_->config();
    think_open_ = model_->tokenizer().token_id("<think>");
    think_close_ = model_->tokenizer().token_id("</think>");
    if (n_ctx <= 0) n_ctx = std::min<int64_t>(c.n_ctx_train, 4096);
    if (n_ctx > (int64_t(1) << 24))
        throw_error(status::invalid_argument, "session: context size {} is larger than {}", n_ctx, int64_t(1) << 24);
    if (n_ctx > c.n_ctx_train)
        FRUGAL_LOG_WARN("session: context {} exceeds the model's training context {}", n_ctx, c.n_ctx_train);
    state_ = model_->create_state(n_ctx, kv_type);
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
    const auto body = tok.encode(text, false, true);
    // BOS only at the start of the context (a pending token is already in the history), and once
    const auto & v = tok.get_vocab();
    std::vector<int32_t> ids;
    if (history_.empty() && v.add_bos && (body.empty() || body.front() != v.bos)) ids.push_back(v.bos);
    ids.insert(ids.end(), body.begin(), body.end());
    if (v.add_eos && !body.empty()) ids.push_back(v.eos);
    if (ids.empty()) throw_error(status::invalid_argument, "session: the prompt is empty");
    prompt_tokens(ids);
}

void session::prompt_tokens(std::span<const int32_t> tokens) {
    if (tokens.empty()) throw_error(status::invalid_argument, "session: no prompt tokens");
    flush_pending();
    eval(tokens, true);
    history_.insert(history_.end(), tokens.begin(), tokens.end());
    reasoning_.flush();
    for (const int32_t t : tokens) reasoning_.observe(model_->tokenizer().token_to_piece(t, true));
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
        r.parts = reasoning_.push(r.piece);
        for (auto & p : reasoning_.flush()) {
            if (!r.parts.empty() && r.parts.back().kind == p.kind)
                r.parts.back().text += p.text;
            else
                r.parts.push_back(std::move(p));
        }
        return r;
    }
    const bool think_tag = r.token == think_open_ || r.token == think_close_; // ids are -1 when absent
    r.piece = utf8_.push(think_tag ? tok.token_to_piece(r.token, true)
                                   : tok.stream_piece(history_.empty() ? -1 : history_.back(), r.token));
    r.parts = reasoning_.push(r.piece);
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
    reasoning_.reset();
    sampler_.reset(params_.seed);
}

void session::set_sampling(const sampling_params & p) {
    sampler_.set_params(p);
    params_ = p;
}

} // namespace frugal
