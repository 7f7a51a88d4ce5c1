#include "runtime/tokenizer.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <queue>

#include <utf8proc.h>

#include "runtime/tokenizer_internal.hpp"
#include "util/error.hpp"

namespace frugal {
namespace {

constexpr std::string_view k_space_marker = "\xE2\x96\x81"; // U+2581 "▁", SentencePiece's space
constexpr std::string_view k_replacement = "\xEF\xBF\xBD"; // U+FFFD

enum class utf8_seq { complete, truncated, invalid };

// Classifies the sequence starting at s[0] (s not empty). `n` is its length when complete, the
// length of the maximal invalid prefix (>= 1, Unicode's "maximal subpart") when invalid, and the
// bytes present when truncated.
utf8_seq classify_utf8(std::string_view s, size_t & n) {
    const auto b0 = uint8_t(s[0]);
    if (b0 < 0x80) {
        n = 1;
        return utf8_seq::complete;
    }
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xBF; // allowed range of the second byte; later bytes are 80..BF
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        if (b0 == 0xE0) lo = 0xA0; // overlong
        if (b0 == 0xED) hi = 0x9F; // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        if (b0 == 0xF0) lo = 0x90; // overlong
        if (b0 == 0xF4) hi = 0x8F; // above U+10FFFF
    } else {
        n = 1;
        return utf8_seq::invalid;
    }
    for (size_t i = 1; i < need; ++i) {
        if (i == s.size()) {
            n = i;
            return utf8_seq::truncated;
        }
        const auto b = uint8_t(s[i]);
        if (b < lo || b > hi) {
            n = i;
            return utf8_seq::invalid;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    n = need;
    return utf8_seq::complete;
}

uint32_t decode_utf8(std::string_view s) { // s is one complete sequence
    const auto b0 = uint8_t(s[0]);
    if (s.size() == 1) return b0;
    uint32_t cp = b0 & (0x7F >> s.size());
    for (size_t i = 1; i < s.size(); ++i) cp = (cp << 6) | (uint8_t(s[i]) & 0x3F);
    return cp;
}

// Length of the UTF-8 character a lead byte announces, as llama.cpp's unicode_len_utf8 (a stray
// continuation byte counts as 1). Input is validated before this is used.
size_t utf8_len(char c) {
    static constexpr uint8_t k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k_len[uint8_t(c) >> 4];
}

// GPT-2's bytes_to_unicode inverted: code point -> byte, -1 where no byte maps. Printable bytes map
// to themselves, the other 68 to U+0100.. in increasing byte order.
constexpr std::array<int16_t, 256 + 68> make_gpt2_byte_of() {
    std::array<int16_t, 256 + 68> t{};
    for (auto & x : t) x = -1;
    int next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        t[size_t(printable ? b : next++)] = int16_t(b);
    }
    return t;
}
constexpr auto k_gpt2_byte_of = make_gpt2_byte_of();

std::string gpt2_piece(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    size_t n = 0;
    for (size_t i = 0; i < text.size(); i += n) {
        const auto seq = text.substr(i);
        if (classify_utf8(seq, n) == utf8_seq::complete) {
            const uint32_t cp = decode_utf8(seq.substr(0, n));
            if (cp < k_gpt2_byte_of.size() && k_gpt2_byte_of[cp] >= 0) {
                out += char(k_gpt2_byte_of[cp]);
                continue;
            }
        }
        out.append(seq.substr(0, n)); // not a byte-level code point: keep it as written
    }
    return out;
}

std::string spm_piece(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        if (text.substr(i, k_space_marker.size()) == k_space_marker) {
            out += ' ';
            i += k_space_marker.size();
        } else {
            out += text[i++];
        }
    }
    return out;
}

// "<0xAB>" -> 0xAB, -1 when the text is not of that form.
int parse_byte_token(std::string_view t) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Token texts llama.cpp recognises when a GGUF does not say (llama-vocab.cpp load()): it types them
// control; `eot` ones may become the eot id, `eog` ones end generation.
struct marker {
    std::string_view text;
    bool eot, eog;
};
constexpr marker k_markers[] = {
    {"<|eot_id|>", true, true},
    {"<|im_end|>", true, true},
    {"<|end|>", true, true},
    {"<end_of_turn>", true, true},
    {"<|endoftext|>", true, true},
    {"<EOT>", true, true},
    {"<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", true, true}, // DeepSeek
    {"<|eom_id|>", false, true},
    {"<|fim_pad|>", false, true},
    {"<fim-pad>", false, true},
    {"<PAD>", false, true},
    {"<|fim_repo|>", false, true},
    {"<|repo_name|>", false, true},
    {"<fim-repo>", false, true},
    {"<REPO>", false, true},
    {"<|file_sep|>", false, true},
    {"<|fim_prefix|>", false, false},
    {"<fim-prefix>", false, false},
    {"<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", false, false},
    {"<PRE>", false, false},
    {"<|fim_suffix|>", false, false},
    {"<fim-suffix>", false, false},
    {"<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", false, false},
    {"<SUF>", false, false},
    {"<|fim_middle|>", false, false},
    {"<fim-middle>", false, false},
    {"<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", false, false},
    {"<MID>", false, false},
};

const marker * find_marker(std::string_view text) {
    for (const auto & m : k_markers)
        if (m.text == text) return &m;
    return nullptr;
}

// Pre-tokenizers for which llama.cpp adds BOS by default on a gpt2 vocab.
bool bpe_adds_bos(std::string_view pre) {
    return pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "tekken" ||
           pre == "chameleon";
}

} // namespace

