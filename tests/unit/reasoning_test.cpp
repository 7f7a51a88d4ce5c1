// reasoning_test.cpp - reasoning_splitter: one case per rule of reasoning.hpp, then the same output
// under every chunking of short streams and thousands of random chunkings of a long R1-style one.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/reasoning.hpp"
#include "runtime/tokenizer.hpp"

// For failure messages: newlines as \n.
static std::string escaped(std::string_view s) {
    std::string e;
    for (char c : s) e += c == '\n' ? std::string_view("\\n") : std::string_view(&c, 1);
    return e;
}

// Failure messages show parts as: reasoning "a\n" content "b".
template <>
struct doctest::StringMaker<std::vector<frugal::text_part>> {
    static doctest::String convert(const std::vector<frugal::text_part> & parts) {
        std::ostringstream os;
        for (const frugal::text_part & p : parts)
            os << (p.kind == frugal::text_kind::reasoning ? "reasoning \"" : "content \"") << escaped(p.text) << "\" ";
        return os.str().c_str();
    }
};

using frugal::reasoning_splitter;
using frugal::text_kind;
using frugal::text_part;

namespace {

using parts = std::vector<text_part>;

text_part reasoning(std::string s) { return {text_kind::reasoning, std::move(s)}; }
text_part content(std::string s) { return {text_kind::content, std::move(s)}; }

struct run_result {
    parts merged; // everything returned, adjacent parts of one kind merged across calls
    // Every returned part is non-empty, differs in kind from its neighbour in the same call, and
    // (when checked) is valid UTF-8.
    bool well_formed = true;
};

void take(run_result & r, const parts & got, bool check_utf8) {
    for (size_t i = 0; i < got.size(); ++i) {
        const text_part & p = got[i];
        if (p.text.empty() || (i > 0 && p.kind == got[i - 1].kind) || (check_utf8 && !frugal::is_valid_utf8(p.text)))
            r.well_formed = false;
        if (!r.merged.empty() && r.merged.back().kind == p.kind)
            r.merged.back().text += p.text;
        else
            r.merged.push_back(p);
    }
}

run_result run(std::string_view prompt, const std::vector<std::string_view> & chunks, bool check_utf8 = true) {
    reasoning_splitter s;
    s.observe(prompt);
    run_result r;
    for (std::string_view c : chunks) take(r, s.push(c), check_utf8);
    take(r, s.flush(), check_utf8);
    return r;
}

bool is_continuation(char c) { return (uint8_t(c) & 0xC0) == 0x80; }

std::string describe(const std::vector<std::string_view> & chunks) {
    std::string d;
    for (std::string_view c : chunks) d.append(d.empty() ? "" : "|").append(escaped(c));
    return d;
}

// Counts a run that is not well formed or differs from `want`; only the first is reported, so a
// broken rule does not print a million failures.
void tally(int & bad, const run_result & r, const parts & want, const std::vector<std::string_view> & chunks) {
    if (r.well_formed && r.merged == want) return;
    if (bad++ == 0) {
        FAIL_CHECK("chunking " << describe(chunks) << " gave " << doctest::toString(r.merged)
                               << std::string(r.well_formed ? "" : "(malformed)"));
    }
}

// Feeds `text` in every one of its 2^(n-1) chunkings; returns how many gave something other than
// `want` (UTF-8 checked when every cut falls on a character boundary).
int every_chunking(std::string_view prompt, std::string_view text, const parts & want) {
    REQUIRE(text.size() <= 20);
    int bad = 0;
    const uint32_t n_masks = uint32_t(1) << (text.size() - 1);
    for (uint32_t mask = 0; mask < n_masks; ++mask) {
        std::vector<std::string_view> chunks;
        bool at_boundaries = true;
        size_t start = 0;
        for (size_t i = 1; i <= text.size(); ++i) {
            if (i < text.size() && !(mask >> (i - 1) & 1)) continue;
            chunks.push_back(text.substr(start, i - start));
            if (i < text.size() && is_continuation(text[i])) at_boundaries = false;
            start = i;
        }
        tally(bad, run(prompt, chunks, at_boundaries), want, chunks);
    }
    return bad;
}

// Random chunks of 1..max_len bytes; cut only at character boundaries if `whole_chars`.
std::vector<std::string_view> random_chunks(std::string_view text, std::mt19937 & rng, size_t max_len, bool whole_chars) {
    std::vector<std::string_view> chunks;
    std::uniform_int_distribution<size_t> len(1, max_len);
    for (size_t start = 0; start < text.size();) {
        size_t end = std::min(text.size(), start + len(rng));
        while (whole_chars && end < text.size() && is_continuation(text[end])) ++end;
        chunks.push_back(text.substr(start, end - start));
        start = end;
    }
    return chunks;
}

} // namespace

