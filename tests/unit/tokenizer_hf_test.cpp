// tokenizer_hf_test.cpp - Hugging Face tokenizer.json vocabularies. The publishers' files in
// ../shared/data/tokenizers encode every cases.jsonl text to the ids Hugging Face's Rust tokenizers
// gave and decode back; the same vocabulary written as GGUF keys encodes identically; llama.cpp's
// test-tokenizer-0 vectors pass from tokenizer.json; malformed files are errors naming the problem.
// Cases that need ../shared skip without it; the hand-made tokenizer.json cases always run.
#include <doctest/doctest.h>

#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "common/gguf_builder.hpp"
#include "common/test_support.hpp"
#include "common/tokenizer_cases.hpp"
#include "runtime/tokenizer.hpp"

using frugal::status;
using frugal::token_attr;
using frugal::tokenizer;
using frugal::vocab;
using frugal::test::check_throws;
using frugal::test::read_hf_cases;
using frugal::test::show;
using json = nlohmann::json;

namespace {

// The publishers' tokenizers in ../shared/data/tokenizers.
constexpr const char * k_hf_tokenizers[] = {"deepseek-v3", "qwen2", "llama3", "llama3.1"};

std::string quoted(const std::string & s) { return json(s).dump(-1, ' ', true); }

// The GGUF keys llama.cpp's converter writes for `v`, read back by vocab::from_gguf.
vocab through_gguf(const vocab & v, const std::string & name) {
    namespace g = frugal::test::gguf;
    g::builder b;
    b.set("general.architecture", g::str("llama"));
    b.set("tokenizer.ggml.model", g::str(v.model));
    b.set("tokenizer.ggml.pre", g::str(v.pre));
    b.set("tokenizer.ggml.tokens", g::arr_str(v.tokens));
    std::vector<int32_t> types;
    for (const token_attr a : v.attrs) types.push_back(int32_t(a) + 1);
    b.set("tokenizer.ggml.token_type", g::arr_i32(types));
    b.set("tokenizer.ggml.merges", g::arr_str(v.merges));
    const std::pair<const char *, int32_t> ids[] = {{"bos", v.bos}, {"eos", v.eos}, {"padding", v.pad}};
    for (const auto & [key, id] : ids)
        if (id >= 0) b.set(fmt::format("tokenizer.ggml.{}_token_id", key), g::u32(uint32_t(id)));
    b.set("tokenizer.ggml.add_bos_token", g::boolean(v.add_bos));
    if (!v.chat_template.empty()) b.set("tokenizer.chat_template", g::str(v.chat_template));
    const auto path = frugal::test::scratch_dir("tokenizer_hf") / (name + ".vocab.gguf");
    g::write_file(path, b.build());
    return vocab::from_gguf(*frugal::gguf::file::open(path.string()));
}

// Writes a tokenizer directory with the given tokenizer.json and optional tokenizer_config.json.
std::filesystem::path write_hf_dir(const std::string & name, const json & tokenizer_json,
                                   const std::optional<json> & config = std::nullopt) {
    const auto dir = frugal::test::scratch_dir("tokenizer_hf") / name;
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << tokenizer_json.dump();
    std::filesystem::remove(dir / "tokenizer_config.json");
    if (config) std::ofstream(dir / "tokenizer_config.json") << config->dump();
    return dir;
}

// A small byte-level tokenizer.json: the 256 byte characters, "ab", "abc", the Llama 3 pre-tokenizer,
// an added special "<|bos|>" and an added plain "<think>".
json tiny_tokenizer_json() {
    json vocab_ids = json::object();
    int next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        const int cp = printable ? b : next++;
        std::string s;
        if (cp < 0x80) {
            s = std::string(1, char(cp));
        } else {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        }
        vocab_ids[s] = b;
    }
    vocab_ids["ab"] = 256;
    vocab_ids["abc"] = 257;
    const std::string llama3_split = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    return json{
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           json::array({{{"type", "Split"},
                         {"pattern", {{"Regex", llama3_split}}},
                         {"behavior", "Isolated"},
                         {"invert", false}},
                        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
        {"post_processor", nullptr},
        {"model",
         {{"type", "BPE"},
          {"ignore_merges", true},
          {"vocab", vocab_ids},
          {"merges", json::array({json::array({"a", "b"}), "ab c"})}}},
        {"added_tokens", json::array({{{"id", 258}, {"content", "<|bos|>"}, {"special", true}},
                                      {{"id", 259}, {"content", "<think>"}, {"special", false}},
                                      {{"id", 261}, {"content", "<|eot_id|>"}, {"special", false}}})}};
}

} // namespace

TEST_CASE("tokenizer.json: a hand-made byte-level tokenizer loads as llama.cpp's converter would" *
          doctest::timeout(60)) {
    const auto dir = write_hf_dir("tiny", tiny_tokenizer_json(),
                                  json{{"bos_token", "<|bos|>"}, {"add_bos_token", true}, {"chat_template", "{{x}}"}});
    const vocab v = vocab::from_hf(dir);
    CHECK(v.model == "gpt2");
    CHECK(v.pre == "llama3");
    REQUIRE(v.tokens.size() == 262);
    CHECK(v.tokens[260] == "[PAD260]"); // an id no entry names
    CHECK(v.attrs[260] == token_attr::unused);
    CHECK(v.attrs[258] == token_attr::control);      // special
    CHECK(v.attrs[259] == token_attr::user_defined); // added, not special
    CHECK(v.attrs[261] == token_attr::control);      // not special, but looks it ("<|...|>")
    CHECK(v.eot == 261);                             // found by its text, as in a GGUF file
    CHECK(v.merges == std::vector<std::string>{"a b", "ab c"});
    CHECK(v.bos == 258);
    CHECK(v.add_bos);
    CHECK_FALSE(v.normalize_nfc);
    CHECK(v.chat_template == "{{x}}");

    const tokenizer tok(v);
    // "abc" is a whole token (ignore_merges); "<think>" is matched even without parse_special
    CHECK(tok.encode("abc<think>ab", true, false) == std::vector<int32_t>{258, 257, 259, 256});
    CHECK(tok.encode("x<|bos|>", false, true) == std::vector<int32_t>{'x', 258});
    CHECK(tok.decode(std::vector<int32_t>{258, 257, 259}, true) == "<|bos|>abc<think>");

    // the same file as a path to tokenizer.json, and through vocab::load
    CHECK(vocab::from_hf(dir / "tokenizer.json").tokens == v.tokens);
    CHECK(vocab::load(dir).merges == v.merges);

    // The post-processor decides add_bos when tokenizer_config.json does not
    json with_template = tiny_tokenizer_json();
    with_template["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}};
    const vocab t = vocab::from_hf(write_hf_dir("tiny-template", with_template));
    CHECK(t.add_bos);
    CHECK(t.bos == 258);
    CHECK_FALSE(vocab::from_hf(write_hf_dir("tiny-no-config", tiny_tokenizer_json())).add_bos);
}

TEST_CASE("tokenizer.json: malformed or unsupported files are errors naming the problem" * doctest::timeout(60)) {
    check_throws([] { vocab::from_hf(frugal::test::scratch_dir("tokenizer_hf") / "absent"); }, status::io,
                 "cannot open");
    const auto bad_json = frugal::test::scratch_dir("tokenizer_hf") / "bad";
    std::filesystem::create_directories(bad_json);
    std::ofstream(bad_json / "tokenizer.json") << "{\"model\": ";
    check_throws([&] { vocab::from_hf(bad_json); }, status::invalid_model, "is not valid JSON");

    auto mutate = [](auto && change) {
        json j = tiny_tokenizer_json();
        change(j);
        return write_hf_dir("mutated", j);
    };
    check_throws([&] { vocab::from_hf(mutate([](json & j) { j["model"]["type"] = "Unigram"; })); },
                 status::unsupported_model, "Unigram");
    check_throws(
        [&] {
            vocab::from_hf(mutate([](json & j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+"; }));
        },
        status::unsupported_model, "'\\w+'");
    check_throws([&] { vocab::from_hf(mutate([](json & j) { j["normalizer"] = {{"type", "Lowercase"}}; })); },
                 status::unsupported_model, "Lowercase");
    check_throws([&] { vocab::from_hf(mutate([](json & j) { j["model"]["merges"][1] = "abc"; })); },
                 status::invalid_model, "merge 'abc'");
    check_throws([&] { vocab::from_hf(mutate([](json & j) { j["model"]["vocab"]["ab"] = -5; })); },
                 status::invalid_model, "id -5");
    check_throws([&] { vocab::from_hf(mutate([](json & j) { j["added_tokens"][0]["id"] = 2000000000; })); },
                 status::invalid_model, "id 2000000000 is out of range");
    check_throws([&] { vocab::from_hf(mutate([](json & j) { j["model"]["vocab"]["ab"] = "x"; })); },
                 status::invalid_model, "not an integer");
    check_throws([&] { vocab::from_hf(mutate([](json & j) { j["added_tokens"][0].erase("content"); })); },
                 status::invalid_model, "no field 'content'");
    check_throws([&] { vocab::from_hf(write_hf_dir("bad-bos", tiny_tokenizer_json(), json{{"bos_token", "<s>"}})); },
                 status::invalid_model, "bos_token '<s>'");
}

TEST_CASE("tokenizer.json: cases.jsonl encode to Hugging Face's ids and decode back" * doctest::timeout(300)) {
    if (!frugal::test::shared_data("tokenizers")) FRUGAL_SKIP("../shared/data/tokenizers is absent");
    for (const std::string name : k_hf_tokenizers) {
        const auto dir = frugal::test::shared_data("tokenizers/" + name);
        REQUIRE_MESSAGE(dir, "tokenizers/" << name << " is missing");
        const tokenizer tok(vocab::from_hf(*dir));
        const vocab & v = tok.get_vocab();
        const json meta = json::parse(frugal::test::read_text(*dir / "meta.json"));
        CHECK(v.bos == (meta["bos_id"].is_null() ? -1 : meta["bos_id"].get<int32_t>()));
        CHECK(v.add_bos == meta["adds_bos_by_default"].get<bool>());
        if (!meta["eos_id"].is_null()) CHECK(v.eos == meta["eos_id"].get<int32_t>());

        std::map<std::string, std::pair<int, int>> per_category; // encoded exactly, total
        int encoded = 0, decoded = 0, with_bos = 0;
        const auto cases = read_hf_cases(*dir / "cases.jsonl");
        for (const auto & c : cases) {
            const auto got = tok.encode(c.text, false, true);
            CHECK_MESSAGE(got == c.ids, name << " case " << c.id << " (" << c.category << ") " << quoted(c.text)
                                             << ": got " << show(got) << "want " << show(c.ids));
            encoded += got == c.ids;
            per_category[c.category].first += got == c.ids;
            per_category[c.category].second += 1;
            const std::string text = tok.decode(c.ids, true);
            CHECK_MESSAGE(text == c.decoded, name << " case " << c.id << " decodes to " << quoted(text));
            decoded += text == c.decoded;
            // encode with the vocabulary's defaults: BOS exactly when meta.json says Hugging Face adds it
            std::vector<int32_t> want;
            if (v.add_bos) want.push_back(v.bos);
            want.insert(want.end(), c.ids.begin(), c.ids.end());
            with_bos += tok.encode(c.text, true, true) == want;
        }
        CHECK(with_bos == int(cases.size()));
        std::string failing;
        for (const auto & [cat, n] : per_category)
            if (n.first != n.second) failing += fmt::format(" {} {}/{}", cat, n.first, n.second);
        MESSAGE(name << ": encode " << encoded << "/" << cases.size() << ", decode " << decoded << "/"
                     << cases.size() << (failing.empty() ? "" : ", failing:" + failing));
    }
}

TEST_CASE("tokenizer.json and the GGUF keys of the same vocabulary give identical results" * doctest::timeout(300)) {
    if (!frugal::test::shared_data("tokenizers")) FRUGAL_SKIP("../shared/data/tokenizers is absent");
    for (const std::string name : k_hf_tokenizers) {
        const auto dir = frugal::test::shared_data("tokenizers/" + name);
        REQUIRE(dir);
        const vocab hf = vocab::from_hf(*dir);
        const vocab gg = through_gguf(hf, name);
        CHECK(gg.tokens == hf.tokens);
        CHECK(gg.attrs == hf.attrs);
        CHECK(gg.merges == hf.merges);
        CHECK(gg.pre == hf.pre);
        CHECK(gg.normalize_nfc == hf.normalize_nfc); // from the pre-tokenizer name alone
        CHECK(gg.bos == hf.bos);
        CHECK(gg.eos == hf.eos);
        CHECK(gg.eot == hf.eot);
        CHECK(gg.add_bos == hf.add_bos);
        CHECK(gg.chat_template == hf.chat_template);
        const tokenizer from_hf(hf), from_gguf(gg);
        int same = 0;
        const auto cases = read_hf_cases(*dir / "cases.jsonl");
        for (const auto & c : cases) {
            const bool equal = from_hf.encode(c.text, true, true) == from_gguf.encode(c.text, true, true) &&
                               from_hf.encode(c.text, false, false) == from_gguf.encode(c.text, false, false);
            CHECK_MESSAGE(equal, name << " case " << c.id);
            same += equal;
        }
        MESSAGE(name << ": tokenizer.json and GGUF agree on " << same << "/" << cases.size());
    }
}

TEST_CASE("tokenizer.json: llama.cpp's test-tokenizer-0 vectors for qwen2, deepseek-r1-qwen and llama-bpe" *
          doctest::timeout(120)) {
    if (!frugal::test::shared_data("tokenizers") || !frugal::test::shared_data("llamacpp-vocab-tests"))
        FRUGAL_SKIP("../shared/data/tokenizers or llamacpp-vocab-tests is absent");
    const std::pair<std::string, std::string> pairs[] = {
        {"qwen2", "qwen2"}, {"qwen2", "deepseek-r1-qwen"}, {"llama3", "llama-bpe"}, {"llama3.1", "llama-bpe"}};
    for (const auto & [tokenizer_name, vocab_test] : pairs) {
        const tokenizer tok(vocab::from_hf(*frugal::test::shared_data("tokenizers/" + tokenizer_name)));
        for (const std::string dir : {"llamacpp-vocab-tests", "llamacpp-vocab-tests/v2025-05"}) {
            const std::string base = dir + "/ggml-vocab-" + vocab_test + ".gguf";
            const auto inp = frugal::test::shared_data(base + ".inp");
            const auto out = frugal::test::shared_data(base + ".out");
            if (dir != "llamacpp-vocab-tests" && !(inp && out)) continue; // the later revision lacks some
            REQUIRE_MESSAGE((inp && out), base << ".inp/.out missing");
            const auto cases = frugal::test::read_vocab_cases(*inp, *out);
            int matched = 0;
            for (const auto & c : cases) {
                const auto got = tok.encode(c.text, false, false);
                CHECK_MESSAGE(got == c.ids, vocab_test << " " << quoted(c.text) << ": got " << show(got) << "want "
                                                       << show(c.ids));
                matched += got == c.ids;
            }
            MESSAGE(tokenizer_name << " on " << base << ": " << matched << "/" << cases.size());
        }
    }
}

TEST_CASE("tokenizer.json: Hugging Face's tokenizers agree on edge texts and seeded random texts" *
          doctest::timeout(600)) {
    const auto shared = frugal::test::shared_dir();
    if (!shared) FRUGAL_SKIP("../shared is absent");
    const auto oracle = *shared / "tools" / "tok-oracle.mjs";
    const std::string probe = "node " + frugal::test::sh_quote(oracle) +
                              " encode --tokenizer qwen2 --text x >/dev/null 2>&1";
    if (std::system(probe.c_str()) != 0)
        FRUGAL_SKIP("tok-oracle.mjs cannot run (node, or the tokenizers package from ../shared/tools/setup-peer.sh)");

    std::vector<std::string> texts = frugal::test::k_edge_texts;
    const auto random = frugal::test::random_texts(400, 20261128);
    texts.insert(texts.end(), random.begin(), random.end());
    const auto dir = frugal::test::scratch_dir("tokenizer_hf");
    for (const std::string name : k_hf_tokenizers) {
        const auto in = dir / (name + ".oracle-in.jsonl"), out = dir / (name + ".oracle-out.jsonl");
        {
            std::ofstream f(in, std::ios::binary);
            for (const auto & t : texts) f << json{{"text", t}}.dump() << "\n";
        }
        const std::string cmd = "node " + frugal::test::sh_quote(oracle) + " encode --tokenizer " +
                                frugal::test::sh_quote(*shared / "data" / "tokenizers" / name) + " <" +
                                frugal::test::sh_quote(in) + " >" + frugal::test::sh_quote(out);
        REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
        const tokenizer tok(vocab::from_hf(*shared / "data" / "tokenizers" / name));
        std::istringstream lines(frugal::test::read_text(out));
        size_t i = 0, matched = 0;
        for (std::string line; std::getline(lines, line); ++i) {
            REQUIRE(i < texts.size());
            const auto want = json::parse(line).at("ids").get<std::vector<int32_t>>();
            const auto got = tok.encode(texts[i], false, true);
            CHECK_MESSAGE(got == want, name << " " << quoted(texts[i]) << ": got " << show(got) << "want " << show(want));
            matched += got == want;
        }
        CHECK(i == texts.size());
        MESSAGE(name << ": " << matched << "/" << texts.size() << " equal to Hugging Face tokenizers");
    }
}

TEST_CASE("tokenizer.json: 600 seeded mutations load or fail with frugal::error, never crash" * doctest::timeout(300)) {
    const json base = tiny_tokenizer_json();
    const json config = {{"bos_token", "<|bos|>"}, {"add_bos_token", true}};
    std::mt19937 rng(4242);
    // Every node of the document, by JSON pointer, so a mutation can replace any of them.
    std::vector<json::json_pointer> nodes;
    const json flat = base.flatten();
    for (const auto & [path, value] : flat.items()) {
        for (json::json_pointer p(path); !p.empty(); p = p.parent_pointer()) nodes.push_back(p);
    }
    const json replacements[] = {nullptr, -1, 0, 1e30, "x", "\\s+", json::array(), json::object(), true,
                                 json::array({1, 2}), 4294967296LL};
    int loaded = 0, rejected = 0;
    for (int i = 0; i < 600; ++i) {
        std::string text;
        json mutated = base;
        if (i % 2 == 0) { // structural: one node gets another type or value, or disappears
            const auto & at = nodes[rng() % nodes.size()];
            if (rng() % 4 == 0 && !at.empty())
                mutated[at.parent_pointer()].is_object() ? void(mutated[at.parent_pointer()].erase(at.back()))
                                                         : void(mutated[at] = nullptr);
            else
                mutated[at] = replacements[rng() % std::size(replacements)];
            text = mutated.dump();
        } else { // textual: bytes flipped, cut or repeated
            text = base.dump();
            for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) {
                const size_t pos = rng() % text.size();
                switch (rng() % 3) {
                case 0: text[pos] = char(rng() % 256); break;
                case 1: text.erase(pos, 1 + rng() % 16); break;
                default: text.insert(pos, text.substr(pos, 1 + rng() % 16)); break;
                }
            }
        }
        const auto dir = frugal::test::scratch_dir("tokenizer_hf") / "fuzz";
        std::filesystem::create_directories(dir);
        std::ofstream(dir / "tokenizer.json", std::ios::trunc) << text;
        std::ofstream(dir / "tokenizer_config.json", std::ios::trunc) << config.dump();
        try {
            const tokenizer tok(vocab::from_hf(dir));
            (void)tok.encode("abc <think> x1234 <|bos|>", true, true);
            ++loaded;
        } catch (const frugal::error & e) {
            CHECK_MESSAGE((e.code() == status::invalid_model || e.code() == status::unsupported_model ||
                           e.code() == status::invalid_argument),
                          "mutation " << i << ": " << e.what());
            ++rejected;
        } catch (const std::exception & e) {
            FAIL("mutation " << i << " threw a non-frugal exception: " << std::string(e.what()));
        }
    }
    MESSAGE("tokenizer.json mutations: " << loaded << " loaded, " << rejected << " rejected with a frugal::error");
    CHECK(loaded > 0);
    CHECK(rejected > 0);
}