vocab vocab::from_gguf(const gguf::file & f) {
    vocab v;
    v.model = f.get_string("tokenizer.ggml.model");
    if (v.model != "llama" && v.model != "gpt2")
        throw_error(status::unsupported_model, "tokenizer: tokenizer.ggml.model '{}' is not supported (llama, gpt2)",
                    v.model);
    v.pre = f.opt_string("tokenizer.ggml.pre").value_or("");

    const gguf::array * tokens = f.opt_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->empty())
        throw_error(status::invalid_model, "tokenizer: tokenizer.ggml.tokens is missing or empty");
    const size_t n = tokens->size();
    if (n > size_t(std::numeric_limits<int32_t>::max()))
        throw_error(status::invalid_model, "tokenizer: tokenizer.ggml.tokens has {} entries, too many", n);
    v.tokens.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const std::string_view t = tokens->string_at(i, "tokenizer.ggml.tokens");
        // llama.cpp renames empty tokens so every text maps back to one id
        v.tokens.push_back(t.empty() ? fmt::format("[EMPTY_{}]", i) : std::string(t));
    }

    auto sized_array = [&](const char * key) {
        const gguf::array * a = f.opt_array(key);
        if (a && a->size() != n)
            throw_error(status::invalid_model, "tokenizer: {} has {} entries, tokenizer.ggml.tokens has {}", key,
                        a->size(), n);
        return a;
    };
    v.scores.assign(n, 0.0f);
    if (const auto * a = sized_array("tokenizer.ggml.scores"))
        for (size_t i = 0; i < n; ++i) v.scores[i] = float(a->at(i).as_float("tokenizer.ggml.scores"));
    v.attrs.assign(n, token_attr::normal);
    if (const auto * a = sized_array("tokenizer.ggml.token_type")) {
        for (size_t i = 0; i < n; ++i) {
            const int64_t t = a->at(i).as_int("tokenizer.ggml.token_type");
            if (t < 0 || t > 6)
                throw_error(status::invalid_model,
                            "tokenizer: tokenizer.ggml.token_type[{}] = {} is not a token type (1..6)", i, t);
            // 0 ("undefined") behaves as unused in llama.cpp: never matched, never printed
            v.attrs[i] = t == 0 ? token_attr::unused : token_attr(t - 1);
        }
    }

    if (v.model == "gpt2") {
        const gguf::array * merges = f.opt_array("tokenizer.ggml.merges");
        if (!merges) throw_error(status::invalid_model, "tokenizer: tokenizer.ggml.merges is missing (gpt2 vocab)");
        v.merges.reserve(merges->size());
        for (size_t i = 0; i < merges->size(); ++i) {
            const std::string_view m = merges->string_at(i, "tokenizer.ggml.merges");
            if (m.find(' ', 1) == std::string::npos)
                throw_error(status::invalid_model, "tokenizer: tokenizer.ggml.merges[{}] = '{}' is not 'left right'",
                            i, m);
            v.merges.emplace_back(m);
        }
    }

    const bool spm = v.model == "llama";
    if (spm) {
        v.bos = n > 1 ? 1 : -1;
        v.eos = n > 2 ? 2 : -1;
        v.unk = 0;
    }
    v.add_bos = spm || bpe_adds_bos(v.pre);
    v.add_eos = false;
    v.add_space_prefix = spm;

    auto read_id = [&](const char * key, int32_t & id) {
        const auto x = f.opt_int(key);
        if (!x) return;
        if (*x < 0 || *x >= int64_t(n))
            throw_error(status::invalid_model, "tokenizer: {} = {} is out of range [0, {})", key, *x, n);
        id = int32_t(*x);
    };
    read_id("tokenizer.ggml.bos_token_id", v.bos);
    read_id("tokenizer.ggml.eos_token_id", v.eos);
    read_id("tokenizer.ggml.eot_token_id", v.eot);
    read_id("tokenizer.ggml.unknown_token_id", v.unk);
    read_id("tokenizer.ggml.padding_token_id", v.pad);
    v.add_bos = f.opt_bool("tokenizer.ggml.add_bos_token").value_or(v.add_bos);
    v.add_eos = f.opt_bool("tokenizer.ggml.add_eos_token").value_or(v.add_eos);
    v.add_space_prefix = f.opt_bool("tokenizer.ggml.add_space_prefix").value_or(v.add_space_prefix);
    v.chat_template = f.opt_string("tokenizer.chat_template").value_or("");

    v.normalize_nfc = v.model == "gpt2" && detail::bpe_pre_normalizes_nfc(v.pre);
    detail::mark_special_texts(v);
    return v;
}

