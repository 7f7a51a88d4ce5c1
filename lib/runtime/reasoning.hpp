// reasoning.hpp - splits streamed model output into reasoning and content at DeepSeek-R1's
// <think> ... </think> tags, whatever the chunking (a tag may be one token or several pieces).
//
// Rules (byte-wise over the whole stream, so the concatenated output never depends on chunking):
// - `<think>` switches to reasoning, `</think>` to content. Tags never appear in the output. A tag
//   that does not change the state (a second `<think>`, or a `</think>` in content, which a model
//   writes when the prompt did not open the reasoning) is dropped and has no other effect: text
//   before a stray `</think>` stays content, because deciding otherwise would mean holding back
//   the whole answer.
// - Whitespace (space, tab, CR, LF) directly after a state-changing tag is dropped, however far it
//   runs and in however many chunks, also when the tag was observe()d: R1 writes
//   "<think>\n...\n</think>\n\nanswer" and the template ends the prompt with "<think>\n".
// - Whitespace directly before the `</think>` that ends reasoning is dropped, so reasoning never
//   ends in the "\n" R1 puts there. Cost: a whitespace run inside reasoning is held until the next
//   other byte (which releases it) or that tag (which drops it). Content whitespace is never held.
// - Only two things are held back: that whitespace, and a suffix starting with '<' that is a
//   proper prefix of a tag (decided by the next byte). Both are ASCII, so parts split only at
//   ASCII bytes: every part is valid UTF-8 when the pushed chunks are.
// - Near misses (`<thinking>`, `</thinkx`, `</`) are ordinary text.
// One splitter per generation stream; not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace frugal {

enum class text_kind : uint8_t { content, reasoning };

struct text_part {
    text_kind kind;
    std::string text; // never empty
    bool operator==(const text_part &) const = default;
};

class reasoning_splitter {
public:
    // Context text (the prompt): applies the rules above but outputs nothing, so after
    // observe("...<｜Assistant｜><think>\n") pushed text is reasoning. A tag split across observe()
    // calls, or between the prompt and the output, is recognised; the prompt's bytes never appear
    // in the output. Call flush() first if a generation is in progress: held output is discarded.
    void observe(std::string_view text);

    // Generated text; returns what it completes, tags removed, adjacent parts of one kind merged.
    std::vector<text_part> push(std::string_view text);

    // End of generation: releases what is held (a partial tag that never completed, whitespace at
    // the end of reasoning) as text of the current kind. The state (in_reasoning) is kept.
    std::vector<text_part> flush();

    bool in_reasoning() const { return reasoning_; }

    // Back to content, nothing held.
    void reset() { *this = reasoning_splitter{}; }

private:
    using parts = std::vector<text_part>;

    void feed(char c, parts * out);
    void on_tag(bool open);
    void literal(char c, parts * out);
    void release_held(parts * out);
    void emit(std::string_view s, parts * out) const;

    std::string held_;          // a proper prefix of a tag, starting with '<'
    size_t n_held_prompt_ = 0;  // leading bytes of held_ that came from observe(): never output
    std::string pending_ws_;    // whitespace at the end of reasoning so far
    bool reasoning_ = false;
    bool skip_ws_ = false;      // a state-changing tag, then only whitespace since
};

} // namespace frugal
