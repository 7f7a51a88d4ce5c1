// The C++ wrapper (capi/frugal.hpp) as a consumer sees it: only frugal.hpp (which includes only
// frugal.h), never lib/. Range-for generation against stories260K's reference.json, errors as
// exceptions with the library's message, handle lifetimes and moved-from objects, tokenizers (GGUF
// and a Hugging Face folder), chat templates, reasoning parts, the end of generation, callbacks and
// cancellation. Cases that only need *a* model use tiny llamas made by tests/common/gguf_builder.hpp
// (header-only, no frugal includes), so they always run; stories260K cases skip without ../shared.
//
// This file is built as C++20 (the project's standard) and examples/cpp/generate.cpp as C++17, so
// every build compiles frugal.hpp under both. The C++20-only checks below are guarded.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/gguf_builder.hpp"
#include "common/stories.hpp"
#include "common/test_support.hpp"
#include "frugal.hpp"

#if __cplusplus >= 202002L
#include <ranges>
#include <span>
// The generation ranges are real C++20 input ranges (usable with std::ranges / std::views).
static_assert(std::ranges::input_range<frugal::api::token_range>);
static_assert(std::ranges::input_range<frugal::api::part_range>);
static_assert(std::input_iterator<frugal::api::token_range::iterator>);
static_assert(std::sentinel_for<frugal::api::end_of_generation, frugal::api::part_range::iterator>);
#endif
static_assert(__cplusplus >= 201703L, "frugal.hpp needs C++17");
static_assert(!std::is_copy_constructible_v<frugal::api::model> && std::is_nothrow_move_constructible_v<frugal::api::model>);
static_assert(!std::is_copy_constructible_v<frugal::api::session> &&
              std::is_nothrow_move_assignable_v<frugal::api::session>);
static_assert(!std::is_copy_assignable_v<frugal::api::tokenizer> &&
              std::is_nothrow_move_constructible_v<frugal::api::tokenizer>);
static_assert(std::is_base_of_v<std::runtime_error, frugal::api::error>);

namespace fr = frugal::api;
using json = nlohmann::json;

namespace {

using frugal::test::contains;

using frugal::test::ids_of;

// Runs `body` and returns the frugal::api::error it throws (fails the case if it throws none).
template <class F>
fr::error thrown_by(F && body) {
    try {
        body();
    } catch (const fr::error & e) {
        return e;
    }
    FAIL("no frugal::api::error was thrown");
    return fr::error(FRUGAL_OK, "");
}

// The next n tokens of s: their ids and their text.
std::pair<std::vector<int32_t>, std::string> generate(fr::session & s, size_t n) {
    std::vector<int32_t> ids;
    std::string text;
    for (const auto & t : s.tokens(n)) {
        ids.push_back(t.id);
        text += t.text;
    }
    return {ids, text};
}

// A tiny llama written to the scratch folder (each process its own file), loaded, then removed.
fr::model load_tiny(frugal::test::gguf::builder b, const std::string & name) {
    const auto path = frugal::test::scratch_dir("cxx_wrapper") / (name + "." + std::to_string(::getpid()) + ".gguf");
    frugal::test::gguf::write_file(path, b.build());
    auto m = fr::model::load(path.string());
    std::filesystem::remove(path); // mapped: the model keeps its bytes
    return m;
}

// A tiny llama whose every logit is 0 (output_norm zeroed), so greedy always takes token 0;
// token 0's text is `text0` and the types/ids are adjusted by `edit`.
template <class Edit>
fr::model tiny_flat(const std::string & name, Edit && edit) {
    namespace g = frugal::test::gguf;
    auto b = g::tiny_llama();
    auto tokens = g::tiny_llama_tokens();
    edit(b, tokens);
    b.set("tokenizer.ggml.tokens", g::arr_str(tokens));
    auto & norm = b.get_tensor("output_norm.weight").data;
    std::fill(norm.begin(), norm.end(), uint8_t(0));
    return load_tiny(std::move(b), name);
}

} // namespace

