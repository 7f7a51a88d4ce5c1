// tokenizer_bpe.cpp - byte-level BPE encoding ("gpt2" vocabularies) with exactly llama.cpp's ids
// (llm_tokenizer_bpe_session): the text between special tokens is split into words by the
// pre-tokenizer regexes that tokenizer.ggml.pre selects (applied in sequence, each splitting the
// pieces of the one before), each word's bytes go through GPT-2's byte-to-unicode map, and the
// merges are applied lowest rank first. Splitting uses PCRE2 in UTF + UCP mode.
//
// How llama.cpp's splitting is reproduced (llama-vocab.cpp, unicode.cpp):
// - `\s` is llama.cpp's whitespace set (Unicode White_Space), which PCRE2's UCP `\s` lacks U+0085 of;
//   `$` is end of piece only (`\z`), as in std::regex.
// - gpt-2, llama3 and qwen2 run through hand-written splitters in llama.cpp. For valid UTF-8 they
//   cut exactly where their regexes do (the `\s+(?!\S)` rule keeps the last whitespace character
//   for the next word unless the run ends the piece; digit runs split into groups of at most 3, or
//   single digits for qwen2); the gpt-2 splitter also takes a lone whitespace run, written here as
//   the trailing `|\s+`, which changes no output.
// - The other regexes run in std::regex on text whose non-ASCII whitespace was replaced by U+000B:
//   their explicit code point ranges therefore never match a whitespace character, and the ranges
//   below leave those characters out.
// - Unicode categories come from PCRE2's tables (Unicode 14 in PCRE2 10.42); llama.cpp's tables are
//   Unicode 15.1, so the 5116 code points assigned in 15.0 / 15.1 may split differently.
#include <algorithm>
#include <array>
#include <initializer_list>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "runtime/tokenizer.hpp"
#include "runtime/tokenizer_internal.hpp"
#include "util/error.hpp"

namespace frugal {
namespace {

// llama.cpp's whitespace (unicode_set_whitespace), as class members.
constexpr std::string_view k_space_members =
    "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// llama.cpp's regexes, with `\s` as in llama.cpp (see k_space_members).
constexpr std::string_view k_re_gpt2 = detail::k_gpt2_regex;
constexpr std::string_view k_re_llama3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})re"
    R"re(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view k_re_qwen2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})re"
    R"re(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
// CJK, Korean and U+0800..U+4E00 (llama.cpp's range, without the whitespace inside it).
constexpr std::string_view k_re_cjk = "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}"
                                      "\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}"
                                      "\\x{AC00}-\\x{D7FF}]+";
// DeepSeek LLM's letters: cased letters of many scripts (llama.cpp lists them as literal characters).
constexpr std::string_view k_re_deepseek_llm_letters =
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}"
    "\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}"
    "\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}"
    "\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}"
    "\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"
    "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"
    "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
    "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}"
    "\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+";

struct pre_tokenizer {
    std::initializer_list<std::string_view> names; // tokenizer.ggml.pre values
    std::initializer_list<std::string_view> regexes;
    bool ignore_merges; // a word that is itself a token is emitted whole (llama3)
    bool nfc = false;   // the tokenizer normalises to NFC first (qwen2)
};