void detail::mark_special_texts(vocab & v) {
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        const marker * m = find_marker(v.tokens[i]);
        if (!m) continue;
        v.attrs[i] = token_attr::control;
        if (m->eot && v.eot < 0) v.eot = int32_t(i);
    }
}

vocab vocab::load(const std::filesystem::path & path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec) || path.extension() == ".json") return from_hf(path);
    const auto f = gguf::file::open(path.string());
    return from_gguf(*f);
}

tokenizer::tokenizer(vocab v) : vocab_(std::move(v)) {
    const size_t n = vocab_.tokens.size();
    if (vocab_.model != "llama" && vocab_.model != "gpt2")
        throw_error(status::unsupported_model, "tokenizer: tokenizer model '{}' is not supported (llama, gpt2)",
                    vocab_.model);
    spm_ = vocab_.model == "llama";
    if (n == 0 || n > size_t(std::numeric_limits<int32_t>::max()))
        throw_error(status::invalid_model, "tokenizer: vocab has {} tokens", n);
    if (vocab_.scores.size() != n || vocab_.attrs.size() != n)
        throw_error(status::invalid_model, "tokenizer: vocab has {} tokens but {} scores and {} token types", n,
                    vocab_.scores.size(), vocab_.attrs.size());
    const std::pair<const char *, int32_t> special_ids[] = {
        {"bos", vocab_.bos}, {"eos", vocab_.eos}, {"eot", vocab_.eot}, {"unk", vocab_.unk}, {"pad", vocab_.pad}};
    for (const auto & [name, id] : special_ids) {
        if (id < -1 || id >= int32_t(n))
            throw_error(status::invalid_model, "tokenizer: {} id {} is out of range [0, {})", name, id, n);
    }
    if (vocab_.add_bos && vocab_.bos < 0)
        throw_error(status::invalid_model, "tokenizer: add_bos is set but there is no bos token");
    if (vocab_.add_eos && vocab_.eos < 0)
        throw_error(status::invalid_model, "tokenizer: add_eos is set but there is no eos token");

    ids_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const std::string & t = vocab_.tokens[i];
        if (t.empty()) throw_error(status::invalid_model, "tokenizer: token {} is empty", i);
        ids_.insert_or_assign(t, int32_t(i)); // a later duplicate wins, as in llama.cpp
        const token_attr a = vocab_.attrs[i];
        if (a == token_attr::control || a == token_attr::user_defined || a == token_attr::unknown)
            specials_.push_back(int32_t(i));
        if (a == token_attr::byte && spm_ && parse_byte_token(t) < 0)
            throw_error(status::invalid_model, "tokenizer: byte token {} '{}' is not of the form <0xXX>", i, t);
        const marker * m = find_marker(t);
        if (m && m->eog) eog_.push_back(int32_t(i));
    }
    // longest first, so a special token containing another is matched whole
    std::stable_sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
        return vocab_.tokens[size_t(a)].size() > vocab_.tokens[size_t(b)].size();
    });
    for (int32_t id : {vocab_.eos, vocab_.eot})
        if (id >= 0) eog_.push_back(id);
    std::sort(eog_.begin(), eog_.end());
    eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());

    // SPM byte fallback, as llama.cpp's byte_to_token: "<0xXX>", else the byte as a one-char token
    for (int b = 0; b < 256; ++b) {
        int32_t id = find(fmt::format("<0x{:02X}>", b));
        if (id < 0) id = find(std::string(1, char(b)));
        byte_ids_[size_t(b)] = id < 0 ? vocab_.unk : id;
    }
    if (!spm_) init_bpe();
    chat_format_ = detect_chat_format(vocab_.chat_template, [&](std::string_view t) { return find(t) >= 0; });
}