TEST_CASE("cxx wrapper: version, status text and the error type" * doctest::timeout(10)) {
    CHECK(fr::version_matches());
    CHECK(fr::version_number() == uint32_t(FRUGAL_VERSION_NUMBER));
    CHECK(fr::version_string() == FRUGAL_VERSION_STRING);
    CHECK(fr::status_string(FRUGAL_ERR_CONTEXT_FULL) == frugal_status_string(FRUGAL_ERR_CONTEXT_FULL));
    const fr::error e(FRUGAL_ERR_IO, "loader: x.gguf: no such file");
    CHECK(e.status() == FRUGAL_ERR_IO);
    CHECK(std::string(e.what()) == "loader: x.gguf: no such file");
    CHECK(std::string(e.status_string()) == frugal_status_string(FRUGAL_ERR_IO));
    // without a message, what() is the status text
    CHECK(std::string(fr::error(FRUGAL_ERR_CANCELLED, "").what()) == frugal_status_string(FRUGAL_ERR_CANCELLED));
}

TEST_CASE("cxx wrapper: stories260K prompted greedy continuations by range-for match reference.json" *
          doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    const auto model = fr::model::load(st->path);
    for (const auto & p : st->ref["prompts"]) {
        const auto prompt = p["prompt"].get<std::string>();
        CAPTURE(prompt);
        const auto want = ids_of(p["generated_ids"]);
        fr::session s(model, fr::session_options{0, fr::kv_cache_type::f32}); // reference.json: float32 throughout
        s.set_temperature(0);
        s.prompt(prompt);
        CHECK(s.n_past() == int32_t(p["prompt_ids"].size()));
        const auto [ids, text] = generate(s, want.size());
        CHECK(ids == want);
        CHECK(text == p["generated_text"].get<std::string>());
        CHECK_FALSE(s.done()); // stopped by the budget, not by the model
    }
}

TEST_CASE("cxx wrapper: stories260K 256 greedy tokens from BOS, mapped and read" * doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto prompt = ids_of(g["prompt_ids"]);
    const auto want = ids_of(g["generated_ids"]);
    for (const bool mmap : {true, false}) {
        CAPTURE(mmap);
        fr::model_options o;
        o.use_mmap = mmap;
        o.n_threads = 1;
        const auto model = fr::model::load(st->path, o);
        fr::session s(model);
        s.set_temperature(0.0f);
#if __cplusplus >= 202002L
        s.prompt_tokens(std::span<const int32_t>(prompt)); // C++20: a span
#else
        s.prompt_tokens(prompt);
#endif
        const auto [ids, text] = generate(s, want.size());
        CHECK(ids == want);
        CHECK(text == g["text"].get<std::string>());
        // the last token is sampled but not evaluated yet
        CHECK(s.n_past() == int32_t(prompt.size() + want.size() - 1));
    }
}

TEST_CASE("cxx wrapper: stories260K next(), the range's iterator, parts and reset" * doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto want = ids_of(g["generated_ids"]);
    const auto model = fr::model::load(st->path);
    fr::session s(model);
    s.set_temperature(0).set_top_k(40).set_seed(7); // chainable; greedy anyway
    s.prompt_tokens({model.token_bos()});
    std::vector<int32_t> ids;
    for (int i = 0; i < 8; ++i) {
        const auto t = s.next();
        REQUIRE(t.has_value());
        ids.push_back(t->id);
    }
    // a range continues where next() stopped; the iterator works by hand too (*it++)
    auto range = s.tokens(4);
    auto it = range.begin();
    while (it != range.end()) ids.push_back((*it++).id);
    CHECK(ids == std::vector<int32_t>(want.begin(), want.begin() + 12));
    // a zero budget samples nothing
    const int32_t n_past = s.n_past();
    for (const auto & t : s.tokens(0)) FAIL("token " << t.id);
    CHECK(s.n_past() == n_past);

    // parts of a story without tags: all content, one per token, the same text as tokens
    s.reset();
    CHECK(s.n_past() == 0);
    CHECK(s.logits().empty());
    s.prompt("Once upon a time");
    std::string raw;
    for (const auto & t : s.tokens(40)) raw += t.text;
    s.reset();
    s.prompt("Once upon a time");
    std::string content;
    size_t n_parts = 0;
    for (const auto & p : s.parts(40)) {
        CHECK(p.kind == fr::text_kind::content);
        content += p.text;
        ++n_parts;
    }
    CHECK(n_parts == 40);
    CHECK(content == raw);
    // a prompt that opens <think> (written as text here): the continuation is all reasoning, less
    // the whitespace held back at its end
    s.reset();
    s.prompt("<think>\nOnce upon a time");
    raw.clear();
    for (const auto & t : s.tokens(40)) raw += t.text;
    s.reset();
    s.prompt("<think>\nOnce upon a time");
    std::string reasoning;
    for (const auto & p : s.parts(40)) {
        CHECK(p.kind == fr::text_kind::reasoning);
        reasoning += p.text;
    }
    while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n')) raw.pop_back();
    CHECK(reasoning == raw);
}