TEST_CASE("R1 after a prompt that forced <think>\\n: reasoning, then the answer") {
    reasoning_splitter s;
    s.observe("<｜User｜>What is 2+2?<｜Assistant｜><think>\n");
    CHECK(s.in_reasoning());
    run_result r;
    take(r, s.push("Okay, let me think.\n</think>\n\nThe answer is 4."), true);
    take(r, s.flush(), true);
    CHECK(r.well_formed);
    CHECK(r.merged == parts{reasoning("Okay, let me think."), content("The answer is 4.")});
    CHECK_FALSE(s.in_reasoning());
}

TEST_CASE("a generation that opens <think> itself") {
    CHECK(run("", {"<think>\nHmm, 2+2.\n</think>\n\nFour."}).merged ==
          parts{reasoning("Hmm, 2+2."), content("Four.")});
    // Content before the tag is kept as written, trailing whitespace included.
    CHECK(run("", {"Let me see. <think>\nok\n</think>\nYes"}).merged ==
          parts{content("Let me see. "), reasoning("ok"), content("Yes")});
}

TEST_CASE("no tags: everything is content, whitespace untouched") {
    CHECK(run("", {"  Hello,\n", "world!\n\n"}).merged == parts{content("  Hello,\nworld!\n\n")});
    CHECK(run("", {}).merged.empty());
}

TEST_CASE("near misses are text, in content and in reasoning") {
    const std::string text = "<thinking> </thinkx <think </ <> a<b 1 < 2 <</think";
    CHECK(run("", {text}).merged == parts{content(text)});
    CHECK(run("<think>", {text}).merged == parts{reasoning(text)});
    // The '<' that breaks a candidate may start a real tag.
    CHECK(run("", {"a<<think>b</thin</think>c"}).merged ==
          parts{content("a<"), reasoning("b</thin"), content("c")});
}

TEST_CASE("a tag split over chunks: only the undecided bytes are held") {
    reasoning_splitter s;
    s.observe("<｜Assistant｜><think>\n");
    CHECK(s.push("Let me see.\n</") == parts{reasoning("Let me see.")});
    CHECK(s.push("think").empty());
    CHECK(s.in_reasoning());
    CHECK(s.push(">\n\nThe") == parts{content("The")});
    CHECK_FALSE(s.in_reasoning());
    CHECK(s.push(" end.\n") == parts{content(" end.\n")});
    CHECK(s.flush().empty());
}

TEST_CASE("latency: content is never held, reasoning holds only trailing whitespace") {
    reasoning_splitter s;
    CHECK(s.push("Hello <") == parts{content("Hello ")});
    CHECK(s.push("b") == parts{content("<b")});
    CHECK(s.push("\n") == parts{content("\n")});
    CHECK(s.push("<think>\n").empty());
    CHECK(s.push("a b") == parts{reasoning("a b")});
    CHECK(s.push(" \n").empty());
    CHECK(s.push("c") == parts{reasoning(" \nc")});
    CHECK(s.push("\n").empty());
    CHECK(s.push("</think>").empty());
    CHECK(s.push("x") == parts{content("x")});
}

TEST_CASE("flush releases a dangling partial tag as text of the current kind") {
    reasoning_splitter s;
    s.observe("<think>\n");
    CHECK(s.push("abc\n</thi") == parts{reasoning("abc")});
    CHECK(s.flush() == parts{reasoning("\n</thi")});
    CHECK(s.flush().empty());
    CHECK(s.in_reasoning());

    reasoning_splitter t;
    CHECK(t.push("x </thi") == parts{content("x ")});
    CHECK(t.flush() == parts{content("</thi")});
    // Reasoning cut off (e.g. by a token limit) keeps its trailing whitespace.
    reasoning_splitter u;
    CHECK(u.push("<think>\nstep 1\n\n") == parts{reasoning("step 1")});
    CHECK(u.flush() == parts{reasoning("\n\n")});
}

TEST_CASE("whitespace after tags is dropped across chunks, also after an observed tag") {
    reasoning_splitter s;
    s.observe("<｜Assistant｜><think>"); // no newline in the prompt
    CHECK(s.push("\n").empty());
    CHECK(s.push(" \r\n\tFirst") == parts{reasoning("First")});
    CHECK(s.push("\n").empty());
    CHECK(s.push("</think>").empty());
    CHECK(s.push("\n").empty());
    CHECK(s.push("\n").empty());
    CHECK(s.push(" B \n") == parts{content("B \n")});
    // Empty reasoning yields no part at all.
    CHECK(run("", {"<think>\n\n</think>\n\nAnswer"}).merged == parts{content("Answer")});
    CHECK(run("<think>\n", {"\n", "</think>", "\n\n", "Answer"}).merged == parts{content("Answer")});
}

TEST_CASE("a tag that does not change the state is dropped and has no other effect") {
    // A stray </think> (the prompt did not open reasoning): the text around it stays content.
    CHECK(run("", {"draft\n</think>\n\nanswer"}).merged == parts{content("draft\n\n\nanswer")});
    // A second <think>: whitespace around it is kept, or still skipped if the first's skip runs.
    CHECK(run("<think>\n", {"<think>\nidea\n<think>\nmore\n</think>\nok"}).merged ==
          parts{reasoning("idea\n\nmore"), content("ok")});
}