const pre_tokenizer k_pre_tokenizers[] = {
    {{"deepseek-v3"},
     {R"re(\p{N}{1,3})re", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)re"
      R"re(| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
     false},
    {{"deepseek-llm"},
     {"[\\r\\n]", k_re_deepseek_llm_letters,
      // llama.cpp's class ends with U+3000..U+3002; U+3000 is whitespace and never matches it
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}\\x{3002}]+",
      // (?<!\s) skips start positions that cannot begin the leftmost match: linear time on long runs
      "(?<!\\s)\\s+$", k_re_cjk, R"re(\p{N}+)re"},
     false},
    {{"deepseek-coder"}, {"[\\r\\n]", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", k_re_cjk, R"re(\p{N})re"}, false},
    {{"qwen2", "deepseek-r1-qwen"}, {k_re_qwen2}, false, true},
    {{"llama3", "llama-v3", "llama-bpe"}, {k_re_llama3}, true},
    {{"gpt-2"}, {k_re_gpt2}, false},
    // llama.cpp's choice for a missing or "default" pre-tokenizer
    {{"default", ""}, {R"re([\p{P}\$\+<=>\^~\|]+)re", k_re_gpt2, R"re(\p{N}+)re", "[0-9][0-9][0-9]"}, false},
};

// A tokenizer.json regex written as llama.cpp writes its own: CR and LF as escapes, other non-ASCII
// characters as \x{HEX}, and the case-insensitive contractions spelled out.
std::string llama_form(std::string_view hf) {
    constexpr std::string_view k_icase = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    constexpr std::string_view k_spelled = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
    std::string out;
    for (size_t i = 0; i < hf.size();) {
        if (hf.substr(i, k_icase.size()) == k_icase) {
            out += k_spelled;
            i += k_icase.size();
            continue;
        }
        const auto b = uint8_t(hf[i]);
        if (b == '\r' || b == '\n') {
            out += b == '\r' ? "\\r" : "\\n";
            ++i;
        } else if (b < 0x80) {
            out += char(b);
            ++i;
        } else { // a lead byte: decode the sequence (the JSON parser gave valid UTF-8)
            const size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
            uint32_t cp = b & (0xFF >> (len + 1));
            for (size_t k = 1; k < len && i + k < hf.size(); ++k) cp = (cp << 6) | (uint8_t(hf[i + k]) & 0x3F);
            out += fmt::format("\\x{{{:X}}}", cp);
            i += len;
        }
    }
    return out;
}

// A llama.cpp regex in PCRE2 syntax: `\s` / `\S` become llama.cpp's whitespace class, `$` becomes `\z`.
std::string to_pcre2(std::string_view re) {
    std::string out;
    bool in_class = false;
    for (size_t i = 0; i < re.size(); ++i) {
        const char c = re[i];
        if (c == '\\' && i + 1 < re.size()) {
            const char e = re[++i];
            if (e == 's') {
                out += in_class ? std::string(k_space_members) : fmt::format("[{}]", k_space_members);
            } else if (e == 'S' && !in_class) {
                out += fmt::format("[^{}]", k_space_members);
            } else if (e == 'S') {
                throw_error(status::internal, "tokenizer: \\S inside a class in regex '{}'", re);
            } else {
                out += c;
                out += e;
            }
        } else if (c == '[' && !in_class) {
            in_class = true;
            out += c;
        } else if (c == ']' && in_class) {
            in_class = false;
            out += c;
        } else if (c == '$' && !in_class) {
            out += "\\z";
        } else {
            out += c;
        }
    }
    return out;
}

std::string pcre2_message(int code) {
    std::array<PCRE2_UCHAR, 256> buf{};
    pcre2_get_error_message(code, buf.data(), buf.size());
    return reinterpret_cast<const char *>(buf.data());
}

struct regex_free {
    void operator()(pcre2_code * c) const { pcre2_code_free(c); }
};
struct match_data_free {
    void operator()(pcre2_match_data * m) const { pcre2_match_data_free(m); }
};
using regex_ptr = std::unique_ptr<pcre2_code, regex_free>;

regex_ptr compile(std::string_view llama_re) {
    const std::string re = to_pcre2(llama_re);
    int code = 0;
    PCRE2_SIZE at = 0;
    regex_ptr r(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(), PCRE2_UTF | PCRE2_UCP, &code, &at,
                              nullptr));
    if (!r)
        throw_error(status::internal, "tokenizer: pcre2 rejects regex '{}' at offset {}: {}", re, at,
                    pcre2_message(code));
    pcre2_jit_compile(r.get(), PCRE2_JIT_COMPLETE); // without JIT pcre2_match interprets
    return r;
}

const pre_tokenizer * find_pre_tokenizer(std::string_view pre) {
    for (const pre_tokenizer & p : k_pre_tokenizers)
        if (std::find(p.names.begin(), p.names.end(), pre) != p.names.end()) return &p;
    return nullptr;
}

uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }

struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct piece {
    size_t offset, length; // bytes of the text being encoded
};

} // namespace

