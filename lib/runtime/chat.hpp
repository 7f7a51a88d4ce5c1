// chat.hpp - built-in chat templates: C++ renderers (not a Jinja interpreter) that turn a
// conversation into exactly the prompt text the publishers' Jinja templates produce for it, and
// detection of the renderer a model needs. Tool calls and tool messages are out of scope.
//
// The text contains the special tokens the template writes (BOS, role markers, end tokens), so
// tokenize it with special-token parsing on and without adding another BOS.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace frugal {

enum class chat_role : uint8_t { system, user, assistant };

struct chat_message {
    chat_role role;
    std::string content;
};

enum class chat_format : uint8_t {
    none,        // no template: the caller's text is the whole prompt
    deepseek_r1, // DeepSeek-R1 and every R1-Distill-Qwen/Llama (Feb-2025 template: reply opens <think>\n)
    deepseek_v3, // DeepSeek-V3 / V3-0324
    deepseek_v2, // DeepSeek-V2 / V2-Lite Chat ("User: ... Assistant:")
    chatml,      // Qwen2 / Qwen2.5 turns (<|im_start|>role\n...<|im_end|>\n), no default system prompt
    llama3,      // Llama 3.0 Instruct
    llama31,     // Llama 3.1 Instruct: a system header with the knowledge and "today" dates, always
};

// "none", "deepseek-r1", "deepseek-v3", "deepseek-v2", "chatml", "llama3", "llama3.1"; and back
// (nullopt for an unknown name).
std::string_view chat_format_name(chat_format format);
std::optional<chat_format> chat_format_from_name(std::string_view name);

// The renderer for a model: from its tokenizer.chat_template text when it has one (a template
// none of the renderers reproduces, e.g. DeepSeek-V3.1's reasoning switch, gives none rather than
// a guess), else from the special tokens its vocabulary has. none when nothing fits.
chat_format detect_chat_format(std::string_view chat_template,
                               const std::function<bool(std::string_view)> & vocab_has_token);

// The vocabulary's BOS and EOS token texts ("" if it has none); written where the template writes
// bos_token / eos_token.
struct chat_tokens {
    std::string bos, eos;
};

// The prompt for `messages`, ending with the assistant's opening when add_generation_prompt.
// Throws status::invalid_argument for format none, an unknown format or role value, or no messages.
std::string render_chat(chat_format format, std::span<const chat_message> messages, bool add_generation_prompt,
                        const chat_tokens & tokens);

} // namespace frugal
