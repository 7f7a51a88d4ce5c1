// tokenizer.hpp - vocabularies from GGUF files (MODEL-SPEC.md §3.5) or Hugging Face tokenizer.json
// directories (tokenizer_hf.cpp), and their encoders, written to give exactly llama.cpp's ids and
// Hugging Face's: SentencePiece ("llama", llm_tokenizer_spm) and byte-level BPE ("gpt2",
// llm_tokenizer_bpe, in tokenizer_bpe.cpp). UTF-8 helpers for streaming live here too.
// A tokenizer is immutable after construction: any number of threads may use one at once.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/chat.hpp"
#include "runtime/gguf.hpp"

namespace frugal {

struct bpe_model; // tokenizer_bpe.cpp

// tokenizer.ggml.token_type 1..6, in that order (0, "undefined", loads as `unused`).
enum class token_attr : uint8_t { normal, unknown, control, user_defined, unused, byte };

struct vocab {
    std::string model; // tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    std::string pre;   // tokenizer.ggml.pre (may be empty)
    std::vector<std::string> tokens;
    std::vector<float> scores; // one per token (zeros when the file has none)
    std::vector<token_attr> attrs;
    std::vector<std::string> merges; // BPE only: "left right", rank = index
    int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1; // -1 = none
    bool add_bos = true, add_eos = false, add_space_prefix = true;
    // Text between special tokens is put in Unicode NFC before splitting (Qwen's normalizer).
    bool normalize_nfc = false;
    std::string chat_template;

    // Reads tokenizer.* with llama.cpp's defaults per model type (llama: bos 1, eos 2, unk 0, BOS added,
    // space prefix; gpt2: neither, except BOS for the llama3-style pre-tokenizers) and its load-time
    // fix-ups: empty token texts become "[EMPTY_<id>]", a missing eot is found by its text, and
    // end-of-turn / FIM marker tokens are typed control. Throws status::invalid_model naming the key
    // and value when arrays disagree in length or an id is out of range, status::unsupported_model
    // for another tokenizer model.
    static vocab from_gguf(const gguf::file & f);

    // Reads a Hugging Face byte-level BPE tokenizer: `path` is a directory holding tokenizer.json
    // (and optionally tokenizer_config.json), or a tokenizer.json file. The result is what
    // llama.cpp's converter would write into a GGUF file for the same tokenizer, so both sources
    // encode identically: added tokens are typed control when special or special-looking
    // ("<|...|>", "<｜...｜>"), else user-defined; the pre-tokenizer regexes are matched to a
    // tokenizer.ggml.pre name; BOS / EOS and add_bos come from tokenizer_config.json, or from a
    // TemplateProcessing post-processor that starts with a special token. Throws status::io when a
    // file cannot be read, status::invalid_model naming the file and field for malformed content,
    // status::unsupported_model for another model type or an unknown pre-tokenizer.
    static vocab from_hf(const std::filesystem::path & path);

    // A GGUF file (weights, if any, are not read) or a Hugging Face tokenizer as from_hf takes it.
    static vocab load(const std::filesystem::path & path);
};

class tokenizer {
public:
    // Throws status::invalid_model when `v` is inconsistent (array lengths, ids, malformed <0xXX>),
    // status::unsupported_model for a model other than llama / gpt2.
    explicit tokenizer(vocab v);

    const vocab & get_vocab() const { return vocab_; }
    int32_t n_vocab() const { return int32_t(vocab_.tokens.size()); }
    // The id of the token whose text is exactly `text`, -1 if none.
    int32_t token_id(std::string_view text) const { return find(text); }
    // The chat renderer this vocabulary's template (or, without one, its special tokens) calls for.
    frugal::chat_format chat_format() const { return chat_format_; }
    // render_chat with this vocabulary's BOS and EOS texts.
    std::string apply_chat_template(frugal::chat_format format, std::span<const chat_message> messages,
                                    bool add_generation_prompt) const;

    // Text -> ids. add_special: BOS first / EOS last as the vocab says. parse_special: control and
    // unknown token texts written in the text (e.g. "<s>") become those tokens; user-defined token
    // texts always do (as llama.cpp). Invalid UTF-8 -> status::invalid_argument naming the byte
    // offset. A gpt2 vocab whose tokenizer.ggml.pre has no pre-tokenizer here (see
    // tokenizer_bpe.cpp) -> status::unsupported_model naming it.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // One token's bytes as text shows them (SPM: "▁" -> " ", <0xAB> -> that raw byte; gpt2: the
    // byte-level code points back to bytes). Control and unknown tokens are empty unless `special`.
    // A piece may be part of a UTF-8 character: stream through utf8_stream. Bad id ->
    // status::invalid_argument.
    std::string token_to_piece(int32_t id, bool special = false) const;

    // Concatenated pieces. With add_space_prefix the first piece loses its leading space, as the
    // encoder added it; a leading BOS does not count as that first piece unless `special` shows it
    // (llama2.c / SentencePiece; llama.cpp's llama_detokenize keeps the space after a BOS).
    std::string decode(std::span<const int32_t> ids, bool special = false) const;

    // The text `id` adds when it follows `prev` in a generated stream: token_to_piece, except
    // that the space the encoder prefixed to the first word is dropped right after BOS (the
    // streaming form of decode's rule).
    std::string stream_piece(int32_t prev, int32_t id) const;

    // eos, eot, and tokens whose text llama.cpp treats as end of generation (<|eot_id|>, <|im_end|>,
    // <｜end▁of▁sentence｜>, FIM pad/repo/file-separator tokens, ...). False for ids out of range.
    bool is_eog(int32_t id) const;

private:
    struct string_hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    struct fragment {
        int32_t id; // -1: text [offset, offset + length) still to be encoded
        size_t offset, length;
    };

    int32_t find(std::string_view text) const;
    void check_id(int32_t id) const;
    std::vector<fragment> split_special(std::string_view text, bool parse_special) const;
    void encode_spm(std::string_view text, std::vector<int32_t> & out) const;
    void init_bpe();
    void encode_bpe(std::string_view text, const std::vector<fragment> & frags, std::vector<int32_t> & out) const;

    vocab vocab_;
    bool spm_ = true; // else byte-level BPE
    std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>> ids_;
    std::vector<int32_t> specials_; // control / user-defined / unknown ids, longest text first
    std::vector<int32_t> eog_;      // sorted
    std::array<int32_t, 256> byte_ids_{}; // SPM byte fallback; -1 = none
    std::shared_ptr<const bpe_model> bpe_; // gpt2 vocabs: pre-tokenizer and merges
    frugal::chat_format chat_format_ = frugal::chat_format::none;
};

// Streaming UTF-8 assembly: push() returns only complete characters and holds back an incomplete
// tail; sequences that can never complete become U+FFFD at once; flush() returns what is held (as
// U+FFFD) and empties the stream. Every returned string is valid UTF-8.
class utf8_stream {
public:
    std::string push(std::string_view bytes);
    std::string flush();

private:
    std::string pending_;
};

// Unicode NFC of valid UTF-8 (utf8proc's tables, Unicode 15).
std::string to_nfc(std::string_view s);

// Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). On failure *bad_offset is
// the offset of the first byte that does not start a valid sequence.
bool is_valid_utf8(std::string_view s, size_t * bad_offset = nullptr);

} // namespace frugal
