// chat.cpp - the built-in chat renderers. Each follows its publisher's Jinja template line by line
// (the texts are in tokenizer_config.json "chat_template"); tests/unit/chat_test.cpp checks them
// against hand-written prompts and against the templates rendered by a Jinja engine.
#include "runtime/chat.hpp"

#include <array>
#include <utility>

#include "util/error.hpp"

namespace frugal {

namespace {

// DeepSeek's chat tokens: fullwidth bar U+FF5C, and U+2581 in place of spaces.
constexpr std::string_view k_ds_user = "<｜User｜>";
constexpr std::string_view k_ds_assistant = "<｜Assistant｜>";
constexpr std::string_view k_ds_end = "<｜end▁of▁sentence｜>";

constexpr std::array<std::pair<chat_format, std::string_view>, 7> k_names{{
    {chat_format::none, "none"},
    {chat_format::deepseek_r1, "deepseek-r1"},
    {chat_format::deepseek_v3, "deepseek-v3"},
    {chat_format::deepseek_v2, "deepseek-v2"},
    {chat_format::chatml, "chatml"},
    {chat_format::llama3, "llama3"},
    {chat_format::llama31, "llama3.1"},
}};

std::string_view role_name(chat_role role) {
    switch (role) {
    case chat_role::system: return "system";
    case chat_role::user: return "user";
    case chat_role::assistant: return "assistant";
    }
    throw_error(status::invalid_argument, "chat: unknown chat_role value {}", int(role));
}

// The code point at s[i] and its length; malformed UTF-8 reads as one byte of U+FFFD.
std::pair<char32_t, size_t> decode_utf8(std::string_view s, size_t i) {
    const auto b = uint8_t(s[i]);
    const size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return {0xFFFD, 1};
    char32_t c = n == 1 ? b : b & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
        const auto cb = uint8_t(s[i + k]);
        if ((cb & 0xC0) != 0x80) return {0xFFFD, 1};
        c = (c << 6) | (cb & 0x3F);
    }
    return {c, n};
}

// Python's str.isspace(): Jinja's trim filter is str.strip(), which strips these, not just ASCII.
bool is_python_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Jinja's `| trim`.
std::string_view trim(std::string_view s) {
    while (!s.empty()) {
        const auto [c, n] = decode_utf8(s, 0);
        if (!is_python_space(c)) break;
        s.remove_prefix(n);
    }
    while (!s.empty()) {
        size_t start = s.size() - 1; // first byte of the last character
        while (start > 0 && s.size() - start < 4 && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
        const auto [c, n] = decode_utf8(s, start);
        if (n != s.size() - start || !is_python_space(c)) break;
        s.remove_suffix(n);
    }
    return s;
}

// DeepSeek-R1 and V3 share one template layout. Both hoist the system prompt to the front, right
// after BOS with no tag: R1 keeps the last system message (a plain assignment in its loop), V3
// joins them all with "\n\n". R1 drops every assistant turn's reasoning (the text up to its last
// </think>) and opens the reply with <think>\n; V3 writes turns as they are. Both write the end
// token literally, not eos_token.
std::string render_deepseek(std::span<const chat_message> messages, bool add_generation_prompt,
                            const chat_tokens & tokens, bool r1) {
    std::string system;
    bool first_system = true;
    for (const auto & m : messages) {
        if (m.role != chat_role::system) continue;
        system = r1 || first_system ? m.content : system + "\n\n" + m.content;
        first_system = false;
    }
    std::string out = tokens.bos + system;
    for (const auto & m : messages) {
        if (m.role == chat_role::user) {
            out += k_ds_user;
            out += m.content;
        } else if (m.role == chat_role::assistant) {
            std::string_view content = m.content;
            const size_t think_end = r1 ? content.rfind("</think>") : std::string_view::npos;
            if (think_end != std::string_view::npos)
                content.remove_prefix(think_end + std::string_view("</think>").size());
            out += k_ds_assistant;
            out += content;
            out += k_ds_end;
        }
    }
    if (add_generation_prompt) {
        out += k_ds_assistant;
        if (r1) out += "<think>\n";
    }
    return out;
}

// DeepSeek-V2(-Lite) Chat's template, also DeepSeek-LLM Chat's (taken from public copies of the
// tokenizer_config.json and llama.cpp's test-chat-template; not re-read from the HF repos):
//   {{ bos_token }}{% for message in messages %}
//   {% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}
//   {% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}
//   {% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}
//   {% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}
// llama.cpp's built-in (LLM_CHAT_TEMPLATE_DEEPSEEK_2) writes the same text without BOS (its
// tokenizer adds it) and with <｜end▁of▁sentence｜> for eos_token, which is V2's EOS. The generation
// prompt has no trailing space: the model's first token carries it.
std::string render_deepseek_v2(std::span<const chat_message> messages, bool add_generation_prompt,
                               const chat_tokens & tokens) {
    std::string out = tokens.bos;
    for (const auto & m : messages) {
        switch (m.role) {
        case chat_role::system: out += m.content + "\n\n"; break;
        case chat_role::user: out += "User: " + m.content + "\n\n"; break;
        case chat_role::assistant: out += "Assistant: " + m.content + tokens.eos; break;
        }
    }
    if (add_generation_prompt) out += "Assistant:";
    return out;
}

// Plain ChatML, as llama.cpp's built-in writes it. Qwen2 and Qwen2.5's templates add a default
// system message when the conversation has none ("You are a helpful assistant." / "You are Qwen,
// created by Alibaba Cloud. ..."); Qwen3's does not. That text is model-specific, so it is left to
// the caller to pass as a system message. Qwen3's template also rewrites <think> blocks in
// assistant turns after the last user turn; that is not reproduced.
std::string render_chatml(std::span<const chat_message> messages, bool add_generation_prompt) {
    std::string out;
    for (const auto & m : messages) {
        out += "<|im_start|>";
        out += role_name(m.role);
        out += "\n" + m.content + "<|im_end|>\n";
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

void append_llama_turn(std::string & out, std::string_view role, std::string_view content) {
    out += "<|start_header_id|>";
    out += role;
    out += "<|end_header_id|>\n\n";
    out += trim(content);
    out += "<|eot_id|>";
}

// Llama 3.0 writes BOS before the first turn and every turn trimmed. Its first published template
// wrote the generation prompt unconditionally; the later revision (and llama.cpp) honour the flag,
// as this does. Llama 3.1 (no tools, no date_string given) always opens with a system turn holding
// the knowledge cutoff and the template's default date, then the first message's text if that is
// a system message; later system messages are ordinary turns.
std::string render_llama3(std::span<const chat_message> messages, bool add_generation_prompt,
                          const chat_tokens & tokens, bool llama31) {
    std::string out = tokens.bos;
    if (llama31) {
        std::string system = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
        if (messages.front().role == chat_role::system) {
            system += trim(messages.front().content);
            messages = messages.subspan(1);
        }
        // Appended as is: the template trims the system text but not this header.
        out += "<|start_header_id|>system<|end_header_id|>\n\n" + system + "<|eot_id|>";
    }
    for (const auto & m : messages) append_llama_turn(out, role_name(m.role), m.content);
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

} // namespace

std::string_view chat_format_name(chat_format format) {
    for (const auto & [f, name] : k_names)
        if (f == format) return name;
    throw_error(status::invalid_argument, "chat: unknown chat_format value {}", int(format));
}

std::optional<chat_format> chat_format_from_name(std::string_view name) {
    for (const auto & [f, n] : k_names)
        if (n == name) return f;
    return std::nullopt;
}

chat_format detect_chat_format(std::string_view chat_template,
                               const std::function<bool(std::string_view)> & vocab_has_token) {
    const auto has = [&](std::string_view marker) { return chat_template.find(marker) != std::string_view::npos; };
    if (!chat_template.empty()) {
        if (has(k_ds_assistant)) {
            // Every R1 revision drops earlier reasoning with split('</think>')[-1]; the Feb-2025
            // one (and the distills') also opens the reply with <think>\n (a Jinja escape).
            if (has("split('</think>')[-1]") || has("<｜Assistant｜><think>\\n")) return chat_format::deepseek_r1;
            // V3.1 and later switch reasoning on and off (<think></think>, a `thinking` flag).
            return has("think>") ? chat_format::none : chat_format::deepseek_v3;
        }
        // Also Llama 3.3 (the same template) and 3.2, which writes today's date instead of 26 Jul 2024.
        if (has("Cutting Knowledge Date")) return chat_format::llama31;
        if (has("<|start_header_id|>")) return chat_format::llama3;
        if (has("<|im_start|>")) return chat_format::chatml;
        if (has("User: ") && has("Assistant: ") && has("eos_token")) return chat_format::deepseek_v2;
        return chat_format::none;
    }
    if (!vocab_has_token) return chat_format::none;
    if (vocab_has_token(k_ds_assistant))
        return vocab_has_token("<think>") ? chat_format::deepseek_r1 : chat_format::deepseek_v3;
    // 128008 is <|eom_id|> from Llama 3.1 on, a reserved token in 3.0.
    if (vocab_has_token("<|start_header_id|>"))
        return vocab_has_token("<|eom_id|>") ? chat_format::llama31 : chat_format::llama3;
    if (vocab_has_token("<|im_start|>")) return chat_format::chatml;
    // DeepSeek-LLM / V2 vocabularies: DeepSeek's sentence tokens without V3's chat tokens.
    if (vocab_has_token(k_ds_end)) return chat_format::deepseek_v2;
    return chat_format::none;
}

std::string render_chat(chat_format format, std::span<const chat_message> messages, bool add_generation_prompt,
                        const chat_tokens & tokens) {
    if (format == chat_format::none)
        throw_error(status::invalid_argument, "chat: format none has no template; the prompt is the text as given");
    if (messages.empty()) throw_error(status::invalid_argument, "chat: no messages to render");
    for (const auto & m : messages) role_name(m.role); // rejects out-of-range roles before any output
    switch (format) {
    case chat_format::deepseek_r1: return render_deepseek(messages, add_generation_prompt, tokens, true);
    case chat_format::deepseek_v3: return render_deepseek(messages, add_generation_prompt, tokens, false);
    case chat_format::deepseek_v2: return render_deepseek_v2(messages, add_generation_prompt, tokens);
    case chat_format::chatml: return render_chatml(messages, add_generation_prompt);
    case chat_format::llama3: return render_llama3(messages, add_generation_prompt, tokens, false);
    case chat_format::llama31: return render_llama3(messages, add_generation_prompt, tokens, true);
    case chat_format::none: break;
    }
    throw_error(status::invalid_argument, "chat: unknown chat_format value {}", int(format));
}

} // namespace frugal