std::string tokenizer::apply_chat_template(frugal::chat_format format, std::span<const chat_message> messages,
                                           bool add_generation_prompt) const {
    auto text_of = [&](int32_t id) { return id >= 0 ? vocab_.tokens[size_t(id)] : std::string(); };
    return render_chat(format, messages, add_generation_prompt, {text_of(vocab_.bos), text_of(vocab_.eos)});
}

int32_t tokenizer::find(std::string_view text) const {
    const auto it = ids_.find(text);
    return it == ids_.end() ? -1 : it->second;
}

void tokenizer::check_id(int32_t id) const {
    if (id < 0 || id >= n_vocab())
        throw_error(status::invalid_argument, "tokenizer: token id {} is out of range [0, {})", id, n_vocab());
}

bool tokenizer::is_eog(int32_t id) const { return std::binary_search(eog_.begin(), eog_.end(), id); }

// llama.cpp's tokenizer_st_partition: each special token in turn (longest first) cuts every
// remaining text fragment at each of its occurrences.
std::vector<tokenizer::fragment> tokenizer::split_special(std::string_view text, bool parse_special) const {
    std::vector<fragment> frags, next;
    if (!text.empty()) frags.push_back({-1, 0, text.size()});
    for (const int32_t id : specials_) {
        const token_attr a = vocab_.attrs[size_t(id)];
        if (!parse_special && (a == token_attr::control || a == token_attr::unknown)) continue;
        const std::string & tok = vocab_.tokens[size_t(id)];
        next.clear();
        for (const fragment & fr : frags) {
            if (fr.id >= 0) {
                next.push_back(fr);
                continue;
            }
            const std::string_view span = text.substr(fr.offset, fr.length);
            size_t pos = 0;
            for (size_t hit; (hit = span.find(tok, pos)) != std::string_view::npos; pos = hit + tok.size()) {
                if (hit > pos) next.push_back({-1, fr.offset + pos, hit - pos});
                next.push_back({id, 0, 0});
            }
            if (pos < span.size()) next.push_back({-1, fr.offset + pos, span.size() - pos});
        }
        frags.swap(next);
    }
    return frags;
}

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    size_t bad = 0;
    if (!is_valid_utf8(text, &bad))
        throw_error(status::invalid_argument, "tokenizer: invalid utf-8 at byte offset {} (0x{:02x})", bad,
                    uint8_t(text[bad]));

    std::vector<int32_t> out;
    if (add_special && vocab_.add_bos) out.push_back(vocab_.bos);
    std::vector<fragment> frags = split_special(text, parse_special);
    std::string normalized;
    if (vocab_.normalize_nfc) {
        // as Hugging Face: special tokens are found in the raw text, the rest is normalised
        for (fragment & fr : frags) {
            if (fr.id >= 0) continue;
            const size_t offset = normalized.size();
            normalized += to_nfc(text.substr(fr.offset, fr.length));
            fr = {-1, offset, normalized.size() - offset};
        }
        text = normalized;
    }
    if (!spm_) {
        encode_bpe(text, frags, out);
    } else {
        bool after_special = true; // the first fragment gets the space prefix, like any after a special token
        std::string escaped;
        for (const fragment & fr : frags) {
            if (fr.id >= 0) {
                out.push_back(fr.id);
                after_special = true;
                continue;
            }
            escaped.clear();
            if (vocab_.add_space_prefix && after_special) escaped += k_space_marker;
            for (const char c : text.substr(fr.offset, fr.length)) {
                if (c == ' ')
                    escaped += k_space_marker;
                else
                    escaped += c;
            }
            encode_spm(escaped, out);
            after_special = false;
        }
    }
    if (add_special && vocab_.add_eos) out.push_back(vocab_.eos);
    return out;
}

