// tokenizer_test.cpp - SentencePiece encoding against llama.cpp's ids (stories260K, llama-spm
// vectors), gpt2 decoding, streaming UTF-8, error paths. Cases that need ../shared skip without it.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/test_support.hpp"
#include "runtime/tokenizer.hpp"
#include "util/error.hpp"

using frugal::status;
using frugal::token_attr;
using frugal::tokenizer;
using frugal::vocab;

namespace {

std::string read_text(const std::filesystem::path & p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE_MESSAGE(in, "cannot open " << p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

tokenizer load(const std::filesystem::path & gguf_path) {
    const auto f = frugal::gguf::file::open(gguf_path.string());
    return tokenizer(vocab::from_gguf(*f));
}

// Runs f, which must throw frugal::error with `code` and a message containing `needle`.
template <class F>
void check_throws(F && f, status code, std::string_view needle) {
    bool thrown = false;
    try {
        f();
    } catch (const frugal::error & e) {
        thrown = true;
        CHECK(int(e.code()) == int(code));
        CHECK_MESSAGE(std::string_view(e.what()).find(needle) != std::string_view::npos, e.what());
    }
    CHECK_MESSAGE(thrown, "no frugal::error, wanted one mentioning '" << needle << "'");
}

// llama.cpp's test-tokenizer-0 files: X.inp holds strings each followed by "\n__ggml_vocab_test__\n",
// X.out one line of space-separated ids per string.
struct vocab_case {
    std::string text;
    std::vector<int32_t> ids;
};
std::vector<vocab_case> read_vocab_cases(const std::filesystem::path & inp, const std::filesystem::path & out) {
    const std::string sep = "\n__ggml_vocab_test__\n";
    const std::string in_text = read_text(inp);
    std::vector<std::string> texts;
    for (size_t pos = 0, hit; (hit = in_text.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
        texts.push_back(in_text.substr(pos, hit - pos));
    std::istringstream lines(read_text(out));
    std::vector<vocab_case> cases;
    for (const auto & t : texts) {
        std::string line;
        REQUIRE_MESSAGE(std::getline(lines, line), out << " has fewer lines than " << inp << " has strings");
        std::istringstream ids(line);
        vocab_case c{t, {}};
        for (int32_t id; ids >> id;) c.ids.push_back(id);
        cases.push_back(std::move(c));
    }
    return cases;
}

std::string show(const std::vector<int32_t> & ids) {
    std::string s;
    for (auto id : ids) s += std::to_string(id) + " ";
    return s;
}

// A small hand-made SPM vocab: <unk> <s> </s>, 256 byte tokens, then a few pieces.
vocab tiny_spm(const std::vector<std::pair<std::string, float>> & pieces) {
    vocab v;
    v.model = "llama";
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.attrs = {token_attr::unknown, token_attr::control, token_attr::control};
    for (int b = 0; b < 256; ++b) {
        v.tokens.push_back(fmt::format("<0x{:02X}>", b));
        v.attrs.push_back(token_attr::byte);
    }
    v.scores.assign(v.tokens.size(), 0.0f);
    for (const auto & [text, score] : pieces) {
        v.tokens.push_back(text);
        v.scores.push_back(score);
        v.attrs.push_back(token_attr::normal);
    }
    v.bos = 1;
    v.eos = 2;
    v.unk = 0;
    return v;
}

int32_t id_of(const tokenizer & t, std::string_view text) {
    const auto & toks = t.get_vocab().tokens;
    const auto it = std::find(toks.begin(), toks.end(), text);
    REQUIRE(it != toks.end());
    return int32_t(it - toks.begin());
}

} // namespace

TEST_CASE("tokenizer: stories260K prompts encode to llama.cpp's ids, greedy ids decode to the text" *
          doctest::timeout(60)) {
    const auto gguf_path = frugal::test::shared_data("stories260K/stories260K.gguf");
    const auto ref_path = frugal::test::shared_data("stories260K/reference.json");
    if (!gguf_path || !ref_path) FRUGAL_SKIP("../shared/data/stories260K is absent");
    const tokenizer tok = load(*gguf_path);
    CHECK(tok.n_vocab() == 512);
    const auto ref = nlohmann::json::parse(read_text(*ref_path));

    int matched = 0;
    for (const auto & p : ref.at("prompts")) {
        const std::string prompt = p.at("prompt");
        const auto want = p.at("prompt_ids").get<std::vector<int32_t>>();
        const auto got = tok.encode(prompt, true, false);
        CHECK_MESSAGE(got == want, "prompt '" << prompt << "': got " << show(got) << "want " << show(want));
        matched += got == want;
        // prompt ids (BOS first) + continuation decode back to prompt + continuation text
        auto all = want;
        const auto gen = p.at("generated_ids").get<std::vector<int32_t>>();
        all.insert(all.end(), gen.begin(), gen.end());
        CHECK(tok.decode(all) == prompt + p.at("generated_text").get<std::string>());
    }
    MESSAGE("stories260K prompts " << matched << "/" << ref.at("prompts").size());

    const auto & greedy = ref.at("greedy_from_bos");
    const auto ids = greedy.at("generated_ids").get<std::vector<int32_t>>();
    CHECK(tok.decode(ids) == greedy.at("text").get<std::string>());

    CHECK(tok.is_eog(2));
    CHECK_FALSE(tok.is_eog(1));
    CHECK(tok.encode("", true, false) == std::vector<int32_t>{1});
    CHECK(tok.encode("<s>Lily", false, true) == std::vector<int32_t>{1, 317}); // space prefix after a special
    CHECK(tok.token_to_piece(1) == "");
    CHECK(tok.token_to_piece(1, true) == "<s>");
}

TEST_CASE("tokenizer: llama-spm matches llama.cpp's test-tokenizer-0 vectors" * doctest::timeout(60)) {
    const auto gguf_path = frugal::test::shared_data("llamacpp-vocab-tests/ggml-vocab-llama-spm.gguf");
    if (!gguf_path) FRUGAL_SKIP("../shared/data/llamacpp-vocab-tests is absent");
    const tokenizer tok = load(*gguf_path);
    CHECK(tok.n_vocab() == 32000);
    for (const std::string dir : {"llamacpp-vocab-tests", "llamacpp-vocab-tests/v2025-05"}) {
        const auto inp = frugal::test::shared_data(dir + "/ggml-vocab-llama-spm.gguf.inp");
        const auto out = frugal::test::shared_data(dir + "/ggml-vocab-llama-spm.gguf.out");
        if (!inp || !out) continue;
        const auto cases = read_vocab_cases(*inp, *out);
        CHECK(cases.size() == 46);
        int matched = 0;
        for (const auto & c : cases) {
            // as test-tokenizer-0: no BOS/EOS, special texts not parsed
            const auto got = tok.encode(c.text, false, false);
            CHECK_MESSAGE(got == c.ids, "'" << c.text << "': got " << show(got) << "want " << show(c.ids));
            matched += got == c.ids;
            CHECK_MESSAGE(tok.decode(c.ids) == c.text, "decode of '" << c.text << "'");
        }
        MESSAGE(dir << " llama-spm " << matched << "/" << cases.size());
    }
}

TEST_CASE("tokenizer: gpt2 vocab decodes llama.cpp's ids back to the text, encode is unsupported" *
          doctest::timeout(60)) {
    const auto gguf_path = frugal::test::shared_data("llamacpp-vocab-tests/ggml-vocab-gpt-2.gguf");
    if (!gguf_path) FRUGAL_SKIP("../shared/data/llamacpp-vocab-tests is absent");
    const tokenizer tok = load(*gguf_path);
    const auto & v = tok.get_vocab();
    CHECK(v.model == "gpt2");
    CHECK(v.pre == "gpt-2");
    CHECK(tok.n_vocab() == 50257);
    CHECK(v.merges.size() == 50000);
    CHECK_FALSE(v.add_bos);
    CHECK_FALSE(v.add_space_prefix);
    CHECK(tok.is_eog(50256));

    const auto cases = read_vocab_cases(*frugal::test::shared_data("llamacpp-vocab-tests/ggml-vocab-gpt-2.gguf.inp"),
                                        *frugal::test::shared_data("llamacpp-vocab-tests/ggml-vocab-gpt-2.gguf.out"));
    int matched = 0;
    for (const auto & c : cases) {
        std::string pieces;
        for (const int32_t id : c.ids) pieces += tok.token_to_piece(id);
        const std::string decoded = tok.decode(c.ids);
        CHECK_MESSAGE(decoded == c.text, "ids " << show(c.ids));
        CHECK(pieces == decoded);
        matched += decoded == c.text;
    }
    MESSAGE("gpt-2 decode " << matched << "/" << cases.size());

    CHECK(tok.token_to_piece(50256) == "");
    CHECK(tok.token_to_piece(50256, true) == "<|endoftext|>");
    check_throws([&] { (void)tok.encode("Hello", false, false); }, status::unsupported_model,
                 "pre-tokenizer 'gpt-2') is not implemented yet");
}

TEST_CASE("tokenizer: merges take the best score (leftmost on ties), bytes fall back" * doctest::timeout(60)) {
    auto v = tiny_spm({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -2}, {"bc", -2}, {"\xE2\x96\x81", -3}});
    v.add_space_prefix = false;
    const tokenizer equal(v);
    const int32_t a = id_of(equal, "a"), c = id_of(equal, "c"), ab = id_of(equal, "ab"), bc = id_of(equal, "bc");
    CHECK(equal.encode("abc", false, false) == std::vector<int32_t>{ab, c});

    v.scores[size_t(bc)] = -1.5f;
    const tokenizer prefer_bc(v);
    CHECK(prefer_bc.encode("abc", false, false) == std::vector<int32_t>{a, bc});

    // "é" (C3 A9) and "x" are not pieces: one byte token per byte
    CHECK(equal.encode("\xC3\xA9x", false, false) == std::vector<int32_t>{3 + 0xC3, 3 + 0xA9, 3 + 'x'});
    CHECK(equal.decode(std::vector<int32_t>{3 + 0xC3, 3 + 0xA9, 3 + 'x'}) == "\xC3\xA9x");

    v.add_space_prefix = true;
    const tokenizer spaced(v);
    const int32_t space = id_of(spaced, "\xE2\x96\x81");
    CHECK(spaced.encode("a b", true, false) == std::vector<int32_t>{1, space, a, space, id_of(spaced, "b")});
    CHECK(spaced.decode(spaced.encode("a b", true, false)) == "a b");
    CHECK(spaced.decode(spaced.encode("a b", true, false), true) == "<s> a b");
    // control texts split only with parse_special
    CHECK(spaced.encode("a</s>", false, true) == std::vector<int32_t>{space, a, 2});
    CHECK(spaced.encode("a</s>", false, false).size() > 3);
}

TEST_CASE("tokenizer: utf8_stream emits only whole characters for every split" * doctest::timeout(60)) {
    const std::string text = "h\xC3\xA9llo \xE2\x98\x83 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\xA6\x99"
                             "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7!";
    REQUIRE(frugal::is_valid_utf8(text));
    int checked = 0;
    for (size_t i = 0; i <= text.size(); ++i) {
        for (size_t j = i; j <= text.size(); ++j) {
            frugal::utf8_stream s;
            std::string got;
            for (const std::string_view part : {std::string_view(text).substr(0, i),
                                                std::string_view(text).substr(i, j - i),
                                                std::string_view(text).substr(j)}) {
                const std::string piece = s.push(part);
                CHECK(frugal::is_valid_utf8(piece));
                got += piece;
            }
            got += s.flush();
            CHECK(got == text);
            ++checked;
        }
    }
    MESSAGE("utf8_stream splits checked: " << checked);

    frugal::utf8_stream byte_by_byte;
    std::string got;
    for (const char ch : text) got += byte_by_byte.push(std::string_view(&ch, 1));
    CHECK(got == text);
    CHECK(byte_by_byte.flush().empty());

    // invalid sequences become U+FFFD; an unfinished tail only at flush
    frugal::utf8_stream bad;
    CHECK(bad.push("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
    CHECK(bad.push("\xE2\x98") == "");
    CHECK(bad.flush() == "\xEF\xBF\xBD");
    CHECK(bad.push("\xE2\x98x") == "\xEF\xBF\xBDx");
    CHECK(bad.flush().empty());
}

TEST_CASE("tokenizer: invalid utf-8 and bad ids are errors" * doctest::timeout(60)) {
    size_t off = 0;
    CHECK_FALSE(frugal::is_valid_utf8("ab\xC3(", &off));
    CHECK(off == 2);
    CHECK_FALSE(frugal::is_valid_utf8("\xED\xA0\x80", &off)); // surrogate
    CHECK_FALSE(frugal::is_valid_utf8("\xC0\xAF", &off));     // overlong
    CHECK_FALSE(frugal::is_valid_utf8("\xF4\x90\x80\x80", &off)); // above U+10FFFF
    CHECK_FALSE(frugal::is_valid_utf8("x\xF0\x9F\xA6", &off)); // truncated
    CHECK(off == 1);
    CHECK(frugal::is_valid_utf8(std::string_view("\0\x7F\xF4\x8F\xBF\xBF", 6)));

    const tokenizer tok(tiny_spm({{"a", -1}}));
    check_throws([&] { (void)tok.encode("abc\xFF" "d", true, false); }, status::invalid_argument, "byte offset 3");
    for (const int32_t bad : {-1, tok.n_vocab(), 1 << 30}) {
        check_throws([&] { (void)tok.token_to_piece(bad); }, status::invalid_argument,
                     fmt::format("token id {} is out of range", bad));
        check_throws([&] { (void)tok.decode(std::vector<int32_t>{3, bad}); }, status::invalid_argument, "out of range");
        CHECK_FALSE(tok.is_eog(bad));
    }

    auto v = tiny_spm({});
    v.eos = int32_t(v.tokens.size());
    check_throws([&] { tokenizer t(v); }, status::invalid_model, "eos id 259 is out of range");
    v = tiny_spm({});
    v.scores.pop_back();
    check_throws([&] { tokenizer t(v); }, status::invalid_model, "258 scores");
    v = tiny_spm({});
    v.model = "bert";
    check_throws([&] { tokenizer t(v); }, status::unsupported_model, "'bert'");
}