TEST_CASE("observe() carries the state into push(); reset() clears it") {
    reasoning_splitter s;
    s.observe("<think>\n");
    CHECK(s.in_reasoning());
    s.reset();
    CHECK_FALSE(s.in_reasoning());
    CHECK(s.push("\nx") == parts{content("\nx")}); // reset also ends the whitespace skip

    // A tag split across observe() calls.
    s.reset();
    s.observe("<｜Assistant｜><thi");
    CHECK_FALSE(s.in_reasoning());
    s.observe("nk>");
    CHECK(s.in_reasoning());
    CHECK(s.push("\nhm") == parts{reasoning("hm")});

    // A closing tag in the prompt (an earlier turn) switches back and starts a skip.
    s.observe("</think>\n");
    CHECK_FALSE(s.in_reasoning());
    CHECK(s.push("\nok") == parts{content("ok")});

    // A tag split between prompt and output; the prompt's bytes never appear in the output.
    s.reset();
    s.observe("a <");
    CHECK(s.push("b") == parts{content("b")});
    s.reset();
    s.observe("<thi");
    CHECK(s.push("nk>\nr") == parts{reasoning("r")});
    s.reset();
    s.observe("<think>\nsome thought\n<");
    CHECK(s.push("/thi").empty());
    CHECK(s.flush() == parts{reasoning("/thi")});
    // Prompt whitespace at the end of reasoning is not released into the output.
    s.reset();
    s.observe("<think>\nsome thought\n");
    CHECK(s.push("more") == parts{reasoning("more")});

    // reset() drops held bytes too.
    s.reset();
    CHECK(s.push("x</thi") == parts{content("x")});
    s.reset();
    CHECK(s.flush().empty());
}

TEST_CASE("every chunking of short streams gives the same parts") {
    struct stream_case {
        std::string_view prompt, text;
        parts want;
    };
    const stream_case cases[] = {
        {"<think>", "\nx<3\n</think>\n\né", {reasoning("x<3"), content("é")}},
        {"", "<think>é</think>b", {reasoning("é"), content("b")}},
        {"", "</thinkx<think>\né", {content("</thinkx"), reasoning("é")}},
        {"<think>\n", "中 \n</think\n</th", {reasoning("中 \n</think\n</th")}},
        {"", "</think> é\n<think>", {content(" é\n")}},
    };
    for (const stream_case & c : cases) {
        CAPTURE(c.text);
        REQUIRE(c.text.size() >= 15);
        CHECK(run(c.prompt, {c.text}).merged == c.want);
        CHECK(every_chunking(c.prompt, c.text, c.want) == 0);
    }
}

TEST_CASE("thousands of random chunkings of a long R1 answer give the same parts") {
    const std::string prompt = "<｜begin▁of▁sentence｜><｜User｜>Résous x² < 9 pour x entier positif."
                               "<｜Assistant｜><think>\n";
    const std::string text =
        "Okay, the user writes in French (é, à) and wants the positive integers x with x² < 9.\n"
        "Since 3² = 9, x < 3, so x ∈ {1, 2}. Check: 1 < 9 ✓ and 4 < 9 ✓ 🤔\n"
        "A <thinking> or </thinkx> in the text is not a tag; nor is a lone < or </.\n"
        "\n"
        "</think>\n\n"
        "Les entiers positifs sont **x = 1** et **x = 2**, car 2² = 4 < 9 et 3² = 9. 😀\n"
        "<think>\n"
        "Double-check: 中文 not needed.\n"
        "</think>\n"
        "\n"
        "Réponse : {1, 2}.";
    const parts want = {
        reasoning("Okay, the user writes in French (é, à) and wants the positive integers x with x² < 9.\n"
                  "Since 3² = 9, x < 3, so x ∈ {1, 2}. Check: 1 < 9 ✓ and 4 < 9 ✓ 🤔\n"
                  "A <thinking> or </thinkx> in the text is not a tag; nor is a lone < or </."),
        content("Les entiers positifs sont **x = 1** et **x = 2**, car 2² = 4 < 9 et 3² = 9. 😀\n"),
        reasoning("Double-check: 中文 not needed."),
        content("Réponse : {1, 2}."),
    };
    REQUIRE(frugal::is_valid_utf8(text));
    REQUIRE(text.size() > 300);
    CHECK(run(prompt, {text}).merged == want);

    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < text.size(); ++i) bytes.push_back(std::string_view(text).substr(i, 1));
    const run_result by_byte = run(prompt, bytes, false);
    CHECK(by_byte.well_formed);
    CHECK(by_byte.merged == want);

    std::mt19937 rng(20250101);
    int bad = 0;
    for (int i = 0; i < 6000; ++i) {
        const bool whole_chars = i % 2 == 0;
        const auto chunks = random_chunks(text, rng, i % 3 == 0 ? 4 : 16, whole_chars);
        tally(bad, run(prompt, chunks, whole_chars), want, chunks);
    }
    CHECK(bad == 0);
}