std::optional<std::string> detail::bpe_pre_name(std::span<const std::string> hf_regexes, bool ignore_merges) {
    for (const pre_tokenizer & p : k_pre_tokenizers) {
        if (p.regexes.size() != hf_regexes.size() || p.ignore_merges != ignore_merges) continue;
        if (std::equal(p.regexes.begin(), p.regexes.end(), hf_regexes.begin(),
                       [](std::string_view ours, const std::string & hf) { return ours == llama_form(hf); }))
            return std::string(*p.names.begin());
    }
    return std::nullopt;
}

bool detail::bpe_pre_normalizes_nfc(std::string_view pre) {
    const pre_tokenizer * p = find_pre_tokenizer(pre);
    return p && p->nfc;
}

// Everything encode needs that depends only on the vocab. The merges work on symbols: a token id
// for a string that is a token, an id from n_vocab up for one that is not.
struct bpe_model {
    struct merge {
        int32_t rank, result;
    };

    std::string pre;
    std::vector<regex_ptr> regexes; // empty: pre-tokenizer not supported
    bool ignore_merges = false;
    std::array<std::string, 256> byte_text;     // GPT-2 map: raw byte -> its code point, UTF-8
    std::array<int32_t, 256> byte_symbol{};     // symbol of byte_text
    std::array<int32_t, 256> raw_byte_token{};  // token whose text is this one byte, -1 = none
    std::unordered_map<uint64_t, merge> merges; // pair_key(left, right) -> rank and merged symbol
};

void tokenizer::init_bpe() {
    auto m = std::make_shared<bpe_model>();
    m->pre = vocab_.pre;
    if (const pre_tokenizer * p = find_pre_tokenizer(vocab_.pre)) {
        for (const std::string_view re : p->regexes) m->regexes.push_back(compile(re));
        m->ignore_merges = p->ignore_merges;
    }

    std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>> not_tokens;
    auto symbol = [&](std::string_view s) {
        const int32_t id = find(s);
        if (id >= 0) return id;
        return not_tokens.try_emplace(std::string(s), n_vocab() + int32_t(not_tokens.size())).first->second;
    };

    // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 become U+0100..
    int next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        const int cp = printable ? b : next++;
        std::string & s = m->byte_text[size_t(b)];
        if (cp < 0x80) {
            s = std::string(1, char(cp));
        } else {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        }
        m->byte_symbol[size_t(b)] = symbol(s);
        m->raw_byte_token[size_t(b)] = find(std::string(1, char(b)));
    }

    m->merges.reserve(vocab_.merges.size());
    std::string joined;
    for (size_t i = 0; i < vocab_.merges.size(); ++i) {
        // "left right", split at the first space after the first character (as llama.cpp)
        const std::string_view entry = vocab_.merges[i];
        const size_t space = entry.find(' ', 1);
        const std::string_view left = entry.substr(0, space), right = entry.substr(space + 1);
        joined.assign(left).append(right);
        const int32_t l = symbol(left), r = symbol(right), result = symbol(joined);
        m->merges.try_emplace(pair_key(l, r), bpe_model::merge{int32_t(i), result}); // first rank wins
    }
    bpe_ = std::move(m);
}