TEST_CASE("cxx wrapper: stories260K model getters, metadata, tokenizer and logits" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    const auto & cfg = st->ref["config"];
    const auto model = fr::model::load(st->path);
    CHECK(model.n_vocab() == cfg["vocab_size"].get<int32_t>());
    CHECK(model.n_layers() == cfg["n_layers"].get<int32_t>());
    CHECK(model.n_embd() == cfg["dim"].get<int32_t>());
    CHECK(model.n_heads() == cfg["n_heads"].get<int32_t>());
    CHECK(model.n_heads_kv() == cfg["n_kv_heads"].get<int32_t>());
    CHECK(model.n_ctx_train() == cfg["seq_len"].get<int32_t>());
    CHECK(model.n_experts() == 0);
    CHECK(model.n_params() > 0);
    CHECK(model.size_bytes() > 0);
    CHECK(model.kv_bytes_per_token() > 0);
    CHECK(model.architecture() == "llama");
    CHECK(model.token_bos() == 1);
    CHECK(model.is_eog(model.token_eos()));
    CHECK_FALSE(model.is_eog(model.token_bos()));
    CHECK(model.meta_value("general.architecture") == "llama");
    const auto md = model.metadata();
    REQUIRE(md.size() == size_t(model.meta_count()));
    REQUIRE(!md.empty());
    CHECK(md[0].first == model.meta_key(0));
    const auto missing = thrown_by([&] { (void)model.meta_value("no.such.key"); });
    CHECK(missing.status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE(contains(missing.what(), "no.such.key"), missing.what());

    const auto tok = model.tokenizer();
    CHECK(tok.n_vocab() == model.n_vocab());
    CHECK(tok.token_bos() == model.token_bos());
    for (const auto & p : st->ref["prompts"]) {
        const auto prompt = p["prompt"].get<std::string>();
        CAPTURE(prompt);
        const auto want = ids_of(p["prompt_ids"]); // BOS included
        CHECK(tok.encode(prompt) == want);
        CHECK(tok.encode(prompt, false) == std::vector<int32_t>(want.begin() + 1, want.end()));
        CHECK(tok.decode(want) == prompt); // a leading BOS renders as nothing
    }
    CHECK(tok.encode("<s>", false, true) == std::vector<int32_t>{1});
    CHECK(tok.encode("<s>", false, false).size() > 1);
    CHECK(tok.decode({1}, true) == "<s>");
    // the whole reference story back from its ids
    const auto & g = st->ref["greedy_from_bos"];
    CHECK(tok.decode(ids_of(g["generated_ids"])) == g["text"].get<std::string>());
    CHECK(tok.chat_format() == "none");

    // logits: empty before a prompt, [n_vocab] after, argmax = the greedy choice
    fr::session s(model);
    CHECK(s.logits().empty());
    s.prompt_tokens(ids_of(g["prompt_ids"]));
    const auto logits = s.logits();
    REQUIRE(logits.size() == size_t(model.n_vocab()));
    const auto argmax = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    CHECK(argmax == g["generated_ids"][0].get<int32_t>());
    const auto copy = logits.to_vector();
    CHECK(copy[size_t(argmax)] == logits[size_t(argmax)]);
#if __cplusplus >= 202002L
    const std::span<const float> span = s.logits();
    CHECK(span.size() == copy.size());
#endif
}

TEST_CASE("cxx wrapper: errors throw frugal::api::error with the status and a message naming the value" *
          doctest::timeout(60)) {
    // a missing file: the model and the tokenizer
    const auto missing = frugal::test::scratch_dir("cxx_wrapper") / "no-such-model.gguf";
    auto e = thrown_by([&] { (void)fr::model::load(missing.string()); });
    CHECK(e.status() == FRUGAL_ERR_IO);
    CHECK_MESSAGE(contains(e.what(), "no-such-model.gguf"), e.what());
    e = thrown_by([&] { (void)fr::tokenizer::load(missing.string()); });
    CHECK(e.status() == FRUGAL_ERR_IO);
    CHECK_MESSAGE(contains(e.what(), "no-such-model.gguf"), e.what());
    // ... also catchable as std::runtime_error
    CHECK_THROWS_AS((void)fr::model::load(missing.string()), std::runtime_error);

    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto want = ids_of(g["generated_ids"]);
    const auto model = fr::model::load(st->path);
    fr::session s(model);
    s.set_temperature(0);

    // next() before any prompt
    e = thrown_by([&] { (void)s.next(); });
    CHECK(e.status() == FRUGAL_ERR_INVALID_ARGUMENT);
    // an out-of-range token id: named; nothing evaluated
    for (const int32_t bad : {model.n_vocab(), -1}) {
        e = thrown_by([&] { s.prompt_tokens({1, 100, bad, 7}); });
        CHECK(e.status() == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(e.what(), std::to_string(bad)), e.what());
        CHECK(s.n_past() == 0);
    }
    // invalid UTF-8: the byte offset
    e = thrown_by([&] { s.prompt("Once upon\xff a time"); });
    CHECK(e.status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE(contains(e.what(), "9"), e.what());
    // a sampling knob out of range: its name and value; it does not take effect
    e = thrown_by([&] { s.set_top_p(1.5f); });
    CHECK(e.status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE(contains(e.what(), "top_p"), e.what());
    e = thrown_by([&] { s.set_top_k(-1); });
    CHECK_MESSAGE(contains(e.what(), "-1"), e.what());
    e = thrown_by([&] { s.set_param_f32(999, 1.0f); });
    CHECK_MESSAGE(contains(e.what(), "999"), e.what());
    // a context too small for a prompt
    fr::session small(model, 16);
    small.set_temperature(0);
    std::vector<int32_t> prompt = ids_of(g["prompt_ids"]);
    prompt.insert(prompt.end(), want.begin(), want.begin() + 9); // 10 tokens
    std::vector<int32_t> too_long = prompt;
    too_long.insert(too_long.end(), want.begin() + 9, want.begin() + 16); // 17 tokens
    e = thrown_by([&] { small.prompt_tokens(too_long); });
    CHECK(e.status() == FRUGAL_ERR_CONTEXT_FULL);
    CHECK_MESSAGE(contains(e.what(), "17"), e.what());
    CHECK_MESSAGE(contains(e.what(), "16"), e.what());
    CHECK(small.n_past() == 0);
    // the context filling up inside a range-for: the tokens that fit, then the exception
    small.prompt_tokens(prompt);
    std::vector<int32_t> ids;
    e = thrown_by([&] {
        for (const auto & t : small.tokens(100)) ids.push_back(t.id);
    });
    CHECK(e.status() == FRUGAL_ERR_CONTEXT_FULL);
    CHECK_MESSAGE(contains(e.what(), "16"), e.what());
    CHECK(ids == std::vector<int32_t>(want.begin() + 9, want.begin() + 15)); // 6 more fit
    CHECK(small.n_past() == 16);
    // reset makes room again
    small.reset();
    small.prompt_tokens(prompt);
    CHECK(small.next()->id == want[9]);

    // chat templates: the offending format or role
    const auto tok = model.tokenizer();
    e = thrown_by([&] { (void)tok.apply_chat_template({{"user", "hi"}}, true, "vicuna"); });
    CHECK(e.status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE(contains(e.what(), "'vicuna'"), e.what());
    e = thrown_by([&] { (void)tok.apply_chat_template({{"tool", "x"}}, true, "chatml"); });
    CHECK_MESSAGE(contains(e.what(), "'tool'"), e.what());
    e = thrown_by([&] { (void)tok.apply_chat_template({{"user", "hi"}}); }); // stories has no chat format
    CHECK_MESSAGE(contains(e.what(), "none"), e.what());
}

TEST_CASE("cxx wrapper: a model destroyed before its sessions and tokenizer, and moved-from objects" *
          doctest::timeout(60)) {
    // Greedy on the (random-weight) tiny llama: a fixed sequence to compare against.
    const auto reference = [] {
        const auto m = load_tiny(frugal::test::gguf::tiny_llama(), "tiny");
        fr::session s(m, 64);
        s.set_temperature(0);
        s.prompt("the cab");
        std::vector<int32_t> ids;
        for (const auto & t : s.tokens(24)) ids.push_back(t.id);
        return ids;
    }();
    REQUIRE(reference.size() == 24);

    fr::session s1, s2;
    fr::tokenizer tok;
    {
        auto m = load_tiny(frugal::test::gguf::tiny_llama(), "tiny");
        s1 = fr::session(m, 64);
        s2 = fr::session(m, 32);
        tok = m.tokenizer();
        fr::model other = std::move(m); // move construction
        m = std::move(other);            // move assignment back
        CHECK(m);
        CHECK_FALSE(other);
    } // the model's last C++ owner is gone; its sessions and tokenizer keep it alive
    std::vector<int32_t> ids;
    for (fr::session * s : {&s1, &s2}) {
        s->set_temperature(0);
        s->prompt("the cab");
        ids.clear();
        for (const auto & t : s->tokens(24)) ids.push_back(t.id);
        CHECK(ids == reference);
    }
    CHECK(tok.encode("the cab") == tok.encode("the cab", true, true));
    CHECK(tok.decode(tok.encode("the cab", false)) == "the cab");

    // A session moved mid-generation carries on where it was.
    s1.reset();
    s1.prompt("the cab");
    ids.clear();
    for (const auto & t : s1.tokens(10)) ids.push_back(t.id);
    fr::session moved = std::move(s1);
    for (const auto & t : moved.tokens(14)) ids.push_back(t.id);
    CHECK(ids == reference);

    // Moved-from objects: empty, safe to query, to call (throws) and to destroy.
    CHECK_FALSE(s1);
    CHECK(s1.handle() == nullptr);
    CHECK(s1.n_ctx() == 0);
    CHECK(s1.n_past() == 0);
    CHECK(s1.logits().empty());
    s1.cancel(); // a no-op
    CHECK(thrown_by([&] { (void)s1.next(); }).status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(thrown_by([&] { s1.prompt("x"); }).status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(thrown_by([&] {
              for (const auto & t : s1.tokens(4)) (void)t;
          }).status() == FRUGAL_ERR_INVALID_ARGUMENT);
    fr::tokenizer tok2 = std::move(tok);
    CHECK_FALSE(tok);
    CHECK(tok.n_vocab() == 0);
    CHECK(tok.chat_format() == "none");
    CHECK(thrown_by([&] { (void)tok.encode("x"); }).status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(tok2.n_vocab() > 0);
    fr::model empty;
    CHECK(empty.n_vocab() == 0);
    CHECK(empty.architecture().empty());
    CHECK(empty.token_bos() == -1);
    CHECK(thrown_by([&] { (void)empty.tokenizer(); }).status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(thrown_by([&] { fr::session bad(empty); }).status() == FRUGAL_ERR_INVALID_ARGUMENT);

    // Assigning over a live session frees the old one; release() and adoption round-trip.
    moved = std::move(s2);
    frugal_session * raw = moved.release();
    CHECK_FALSE(moved);
    fr::session adopted(raw);
    CHECK(adopted.n_ctx() == 32);
}

TEST_CASE("cxx wrapper: a token whose text spans </think> gives two parts, and parts(n) counts tokens" *
          doctest::timeout(60)) {
    // Greedy always takes token 0, whose text closes the reasoning mid-token.
    namespace g = frugal::test::gguf;
    const auto model = tiny_flat("closes-think", [](g::builder & b, std::vector<std::string> & tokens) {
        tokens[0] = "ab</think>cd";
        b.get("tokenizer.ggml.token_type").items[0] = g::i32(1); // normal
        b.set("tokenizer.ggml.unknown_token_id", g::u32(2));
    });
    fr::session s(model, 32);
    s.set_temperature(0);
    s.prompt("<think>");
    using kind = fr::text_kind;
    auto collect = [&](size_t n) {
        std::vector<std::pair<kind, std::string>> out;
        for (const auto & p : s.parts(n)) {
            CHECK(p.id == 0);
            out.emplace_back(p.kind, p.text);
        }
        return out;
    };
    using parts = std::vector<std::pair<kind, std::string>>;
    // one token: its first part only; the second waits for the next pull, without sampling
    CHECK(collect(1) == parts{{kind::reasoning, "ab"}});
    const int32_t n_past = s.n_past();
    const auto rest = s.next_part();
    REQUIRE(rest.has_value());
    CHECK(rest->kind == kind::content);
    CHECK(rest->text == "cd");
    CHECK(s.n_past() == n_past);
    // later tokens: the stray </think> is dropped; two tokens, two parts
    CHECK(collect(2) == parts{{kind::content, "abcd"}, {kind::content, "abcd"}});
    // from a fresh prompt, two tokens give three parts
    s.reset();
    s.prompt("<think>");
    CHECK(collect(2) == parts{{kind::reasoning, "ab"}, {kind::content, "cd"}, {kind::content, "abcd"}});
}

TEST_CASE("cxx wrapper: the end of generation ends the range after the text it releases" *
          doctest::timeout(60)) {
    namespace g = frugal::test::gguf;
    // 1. token 0 is the end-of-generation token: nothing is generated.
    {
        const auto model = tiny_flat("eog-first", [](g::builder & b, std::vector<std::string> & tokens) {
            tokens[0] = "ab";
            b.get("tokenizer.ggml.token_type").items[0] = g::i32(1);
            b.set("tokenizer.ggml.unknown_token_id", g::u32(2));
            b.set("tokenizer.ggml.eos_token_id", g::u32(0));
        });
        REQUIRE(model.is_eog(0));
        fr::session s(model, 32);
        s.set_temperature(0);
        s.prompt("the");
        for (const auto & t : s.tokens(8)) FAIL("token " << t.id);
        CHECK(s.done());
        CHECK_FALSE(s.next().has_value());
        for (const auto & p : s.parts(8)) FAIL("part " << p.text);
        s.prompt("the");
        CHECK_FALSE(s.done());
    }
    // 2. Tokens 0 and 1 tie and are sampled at random (top_k 2); token 1 ends the generation, and
    //    releases what was held back: an incomplete character (token 0 is the byte 0xE2) for
    //    tokens, the whitespace closing the reasoning (token 0 is "ab ") for parts.
    for (const bool byte : {true, false}) {
        CAPTURE(byte);
        const auto model = tiny_flat(byte ? "eog-byte" : "eog-space", [&](g::builder & b, std::vector<std::string> & tokens) {
            auto & types = b.get("tokenizer.ggml.token_type").items;
            if (byte) {
                tokens[0] = "<0xE2>";
                types[0] = g::i32(6); // byte
                tokens[3 + 0xE2] = "zz";
                types[3 + 0xE2] = g::i32(1);
            } else {
                tokens[0] = "ab\xE2\x96\x81"; // "ab" + SentencePiece's space
                types[0] = g::i32(1);
            }
            b.set("tokenizer.ggml.unknown_token_id", g::u32(2));
            b.set("tokenizer.ggml.bos_token_id", g::u32(2));
            b.set("tokenizer.ggml.eos_token_id", g::u32(1));
        });
        REQUIRE(model.is_eog(1));
        const std::string prompt = byte ? "a" : "<think>\n";
        // a seed whose generation has at least two tokens before the end
        bool found = false;
        for (int64_t seed = 1; seed <= 64 && !found; ++seed) {
            fr::session s(model, 48);
            s.set_temperature(1).set_top_k(2).set_seed(seed);
            s.prompt(prompt);
            std::vector<int32_t> ids;
            std::string text, last_text;
            if (byte) {
                for (const auto & t : s.tokens(40)) {
                    ids.push_back(t.id);
                    text += t.text;
                    last_text = t.text;
                }
            } else {
                for (const auto & p : s.parts(40)) {
                    CHECK(p.kind == fr::text_kind::reasoning);
                    ids.push_back(p.id);
                    text += p.text;
                    last_text = p.text;
                }
            }
            if (!s.done() || ids.size() < 3) continue;
            found = true;
            CAPTURE(seed);
            CAPTURE(text);
            // the last item is the end-of-generation token with the released text
            CHECK(ids.back() == 1);
            CHECK_FALSE(last_text.empty());
            CHECK(std::count(ids.begin(), ids.end(), 1) == 1);
            if (byte) {
                CHECK(last_text == "\xEF\xBF\xBD"); // U+FFFD for the lone lead byte
            } else {
                CHECK(last_text == " ");
                CHECK(text.substr(0, 2) == "ab");
            }
            // With a budget that ends exactly on that last item, the end is reported by the next pull.
            fr::session again(model, 48);
            again.set_temperature(1).set_top_k(2).set_seed(seed);
            again.prompt(prompt);
            size_t n = 0;
            if (byte)
                for (const auto & t : again.tokens(ids.size())) n += t.id >= 0;
            else
                for (const auto & p : again.parts(ids.size())) n += p.id >= 0;
            CHECK(n == ids.size());
            CHECK(again.done());
            CHECK_FALSE(again.next().has_value());
        }
        CHECK(found);
    }
}

TEST_CASE("cxx wrapper: tokenizer from a Hugging Face folder (DeepSeek-V3) and chat templates" *
          doctest::timeout(60)) {
    const auto dir = frugal::test::shared_data("tokenizers/deepseek-v3");
    if (!dir) FRUGAL_SKIP("../shared/data/tokenizers/deepseek-v3 is absent");
    const auto tok = fr::tokenizer::load(dir->string());
    CHECK(tok.encode("Hello world") == std::vector<int32_t>{0, 19923, 2058});
    CHECK(tok.encode("Hello world", false) == std::vector<int32_t>{19923, 2058});
    CHECK(tok.n_vocab() == 128815);
    CHECK(tok.token_bos() == 0);
    CHECK(tok.chat_format() == "deepseek-v3");
    CHECK(tok.decode({19923, 2058}) == "Hello world");
    const std::array<int32_t, 2> arr{19923, 2058};
    CHECK(tok.decode(arr) == "Hello world");
    CHECK(tok.decode(arr.data(), arr.size()) == "Hello world");
    // long tokens: more text than the first buffer guess (4 bytes per token)
    const std::string dashes(300, '-');
    const auto ids = tok.encode(dashes, false);
    CHECK(ids.size() * 4 + 16 < dashes.size());
    CHECK(tok.decode(ids) == dashes);
    // invalid UTF-8 names the offset
    const auto e = thrown_by([&] { (void)tok.encode("Hello \xC3("); });
    CHECK(e.status() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE(contains(e.what(), "6"), e.what());

    // chat templates: the tokenizer's own (V3) and a forced one
    const std::vector<fr::message> conv = {{"system", "Be brief."}, {"user", "2+2?"}};
    const std::string bos = "<\uFF5Cbegin\u2581of\u2581sentence\uFF5C>", user = "<\uFF5CUser\uFF5C>",
                      assistant = "<\uFF5CAssistant\uFF5C>";
    CHECK(tok.apply_chat_template(conv) == bos + "Be brief." + user + "2+2?" + assistant);
    CHECK(tok.apply_chat_template(conv, false) == bos + "Be brief." + user + "2+2?");
    CHECK(tok.apply_chat_template(conv, true, "chatml") ==
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
    // a long conversation (the rendered text is larger than any fixed buffer)
    std::vector<fr::message> long_conv;
    for (int i = 0; i < 200; ++i) long_conv.push_back({i % 2 ? "assistant" : "user", std::string(100, char('a' + i % 26))});
    const auto text = tok.apply_chat_template(long_conv, true);
    CHECK(text.size() > 200 * 100);
    CHECK(text.substr(text.size() - assistant.size()) == assistant);
}

TEST_CASE("cxx wrapper: progress and log callbacks, whose exceptions never cross the C ABI" * doctest::timeout(60)) {
    namespace g = frugal::test::gguf;
    const auto path = frugal::test::scratch_dir("cxx_wrapper") / ("callbacks." + std::to_string(::getpid()) + ".gguf");
    g::tiny_llama_params params;
    params.n_layer = 3;
    g::write_file(path, g::tiny_llama(params).build());
    struct cleanup {
        std::filesystem::path p;
        ~cleanup() {
            std::filesystem::remove(p);
            fr::set_log_callback(nullptr, FRUGAL_LOG_LEVEL_WARN);
        }
    } cleanup_{path};

    // progress: fractions up to 1; false stops the load; an exception comes out of load unchanged
    fr::model_options o;
    std::vector<float> seen;
    o.progress = [&](float f) {
        seen.push_back(f);
        return true;
    };
    CHECK(fr::model::load(path.string(), o));
    REQUIRE(!seen.empty());
    CHECK(seen.back() == 1.0f);
    o.progress = [](float) { return false; };
    const auto e = thrown_by([&] { (void)fr::model::load(path.string(), o); });
    CHECK(e.status() == FRUGAL_ERR_CANCELLED);
    o.progress = [](float f) -> bool {
        if (f > 0.3f) throw std::logic_error("stop at " + std::to_string(f));
        return true;
    };
    CHECK_THROWS_WITH_AS((void)fr::model::load(path.string(), o), doctest::Contains("stop at"), std::logic_error);

    // log: the loader's debug line names the file; a throwing logger is ignored; unset restores
    struct sink {
        std::mutex mu;
        std::vector<std::string> lines;
    };
    auto log = std::make_shared<sink>();
    fr::set_log_callback(
        [log](int32_t level, std::string_view message) {
            std::lock_guard<std::mutex> lock(log->mu);
            log->lines.push_back(std::to_string(level) + " " + std::string(message));
        },
        FRUGAL_LOG_LEVEL_DEBUG);
    (void)fr::model::load(path.string());
    {
        std::lock_guard<std::mutex> lock(log->mu);
        const bool named = std::any_of(log->lines.begin(), log->lines.end(),
                                       [&](const std::string & l) { return contains(l, path.filename().string()); });
        CHECK_MESSAGE(named, log->lines.size() << " lines");
    }
    fr::set_log_callback([](int32_t, std::string_view) { throw std::runtime_error("logger failed"); },
                         FRUGAL_LOG_LEVEL_DEBUG);
    CHECK(fr::model::load(path.string())); // the exception stays in the callback
    const size_t before = log->lines.size();
    fr::set_log_callback(nullptr);
    (void)fr::model::load(path.string());
    CHECK(log->lines.size() == before);
}

TEST_CASE("cxx wrapper: stories260K cancel from another thread throws FRUGAL_ERR_CANCELLED" *
          doctest::timeout(120)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto want = ids_of(g["generated_ids"]);
    const auto model = fr::model::load(st->path);
    fr::session s(model);
    s.set_temperature(0).set_n_threads(1);
    std::vector<int32_t> long_prompt = ids_of(g["prompt_ids"]);
    long_prompt.insert(long_prompt.end(), want.begin(), want.end());
    long_prompt.insert(long_prompt.end(), want.begin(), want.begin() + 200);
    REQUIRE(long_prompt.size() + 16 < size_t(s.n_ctx()));
    s.cancel(); // idle: a no-op
    s.prompt_tokens({model.token_bos()});

    std::atomic<bool> stop{false};
    const fr::session & shared = s;
    std::thread canceller([&] {
        std::mt19937 rng(11);
        while (!stop.load()) {
            shared.cancel();
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 1500));
        }
    });
    // Every call either completes or throws FRUGAL_ERR_CANCELLED (with a message): a long prompt,
    // then (from a short one, retried until it completes) a range-for over tokens.
    int n_cancelled = 0, n_cancelled_in_range = 0, n_done = 0;
    std::vector<std::string> bad;
    auto attempt = [&](auto && body) {
        try {
            body();
            ++n_done;
            return true;
        } catch (const fr::error & e) {
            if (e.status() == FRUGAL_ERR_CANCELLED && !std::string(e.what()).empty())
                ++n_cancelled;
            else
                bad.push_back(std::to_string(e.status()) + " " + e.what());
            return false;
        }
    };
    for (int round = 0; round < 40 && bad.empty() && (n_cancelled < 4 || n_cancelled_in_range < 1); ++round) {
        s.reset();
        attempt([&] { s.prompt_tokens(long_prompt); });
        s.reset();
        for (int i = 0; i < 1000 && !attempt([&] { s.prompt_tokens({model.token_bos()}); }); ++i) {
        }
        if (!attempt([&] {
                for (const auto & t : s.tokens(200)) (void)t;
            }))
            ++n_cancelled_in_range;
    }
    stop = true;
    canceller.join();
    MESSAGE(n_cancelled << " calls cancelled (" << n_cancelled_in_range << " in a range-for), " << n_done
                        << " completed");
    for (const auto & b : bad) MESSAGE(b);
    CHECK(bad.empty());
    CHECK(n_cancelled > 0);
    CHECK(n_cancelled_in_range > 0);
    // the session is intact: the reference after a reset
    s.reset();
    s.prompt_tokens(ids_of(g["prompt_ids"]));
    std::vector<int32_t> ids;
    for (const auto & t : s.tokens(32)) ids.push_back(t.id);
    CHECK(ids == std::vector<int32_t>(want.begin(), want.begin() + 32));
}

TEST_CASE("cxx wrapper: stories260K sampling with a seed is reproducible across reset" * doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    const auto model = fr::model::load(st->path);
    fr::session s(model);
    auto sample = [&] {
        s.prompt_tokens({model.token_bos()});
        std::string text;
        for (const auto & t : s.tokens(64)) text += t.text;
        return text;
    };
    s.set_temperature(0.8f).set_top_p(0.9f).set_min_p(0.05f).set_repeat_penalty(1.1f).set_repeat_last_n(32).set_seed(
        1234);
    const auto first = sample();
    s.reset(); // reseeds: the same stream again
    CHECK(sample() == first);
    s.reset();
    s.set_seed(4321);
    CHECK(sample() != first);
}
