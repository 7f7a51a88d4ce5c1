// tokenizer_internal.hpp - what the vocabulary loaders (tokenizer.cpp for GGUF, tokenizer_hf.cpp for
// tokenizer.json) share with the byte-level BPE encoder (tokenizer_bpe.cpp). Not installed.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "runtime/tokenizer.hpp"

namespace frugal::detail {

// GPT-2's pre-tokenizer regex (Hugging Face's ByteLevel with use_regex; llama.cpp's "gpt-2").
inline constexpr std::string_view k_gpt2_regex =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

// llama.cpp's load-time fix-ups by token text: end-of-turn and FIM markers become control tokens,
// and a missing eot id is found by its text.
void mark_special_texts(vocab & v);

// The tokenizer.ggml.pre name whose regexes equal a tokenizer.json pre-tokenizer's Split regexes
// (in order; a ByteLevel step with use_regex contributes GPT-2's regex) and whose merge rule is
// the file's (`ignore_merges`), if one does.
std::optional<std::string> bpe_pre_name(std::span<const std::string> hf_regexes, bool ignore_merges);

// Whether the pre-tokenizer belongs to a tokenizer that normalises to NFC (Qwen2: tokenizer.json
// has an NFC normalizer, which a GGUF file cannot record).
bool bpe_pre_normalizes_nfc(std::string_view pre);

} // namespace frugal::detail