// llm_tokenizer_spm: start from UTF-8 characters, repeatedly merge the adjacent pair whose
// concatenation is a token with the highest score (ties: leftmost), then look each piece up,
// falling back to byte tokens.
void tokenizer::encode_spm(std::string_view text, std::vector<int32_t> & out) const {
    struct symbol {
        int32_t prev, next;
        size_t offset, length; // length 0: merged into its left neighbour
    };
    struct bigram {
        float score;
        int32_t left, right;
        size_t length; // of both symbols when queued; a mismatch later means the entry is stale
    };
    auto lower = [](const bigram & a, const bigram & b) {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    };

    std::vector<symbol> syms;
    for (size_t off = 0; off < text.size();) {
        const size_t len = std::min(utf8_len(text[off]), text.size() - off);
        const auto i = int32_t(syms.size());
        syms.push_back({i - 1, off + len == text.size() ? -1 : i + 1, off, len});
        off += len;
    }
    if (syms.empty()) return;

    std::priority_queue<bigram, std::vector<bigram>, decltype(lower)> queue(lower);
    auto try_add = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const size_t len = syms[size_t(left)].length + syms[size_t(right)].length;
        const int32_t id = find(text.substr(syms[size_t(left)].offset, len));
        if (id < 0) return;
        queue.push({vocab_.scores[size_t(id)], left, right, len});
    };
    for (int32_t i = 1; i < int32_t(syms.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const bigram b = queue.top();
        queue.pop();
        symbol & l = syms[size_t(b.left)];
        symbol & r = syms[size_t(b.right)];
        if (l.length == 0 || r.length == 0 || l.length + r.length != b.length) continue;
        l.length += r.length;
        r.length = 0;
        l.next = r.next;
        if (r.next >= 0) syms[size_t(r.next)].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    // Every merged piece is a token; a leftover single character may not be (byte fallback).
    for (int32_t i = 0; i >= 0; i = syms[size_t(i)].next) {
        const std::string_view piece = text.substr(syms[size_t(i)].offset, syms[size_t(i)].length);
        const int32_t id = find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (const char c : piece) {
            const int32_t byte_id = byte_ids_[uint8_t(c)];
            if (byte_id < 0)
                throw_error(status::invalid_model,
                            "tokenizer: no token for byte 0x{:02X} (no byte token, no unknown token)", uint8_t(c));
            out.push_back(byte_id);
        }
    }
}

std::string tokenizer::token_to_piece(int32_t id, bool special) const {
    check_id(id);
    const std::string & text = vocab_.tokens[size_t(id)];
    switch (vocab_.attrs[size_t(id)]) {
    case token_attr::control:
    case token_attr::unknown:
        return special ? text : std::string();
    case token_attr::user_defined:
        return text;
    case token_attr::normal:
        return spm_ ? spm_piece(text) : gpt2_piece(text);
    case token_attr::byte: // llama.cpp prints byte-typed tokens of a BPE vocab as nothing
        return spm_ ? std::string(1, char(parse_byte_token(text))) : std::string();
    case token_attr::unused:
        break;
    }
    return {};
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool special) const {
    std::string out;
    size_t i = 0;
    if (!special && !ids.empty() && vocab_.bos >= 0 && ids[0] == vocab_.bos) i = 1; // prints as nothing
    bool strip = vocab_.add_space_prefix;
    for (; i < ids.size(); ++i) {
        const std::string piece = token_to_piece(ids[i], special);
        out.append(piece, strip && !piece.empty() && piece[0] == ' ' ? 1 : 0);
        strip = false;
    }
    return out;
}

std::string tokenizer::stream_piece(int32_t prev, int32_t id) const {
    std::string piece = token_to_piece(id);
    if (vocab_.add_space_prefix && prev >= 0 && prev == vocab_.bos && piece.starts_with(' ')) piece.erase(0, 1);
    return piece;
}

std::string utf8_stream::push(std::string_view bytes) {
    pending_ += bytes;
    std::string out;
    size_t pos = 0, n = 0;
    for (; pos < pending_.size(); pos += n) {
        const std::string_view rest = std::string_view(pending_).substr(pos);
        const utf8_seq seq = classify_utf8(rest, n);
        if (seq == utf8_seq::truncated) break;
        if (seq == utf8_seq::complete)
            out.append(rest.substr(0, n));
        else
            out += k_replacement;
    }
    pending_.erase(0, pos);
    return out;
}

std::string utf8_stream::flush() {
    // what is held is one truncated sequence: one U+FFFD, as a decoder at end of input gives
    std::string out = pending_.empty() ? std::string() : std::string(k_replacement);
    pending_.clear();
    return out;
}

std::string to_nfc(std::string_view s) {
    // ASCII is its own NFC
    if (std::all_of(s.begin(), s.end(), [](char c) { return uint8_t(c) < 0x80; })) return std::string(s);
    utf8proc_uint8_t * mapped = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t *>(s.data()),
                                            utf8proc_ssize_t(s.size()), &mapped, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0)
        throw_error(n == UTF8PROC_ERROR_NOMEM ? status::out_of_memory : status::internal,
                    "tokenizer: NFC normalisation of {} bytes failed: {}", s.size(), utf8proc_errmsg(n));
    std::string out(reinterpret_cast<const char *>(mapped), size_t(n));
    std::free(mapped);
    return out;
}

bool is_valid_utf8(std::string_view s, size_t * bad_offset) {
    size_t n = 0;
    for (size_t pos = 0; pos < s.size(); pos += n) {
        if (classify_utf8(s.substr(pos), n) != utf8_seq::complete) {
            if (bad_offset) *bad_offset = pos;
            return false;
        }
    }
    return true;
}

} // namespace frugal
