// tokenizer_test.cpp - SentencePiece and byte-level BPE encoding against llama.cpp's ids
// (stories260K, llama.cpp's test-tokenizer-0 vectors, llama.cpp itself on the tiny models' truncated
// real vocabularies), gpt2 decoding, streaming UTF-8, error paths. Cases that need ../shared or the
// llama.cpp peer skip without them.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/test_support.hpp"
#include "common/tokenizer_cases.hpp"
#include "runtime/tokenizer.hpp"
#include "util/error.hpp"

using frugal::status;
using frugal::token_attr;
using frugal::tokenizer;
using frugal::vocab;
using frugal::test::check_throws;
using frugal::test::read_text;
using frugal::test::read_vocab_cases;
using frugal::test::sh_quote;
using frugal::test::show;

namespace {

tokenizer load(const std::filesystem::path & gguf_path) {
    const auto f = frugal::gguf::file::open(gguf_path.string());
    return tokenizer(vocab::from_gguf(*f));
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

// GPT-2's byte-level character for a raw byte, UTF-8: printable bytes stand for themselves, the
// other 68 become U+0100.. in byte order.
std::string gpt2_char(uint8_t byte) {
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
    int cp = byte;
    if (!printable(byte)) {
        cp = 256;
        for (int b = 0; b < byte; ++b) cp += !printable(b);
    }
    if (cp < 0x80) return std::string(1, char(cp));
    return {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
}

// A small hand-made gpt2 vocab: <|endoftext|> (control), the 256 byte-level characters, `extra`
// (normal), and the merges in rank order.
vocab tiny_bpe(std::string pre, const std::vector<std::string> & extra, const std::vector<std::string> & merges) {
    vocab v;
    v.model = "gpt2";
    v.pre = std::move(pre);
    v.tokens = {"<|endoftext|>"};
    v.attrs = {token_attr::control};
    for (int b = 0; b < 256; ++b) {
        v.tokens.push_back(gpt2_char(uint8_t(b)));
        v.attrs.push_back(token_attr::normal);
    }
    for (const auto & t : extra) {
        v.tokens.push_back(t);
        v.attrs.push_back(token_attr::normal);
    }
    v.scores.assign(v.tokens.size(), 0.0f);
    v.merges = merges;
    v.bos = v.eos = 0;
    v.add_bos = false;
    v.add_space_prefix = false;
    return v;
}

// The "tokens" array of llamacpp-logits --tokenize output (the rest may hold text that is not UTF-8).
std::vector<int32_t> read_oracle_tokens(const std::filesystem::path & p) {
    const std::string json = read_text(p);
    const std::string key = "\"tokens\":[";
    const size_t at = json.find(key);
    REQUIRE_MESSAGE(at != std::string::npos, p << " has no tokens array: " << json.substr(0, 200));
    const size_t end = json.find(']', at);
    REQUIRE(end != std::string::npos);
    std::string list = json.substr(at + key.size(), end - at - key.size());
    std::replace(list.begin(), list.end(), ',', ' ');
    std::istringstream in(list);
    std::vector<int32_t> ids;
    for (int32_t id; in >> id;) ids.push_back(id);
    return ids;
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

TEST_CASE("tokenizer: gpt2 vocab decodes llama.cpp's ids back to the text" * doctest::timeout(60)) {
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

    // a pre-tokenizer without regexes here: decoding works, encoding says which one is missing
    auto other = v;
    other.pre = "tekken";
    const tokenizer unknown_pre(other);
    CHECK(unknown_pre.decode(cases[0].ids) == cases[0].text);
    check_throws([&] { (void)unknown_pre.encode("Hello", false, false); }, status::unsupported_model,
                 "pre-tokenizer 'tekken' is not supported");
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

TEST_CASE("tokenizer: byte-level BPE matches llama.cpp's test-tokenizer-0 vectors" * doctest::timeout(120)) {
    if (!frugal::test::shared_data("llamacpp-vocab-tests"))
        FRUGAL_SKIP("../shared/data/llamacpp-vocab-tests is absent");
    for (const std::string name : {"gpt-2", "deepseek-llm", "deepseek-coder"}) {
        const auto gguf_path = frugal::test::shared_data("llamacpp-vocab-tests/ggml-vocab-" + name + ".gguf");
        REQUIRE_MESSAGE(gguf_path, "ggml-vocab-" << name << ".gguf is missing");
        const tokenizer tok = load(*gguf_path);
        CHECK(tok.get_vocab().pre == name);
        for (const std::string dir : {"llamacpp-vocab-tests", "llamacpp-vocab-tests/v2025-05"}) {
            const auto inp = frugal::test::shared_data(dir + "/ggml-vocab-" + name + ".gguf.inp");
            const auto out = frugal::test::shared_data(dir + "/ggml-vocab-" + name + ".gguf.out");
            REQUIRE((inp && out));
            const auto cases = read_vocab_cases(*inp, *out);
            CHECK(cases.size() == 46);
            int matched = 0;
            for (const auto & c : cases) {
                // as test-tokenizer-0: no BOS/EOS, special texts not parsed
                const auto got = tok.encode(c.text, false, false);
                CHECK_MESSAGE(got == c.ids, name << " '" << c.text << "': got " << show(got) << "want " << show(c.ids));
                matched += got == c.ids;
                CHECK(tok.decode(got) == c.text);
            }
            MESSAGE(dir << " " << name << " " << matched << "/" << cases.size());
        }
        if (tok.get_vocab().add_bos) {
            const auto with_bos = tok.encode("Hello", true, false);
            REQUIRE(!with_bos.empty());
            CHECK(with_bos[0] == tok.get_vocab().bos);
        }
    }
}

TEST_CASE("tokenizer: byte-level BPE matches llama.cpp on the tiny qwen2, llama and deepseek3 vocabularies" *
          doctest::timeout(600)) {
    const auto shared = frugal::test::shared_dir();
    if (!shared) FRUGAL_SKIP("../shared is absent");
    const auto tools = *shared / "tools";
    const std::string oracle = sh_quote(tools / "llamacpp-logits");
    if (std::system((oracle + " --version >/dev/null 2>&1").c_str()) != 0)
        FRUGAL_SKIP("llamacpp-logits or its llama.cpp peer is not available (run ../shared/tools/setup-peer.sh)");

    struct target {
        std::string model, cases, vocab_test; // tiny model, tokenizers/<cases>, llamacpp-vocab-tests/<vocab_test>
    };
    const target targets[] = {{"tiny-qwen2-f32", "qwen2", "qwen2"},
                              {"tiny-llama-f32", "llama3", "llama-bpe"},
                              {"tiny-deepseek3-f32", "deepseek-v3", "deepseek-llm"}};
    // Models made once per build tree: random weights around the real tokenizers cut to 8000 ids + specials.
    const auto dir = frugal::test::scratch_dir("tokenizer_bpe");
    bool have_all = true;
    for (const auto & t : targets) have_all = have_all && std::filesystem::exists(dir / (t.model + ".gguf"));
    if (!have_all) {
        std::string cmd = "PYTHONDONTWRITEBYTECODE=1 " + sh_quote(tools / "make_models.py") + " --out " + sh_quote(dir);
        for (const auto & t : targets) cmd += " " + t.model;
        cmd += " >" + sh_quote(dir / "make_models.log") + " 2>&1";
        REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "make_models.py failed, see " << dir / "make_models.log");
    }

    for (const auto & t : targets) {
        const auto model = dir / (t.model + ".gguf");
        const tokenizer tok = load(model);
        const auto & v = tok.get_vocab();

        // texts: every cases.jsonl text, llama.cpp's test-tokenizer-0 strings, edge cases
        std::vector<std::pair<std::string, std::string>> texts; // source, text
        const auto cases_path = frugal::test::shared_data("tokenizers/" + t.cases + "/cases.jsonl");
        REQUIRE(cases_path);
        for (const auto & c : frugal::test::read_hf_cases(*cases_path)) texts.emplace_back("cases.jsonl", c.text);
        const std::string vt = "llamacpp-vocab-tests/ggml-vocab-" + t.vocab_test + ".gguf";
        const auto inp = frugal::test::shared_data(vt + ".inp");
        const auto out = frugal::test::shared_data(vt + ".out");
        REQUIRE((inp && out));
        for (const auto & c : read_vocab_cases(*inp, *out)) texts.emplace_back(t.vocab_test + ".inp", c.text);
        for (const auto & x : frugal::test::k_edge_texts) texts.emplace_back("edge cases", x);
        // llamacpp-logits reads the text file as a C string
        std::erase_if(texts, [](const auto & x) { return x.second.find('\0') != std::string::npos; });

        // One llama.cpp run for all texts: they are joined by a control token that none of them contains,
        // which llama.cpp (like encode) cuts out before tokenizing the text between.
        int32_t sep = -1;
        for (int32_t id = 0; id < tok.n_vocab() && sep < 0; ++id) {
            if (v.attrs[size_t(id)] != token_attr::control) continue;
            const std::string & s = v.tokens[size_t(id)];
            auto contains = [&](const auto & x) { return x.second.find(s) != std::string::npos; };
            if (std::none_of(texts.begin(), texts.end(), contains)) sep = id;
        }
        REQUIRE_MESSAGE(sep >= 0, t.model << ": every control token occurs in some text");
        // llama.cpp has no normaliser: it gets the NFC form of the text where the vocabulary asks for NFC
        std::string joined;
        for (size_t i = 0; i < texts.size(); ++i)
            joined += (i ? v.tokens[size_t(sep)] : "") + (v.normalize_nfc ? frugal::to_nfc(texts[i].second) : texts[i].second);
        const auto text_file = dir / (t.model + ".texts.txt");
        const auto ids_file = dir / (t.model + ".llamacpp.json");
        std::ofstream(text_file, std::ios::binary) << joined;
        const std::string cmd = oracle + " " + sh_quote(model) + " --text-file " + sh_quote(text_file) +
                                " --tokenize --no-special >" + sh_quote(ids_file) + " 2>" +
                                sh_quote(dir / (t.model + ".llamacpp.log"));
        REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
        std::vector<std::vector<int32_t>> want(1);
        for (const int32_t id : read_oracle_tokens(ids_file)) {
            if (id == sep)
                want.emplace_back();
            else
                want.back().push_back(id);
        }
        REQUIRE_MESSAGE(want.size() == texts.size(), t.model << ": llama.cpp's output has " << want.size() - 1
                                                            << " separators for " << texts.size() << " texts");

        std::map<std::string, std::pair<int, int>> counts; // source -> matched, total
        for (size_t i = 0; i < texts.size(); ++i) {
            const auto & [source, text] = texts[i];
            const auto got = tok.encode(text, false, true);
            CHECK_MESSAGE(got == want[i], t.model << " " << source << " text "
                                                  << nlohmann::json(text).dump(-1, ' ', true) << ": got " << show(got)
                                                  << "want " << show(want[i]));
            counts[source].first += got == want[i];
            counts[source].second += 1;
        }
        for (const auto & [source, c] : counts)
            MESSAGE(t.model << " (" << v.pre << ") " << source << " " << c.first << "/" << c.second);

        // BOS as llama.cpp adds it by default
        const auto bos_file = dir / (t.model + ".bos.json");
        const std::string bos_cmd = oracle + " " + sh_quote(model) + " --text 'Hello world' --tokenize >" +
                                    sh_quote(bos_file) + " 2>/dev/null";
        REQUIRE(std::system(bos_cmd.c_str()) == 0);
        CHECK(tok.encode("Hello world", true, true) == read_oracle_tokens(bos_file));
    }
}

TEST_CASE("tokenizer: byte-level BPE merges lowest rank first, leftmost on ties, as llama.cpp" * doctest::timeout(60)) {
    const std::string sp = gpt2_char(' '); // "Ġ"
    auto ids = [](const tokenizer & t, std::initializer_list<std::string_view> texts) {
        std::vector<int32_t> out;
        for (const auto x : texts) out.push_back(id_of(t, x));
        return out;
    };

    const tokenizer bc_first(tiny_bpe("qwen2", {"ab", "bc"}, {"b c", "a b"}));
    CHECK(bc_first.encode("abc", false, false) == ids(bc_first, {"a", "bc"}));
    const tokenizer ab_first(tiny_bpe("qwen2", {"ab", "bc"}, {"a b", "b c"}));
    CHECK(ab_first.encode("abc", false, false) == ids(ab_first, {"ab", "c"}));
    CHECK(ab_first.encode("abc abc", false, false) == ids(ab_first, {"ab", "c", sp, "ab", "c"})); // cached word

    const tokenizer ties(tiny_bpe("qwen2", {"aa"}, {"a a"}));
    CHECK(ties.encode("aaa", false, false) == ids(ties, {"aa", "a"}));

    // llama3 emits a word that is a token whole, even when no merge leads to it
    const tokenizer llama3(tiny_bpe("llama-bpe", {"ab", "abc"}, {"a b"}));
    CHECK(llama3.encode("abc", false, false) == ids(llama3, {"abc"}));
    const tokenizer qwen2(tiny_bpe("qwen2", {"ab", "abc"}, {"a b"}));
    CHECK(qwen2.encode("abc", false, false) == ids(qwen2, {"ab", "c"}));

    // a merge whose result is not a token: llama.cpp looks up each byte of the mapped text and keeps
    // only the ones that are tokens ("xy" -> x, y; "é" = C3 A9 -> "Ã©" = C3 83 C2 A9 -> nothing)
    const tokenizer orphan(tiny_bpe("qwen2", {}, {"x y", gpt2_char(0xC3) + " " + gpt2_char(0xA9)}));
    CHECK(orphan.encode("xy", false, false) == ids(orphan, {"x", "y"}));
    CHECK(orphan.encode("\xC3\xA9", false, false).empty());
    const tokenizer plain(tiny_bpe("qwen2", {}, {}));
    CHECK(plain.encode("\xC3\xA9", false, false) == ids(plain, {gpt2_char(0xC3), gpt2_char(0xA9)}));

    // \s+(?!\S): a space run before a word leaves its last space to the word; at the end it stays whole
    const tokenizer spaces(tiny_bpe("gpt-2", {sp + sp, sp + "b"}, {sp + " " + sp, sp + " b"}));
    CHECK(spaces.encode("a  b", false, false) == ids(spaces, {"a", sp, sp + "b"}));
    CHECK(spaces.encode("a  ", false, false) == ids(spaces, {"a", sp + sp}));

    // special tokens are cut out first; control ones only with parse_special
    CHECK(spaces.encode("a<|endoftext|>b", false, true) == ids(spaces, {"a", "<|endoftext|>", "b"}));
    CHECK(spaces.encode("a<|endoftext|>b", false, false).size() == 15);
}