void tokenizer::encode_bpe(std::string_view text, const std::vector<fragment> & frags,
                           std::vector<int32_t> & out) const {
    const bpe_model & m = *bpe_;
    if (m.regexes.empty())
        throw_error(status::unsupported_model,
                    "tokenizer: pre-tokenizer '{}' is not supported (deepseek-v3, deepseek-llm, deepseek-coder, "
                    "qwen2, deepseek-r1-qwen, llama3, llama-v3, llama-bpe, gpt-2, default)",
                    m.pre);

    const std::unique_ptr<pcre2_match_data, match_data_free> match(pcre2_match_data_create(1, nullptr));
    if (!match) throw_error(status::out_of_memory, "tokenizer: cannot allocate pcre2 match data");

    // Every match of `re` in each piece becomes a piece, and so does every stretch between matches
    // (llama.cpp's unicode_regex_split_stl). Subjects end at the piece, as llama.cpp's do.
    std::vector<piece> pieces, next;
    auto split = [&](const pcre2_code * re) {
        next.clear();
        for (const piece & p : pieces) {
            const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data() + p.offset);
            size_t pos = 0;
            while (pos < p.length) {
                const int rc = pcre2_match(re, subject, p.length, pos, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0)
                    throw_error(status::internal, "tokenizer: pcre2_match failed on a {}-byte piece: {}", p.length,
                                pcre2_message(rc));
                const PCRE2_SIZE * span = pcre2_get_ovector_pointer(match.get());
                if (span[0] > pos) next.push_back({p.offset + pos, span[0] - pos});
                next.push_back({p.offset + span[0], span[1] - span[0]}); // no regex here matches empty
                pos = span[1];
            }
            if (pos < p.length) next.push_back({p.offset + pos, p.length - pos});
        }
        pieces.swap(next);
    };

    // Words seen before in this text reuse their ids: `seen` maps a word to its range in `cached`.
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
    std::vector<int32_t> cached;
    std::string encoded;

    struct symbol {
        int32_t prev, next;
        int32_t id;     // -1: merged into its left neighbour
        int32_t length; // bytes of the word it covers, starting at its own index
    };
    struct bigram {
        int32_t rank, result, left, right;
        int32_t left_id, right_id; // when queued; a change since means the entry is stale
    };
    auto later = [](const bigram & a, const bigram & b) {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    };
    std::vector<symbol> syms;
    std::priority_queue<bigram, std::vector<bigram>, decltype(later)> queue(later);
    auto try_add = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const auto it = m.merges.find(pair_key(syms[size_t(left)].id, syms[size_t(right)].id));
        if (it == m.merges.end()) return;
        queue.push({it->second.rank, it->second.result, left, right, syms[size_t(left)].id, syms[size_t(right)].id});
    };

    auto encode_word = [&](std::string_view word) {
        if (m.ignore_merges) {
            encoded.clear();
            for (const char c : word) encoded += m.byte_text[uint8_t(c)];
            const int32_t id = find(encoded);
            if (id >= 0) {
                out.push_back(id);
                return;
            }
        }
        syms.clear();
        const auto n = int32_t(word.size());
        for (int32_t i = 0; i < n; ++i)
            syms.push_back({i - 1, i + 1 < n ? i + 1 : -1, m.byte_symbol[uint8_t(word[size_t(i)])], 1});
        for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);
        while (!queue.empty()) {
            const bigram b = queue.top();
            queue.pop();
            symbol & l = syms[size_t(b.left)];
            symbol & r = syms[size_t(b.right)];
            if (l.id != b.left_id || r.id != b.right_id) continue;
            l.id = b.result;
            l.length += r.length;
            l.next = r.next;
            if (r.next >= 0) syms[size_t(r.next)].prev = b.left;
            r.id = -1;
            try_add(l.prev, b.left);
            try_add(b.left, l.next);
        }
        for (int32_t i = 0; i >= 0; i = syms[size_t(i)].next) {
            const symbol & s = syms[size_t(i)];
            if (s.id < n_vocab()) {
                out.push_back(s.id);
                continue;
            }
            // not a token: llama.cpp looks up each byte of the mapped text alone and drops misses
            for (const char c : word.substr(size_t(i), size_t(s.length)))
                for (const char t : m.byte_text[uint8_t(c)])
                    if (m.raw_byte_token[uint8_t(t)] >= 0) out.push_back(m.raw_byte_token[uint8_t(t)]);
        }
    };

    for (const fragment & fr : frags) {
        if (fr.id >= 0) {
            out.push_back(fr.id);
            continue;
        }
        pieces.assign(1, {fr.offset, fr.length});
        for (const regex_ptr & re : m.regexes) split(re.get());
        for (const piece & p : pieces) {
            const std::string_view word = text.substr(p.offset, p.length);
            const auto hit = seen.find(word);
            if (hit != seen.end()) {
                const auto [from, count] = hit->second;
                out.insert(out.end(), cached.begin() + ptrdiff_t(from), cached.begin() + ptrdiff_t(from + count));
                continue;
            }
            const size_t start = out.size();
            encode_word(word);
            seen.emplace(word, std::pair(cached.size(), out.size() - start));
            cached.insert(cached.end(), out.begin() + ptrdiff_t(start), out.end());
        }
    }
}

} // namespace frugal
