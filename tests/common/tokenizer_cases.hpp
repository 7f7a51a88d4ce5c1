// tokenizer_cases.hpp - readers for the tokenizer test vectors (llama.cpp's test-tokenizer-0 files,
// Hugging Face cases.jsonl) and the small helpers the tokenizer tests share. Include after doctest.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/error.hpp"

namespace frugal::test {

inline std::string read_text(const std::filesystem::path & p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE_MESSAGE(in, "cannot open " << p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
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

inline std::string show(const std::vector<int32_t> & ids) {
    std::string s;
    for (auto id : ids) s += std::to_string(id) + " ";
    return s;
}

// llama.cpp's test-tokenizer-0 files: X.inp holds strings each followed by "\n__ggml_vocab_test__\n",
// X.out one line of space-separated ids per string.
struct vocab_case {
    std::string text;
    std::vector<int32_t> ids;
};
inline std::vector<vocab_case> read_vocab_cases(const std::filesystem::path & inp, const std::filesystem::path & out) {
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

// ../shared/data/tokenizers/<name>/cases.jsonl: Hugging Face's ids for each text (no BOS/EOS added,
// special tokens in the text matched), and the decoded text when it is not the text itself.
struct hf_case {
    std::string id, category, text, decoded;
    std::vector<int32_t> ids;
};
inline std::vector<hf_case> read_hf_cases(const std::filesystem::path & jsonl) {
    std::vector<hf_case> cases;
    std::istringstream lines(read_text(jsonl));
    for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line);
        hf_case c;
        c.id = j.at("id").dump();
        c.text = j.at("text").get<std::string>();
        c.ids = j.at("ids").get<std::vector<int32_t>>();
        const auto cat = j.find("cat"), decoded = j.find("decoded");
        if (cat != j.end()) c.category = cat->get<std::string>();
        c.decoded = decoded != j.end() ? decoded->get<std::string>() : c.text;
        cases.push_back(std::move(c));
    }
    return cases;
}

// Texts that probe the places where the pre-tokenizers differ: whitespace kinds and runs, digit runs,
// contractions, punctuation next to newlines, marks, scripts named in DeepSeek's regexes, emoji.
inline const std::vector<std::string> k_edge_texts = {
    "a\u0085\u0085b", "a \u0085b", "x\u0085", "\u0085\u0085\u0085", "a\u00A0\u00A0b", "a\u00A0 b", "a \u00A0b",
    "tab\t\tx", "a\u2028\u2028b", "a\u3000\u3000b", "\u3000x", "a \u3000 b", "x\u180Ey", "x\u200B\u200By",
    "1", "12", "123", "1234", "12345678901", " 1234 ", "a1234b", "\u0661\u0662\u0663\u0664\u0665",
    "\uFF11\uFF12\uFF13\uFF14", "x\u00B2\u00B3\u2074", "\u216B\u2167", "\u00BD\u00BC 3\u00BE",
    "I'M YOU'LL HE'D THEY'RE WE'VE IT'S DON'T", "'s's'S", "x'sy", "''''", "' s", "l'\u00E9t\u00E9",
    "a\r\n\r\n  b", "a \n\n\t b", "x!!\n\n\ny", "x !!\r\n", "  \n  ", "a\n \n b", "\n\n\n", "\r\r\nx",
    "~~~x", "~abc", "$100", "a~b", "(a)", "\u00ABab\u00BB", "\u00BFqu\u00E9?", "a+b=c", "x^y", "`code`", "a|b",
    "<=>", "--x", "_x_", "e\u0301", "\u0301abc", "a\u0301\u0301 b", "\u0928\u092E\u0938\u094D\u0924\u0947",
    "\u0E01\u0E49\u0E33", "\u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8", "\u4E2D\u6587abc\u4E2D\u6587",
    "\uD55C\uAD6D\uC5B4 \uD14D\uC2A4\uD2B8", "\uFF71\uFF72\uFF73", "\u6F22\u5B57123\u304B\u306A", "\u9FA5\u9FA6",
    "\u0800\u0801", "\u0395\u03BB\u03BB\u03B7\u03BD\u03B9\u03BA\u03AC",
    "\u041A\u0438\u0440\u0438\u043B\u043B\u0438\u0446\u0430",
    "\u0540\u0561\u0575", "\u10E5\u10D0\u10E0", "\u13E3\u13B3\u13A9", "\uFF21\uFF22\uFF23\uFF41\uFF42\uFF43",
    "\u2102\u210D\u2115", "\u01C5\u01C8", "\U0001F44D\U0001F3FDx", "x\U0001F468\u200D\U0001F469\u200D\U0001F467y",
    "\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA", "a\u2705b", "<|endoftext|", "<\uFF5CUser\uFF5C", "< |im_start|>",
    "\uE000x", "\uFFFF", "\U0010FFFF", "\uFEFFx", std::string(300, ' ') + "x", "x" + std::string(300, ' '),
    std::string(50, '\n') + "x", "Hello, World! 123 ... ???", "\u3001\u3002\u3000\u300C", "\u2018a\u2019 \u201Cb\u201D",
    "a\u3000\u3000\u3002b", "\u6F22\u3000\u5B57", "\u6F22\u2003\u5B57\u1680\u5B57\u2028\u5B57",
};

// Seeded random texts mixing the pieces where tokenizers tend to differ: scripts, digit runs,
// whitespace kinds, marks and decomposed accents (NFC), emoji sequences, contractions,
// punctuation, special-token texts and near-misses.
inline std::vector<std::string> random_texts(size_t count, uint32_t seed) {
    static const std::vector<std::string> pieces = {
        "Hello", " world", "I'm", " they'LL", "'S", "x", "DeepSeek", " R1", "caf\u00E9", "cafe\u0301",
        "A\u030A", "\u1E9B\u0323", "\uFB01", "\u2126", "\u00C5", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\u00A0",
        "\u3000", "\u2028", "\u0085", "\u200B", "\u200D", "\uFEFF", "0", "7", "42", "1234", "3.14159",
        "\u0661\u0662", "\uFF19\uFF18", "\u00B2", "\u4E2D\u6587", "\u65E5\u672C", "\u3072\u3089\u304C\u306A",
        "\u30AB\u30BF", "\uD55C\uAE00", "\u041F\u0440\u0438\u0432\u0435\u0442", "\u03A9\u03C1\u03B1",
        "\u0645\u0631\u062D\u0628\u0627", "\u0939\u093F\u0902\u0926\u0940", "\u0E44\u0E17\u0E22",
        "\u05E9\u05DC\u05D5\u05DD", "\U0001F600", "\U0001F44B\U0001F3FF", "\U0001F469\u200D\U0001F4BB",
        "\U0001F1EF\U0001F1F5", "1\uFE0F\u20E3", "!", "?!", "...", "--", "(", ")", "{", "}", "[", "]", "<", ">",
        "=>", "&&", "||", "#", "$", "%", "@", "\\", "/", "`", "~", "^", "_", "\u2014", "\u2026", "\u00AB",
        "\u300C", "\u3002", "\uFF01", "\u2019", "\u201C", "<think>", "</think>", "<think", "think>",
        "<\uFF5CUser\uFF5C>", "<\uFF5CAssistant\uFF5C>", "<|User|>", "<|im_start|>", "<|im_end|>",
        "<|eot_id|>", "<|begin_of_text|>", "<\uFF5Cbegin\u2581of\u2581sentence\uFF5C>", "\u2581", "\uE000",
        "\U0010FFFF", "\x01", "\x7F", "\u0300", "\u0301\u0302", "\u180E", "\u00AD", "\u2060",
    };
    std::mt19937 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, pieces.size() - 1), length(1, 24);
    std::vector<std::string> out(count);
    for (auto & text : out)
        for (size_t n = length(rng); n > 0; --n) text += pieces[pick(rng)];
    return out;
}

} // namespace frugal::test
