// reasoning.cpp - the byte-wise state machine behind reasoning_splitter (rules in reasoning.hpp).
#include "runtime/reasoning.hpp"

namespace frugal {

namespace {

constexpr std::string_view k_open = "<think>";
constexpr std::string_view k_close = "</think>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

} // namespace

void reasoning_splitter::observe(std::string_view text) {
    for (char c : text) feed(c, nullptr);
    pending_ws_.clear(); // prompt whitespace: nothing to trim or release
    n_held_prompt_ = held_.size();
}

std::vector<text_part> reasoning_splitter::push(std::string_view text) {
    parts out;
    for (char c : text) feed(c, &out);
    return out;
}

std::vector<text_part> reasoning_splitter::flush() {
    parts out;
    release_held(&out);
    emit(pending_ws_, &out);
    pending_ws_.clear();
    return out;
}

// out == nullptr: observing.
void reasoning_splitter::feed(char c, parts * out) {
    if (!held_.empty()) {
        held_ += c;
        if (held_ == k_open || held_ == k_close) {
            on_tag(held_ == k_open);
            held_.clear();
            n_held_prompt_ = 0;
            return;
        }
        if (k_open.starts_with(held_) || k_close.starts_with(held_)) return;
        // Tags hold a single '<', at their start: the held bytes are text, and c starts afresh.
        held_.pop_back();
        release_held(out);
    }
    if (c == '<') {
        held_ = c;
        return;
    }
    literal(c, out);
}

void reasoning_splitter::on_tag(bool open) {
    if (open == reasoning_) return;
    if (!open) pending_ws_.clear();
    reasoning_ = open;
    skip_ws_ = true;
}

void reasoning_splitter::literal(char c, parts * out) {
    if (is_space(c)) {
        if (skip_ws_) return;
        if (reasoning_) {
            pending_ws_ += c;
            return;
        }
    } else {
        skip_ws_ = false;
        emit(pending_ws_, out);
        pending_ws_.clear();
    }
    emit({&c, 1}, out);
}

void reasoning_splitter::release_held(parts * out) {
    std::string text = std::move(held_);
    held_.clear();
    if (n_held_prompt_ > 0) {
        // Prompt bytes are not output, but they are text, so they end a whitespace skip
        // (observe() already cleared pending_ws_).
        skip_ws_ = false;
        text.erase(0, n_held_prompt_);
        n_held_prompt_ = 0;
    }
    for (char c : text) literal(c, out);
}

void reasoning_splitter::emit(std::string_view s, parts * out) const {
    if (!out || s.empty()) return;
    const text_kind kind = reasoning_ ? text_kind::reasoning : text_kind::content;
    if (!out->empty() && out->back().kind == kind)
        out->back().text += s;
    else
        out->push_back({kind, std::string(s)});
}

} // namespace frugal
