// chat_test.cpp - the built-in chat renderers against hand-written prompts (from MODEL-SPEC.md §4.4
// and the publishers' template texts), format detection on real templates and vocabularies, and an
// independent cross-check: the publishers' Jinja templates rendered by Hugging Face's JS engine
// (@huggingface/jinja, tests/tools/render_chat_template.mjs; scripts/setup-node-tools.sh installs
// it). Cases that need ../shared, the llama.cpp peer's source tree or Node skip without them.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "common/test_support.hpp"
#include "runtime/chat.hpp"
#include "util/error.hpp"

using frugal::chat_format;
using frugal::chat_message;
using frugal::chat_role;
using json = nlohmann::json;

namespace {

constexpr chat_role S = chat_role::system, U = chat_role::user, A = chat_role::assistant;
using conversation = std::vector<chat_message>;

const frugal::chat_tokens k_deepseek_tokens{"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"};
const frugal::chat_tokens k_llama_tokens{"<|begin_of_text|>", "<|eot_id|>"};
const frugal::chat_tokens k_qwen_tokens{"", "<|im_end|>"};

const frugal::chat_tokens & tokens_for(chat_format f) {
    switch (f) {
    case chat_format::llama3:
    case chat_format::llama31: return k_llama_tokens;
    case chat_format::chatml: return k_qwen_tokens;
    default: return k_deepseek_tokens;
    }
}

// The conversations of the hand-written cases; the cross-check uses these and more.
const std::map<std::string, conversation> k_conversations = {
    {"single", {{U, "Hello"}}},
    {"system+turns", {{S, "You are terse."}, {U, "Hi"}, {A, "Hello!"}, {U, "What is 2+2?"}}},
    {"reasoning", {{U, "What is 2+2?"}, {A, "<think>\nSimple sum.\n</think>\n\n4"}, {U, "And 3+3?"}}},
    {"two systems", {{S, "First rule."}, {U, "Hi"}, {S, "Second rule."}, {U, "Go"}}},
    {"ends with assistant", {{U, "Hi"}, {A, "Hello!"}}},
    // Jinja's trim is Python's str.strip(): U+3000 and U+00A0 are whitespace too.
    {"padded", {{S, "\u3000 Be brief.\n\t\u00a0"}, {U, "  padded text \n"}}},
};

struct hand_case {
    chat_format format;
    std::string conversation;
    bool add_generation_prompt;
    std::string expected;
};

// Written out by hand from the template texts, not produced by the renderers.
const hand_case k_hand_cases[] = {
    // DeepSeek-R1 (MODEL-SPEC §4.4): last system prompt raw after BOS, reasoning stripped, <think>\n opener.
    {chat_format::deepseek_r1, "single", true, "<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜><think>\n"},
    {chat_format::deepseek_r1, "single", false, "<｜begin▁of▁sentence｜><｜User｜>Hello"},
    {chat_format::deepseek_r1, "system+turns", true,
     "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>What is "
     "2+2?<｜Assistant｜><think>\n"},
    {chat_format::deepseek_r1, "reasoning", true,
     "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜><｜User｜>And "
     "3+3?<｜Assistant｜><think>\n"},
    {chat_format::deepseek_r1, "two systems", true,
     "<｜begin▁of▁sentence｜>Second rule.<｜User｜>Hi<｜User｜>Go<｜Assistant｜><think>\n"},
    {chat_format::deepseek_r1, "ends with assistant", false,
     "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>"},
    {chat_format::deepseek_r1, "padded", false,
     "<｜begin▁of▁sentence｜>\u3000 Be brief.\n\t\u00a0<｜User｜>  padded text \n"},

    // DeepSeek-V3: all system prompts joined by "\n\n", turns as they are.
    {chat_format::deepseek_v3, "single", true, "<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜>"},
    {chat_format::deepseek_v3, "single", false, "<｜begin▁of▁sentence｜><｜User｜>Hello"},
    {chat_format::deepseek_v3, "system+turns", true,
     "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>What is "
     "2+2?<｜Assistant｜>"},
    {chat_format::deepseek_v3, "reasoning", true,
     "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>"
     "<think>\nSimple sum.\n</think>\n\n4<｜end▁of▁sentence｜><｜User｜>And 3+3?<｜Assistant｜>"},
    {chat_format::deepseek_v3, "two systems", true,
     "<｜begin▁of▁sentence｜>First rule.\n\nSecond rule.<｜User｜>Hi<｜User｜>Go<｜Assistant｜>"},
    {chat_format::deepseek_v3, "ends with assistant", false,
     "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>"},

    // DeepSeek-V2: in-place turns, eos_token after each reply, "Assistant:" without a space.
    {chat_format::deepseek_v2, "single", true, "<｜begin▁of▁sentence｜>User: Hello\n\nAssistant:"},
    {chat_format::deepseek_v2, "single", false, "<｜begin▁of▁sentence｜>User: Hello\n\n"},
    {chat_format::deepseek_v2, "system+turns", true,
     "<｜begin▁of▁sentence｜>You are terse.\n\nUser: Hi\n\nAssistant: Hello!<｜end▁of▁sentence｜>User: What is "
     "2+2?\n\nAssistant:"},
    {chat_format::deepseek_v2, "reasoning", true,
     "<｜begin▁of▁sentence｜>User: What is 2+2?\n\nAssistant: <think>\nSimple sum.\n</think>\n\n4<｜end▁of▁sentence｜>"
     "User: And 3+3?\n\nAssistant:"},
    {chat_format::deepseek_v2, "two systems", true,
     "<｜begin▁of▁sentence｜>First rule.\n\nUser: Hi\n\nSecond rule.\n\nUser: Go\n\nAssistant:"},
    {chat_format::deepseek_v2, "ends with assistant", false,
     "<｜begin▁of▁sentence｜>User: Hi\n\nAssistant: Hello!<｜end▁of▁sentence｜>"},

    // ChatML: no BOS, no default system prompt, content untouched.
    {chat_format::chatml, "single", true, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
    {chat_format::chatml, "single", false, "<|im_start|>user\nHello<|im_end|>\n"},
    {chat_format::chatml, "system+turns", true,
     "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
     "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"},
    {chat_format::chatml, "reasoning", true,
     "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nSimple sum.\n</think>\n\n4<|im_end|>\n"
     "<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"},
    {chat_format::chatml, "two systems", false,
     "<|im_start|>system\nFirst rule.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>system\nSecond "
     "rule.<|im_end|>\n<|im_start|>user\nGo<|im_end|>\n"},
    {chat_format::chatml, "ends with assistant", false,
     "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"},

    // Llama 3: BOS, every turn trimmed.
    {chat_format::llama3, "single", true,
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\n"},
    {chat_format::llama3, "single", false,
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"},
    {chat_format::llama3, "system+turns", true,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {chat_format::llama3, "reasoning", false,
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\n<think>\nSimple sum.\n</think>\n\n4<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"},
    {chat_format::llama3, "two systems", true,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nFirst rule.<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>system<|end_header_id|>\n\nSecond rule.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nGo<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {chat_format::llama3, "padded", false,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\npadded text<|eot_id|>"},

    // Llama 3.1: a system turn with the dates always; a leading system message joins it, trimmed.
    {chat_format::llama31, "single", true,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday "
     "Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>"
     "assistant<|end_header_id|>\n\n"},
    {chat_format::llama31, "single", false,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday "
     "Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"},
    {chat_format::llama31, "system+turns", true,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday "
     "Date: 26 Jul 2024\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
     "What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {chat_format::llama31, "two systems", true,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday "
     "Date: 26 Jul 2024\n\nFirst rule.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
     "<|start_header_id|>system<|end_header_id|>\n\nSecond rule.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
     "Go<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {chat_format::llama31, "padded", false,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday "
     "Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\npadded text<|eot_id|>"},
};

// DeepSeek-R1-Distill-Llama-8B's tokenizer_config.json chat_template, Feb-2025 revision, as published
// (the same text is in DeepSeek-R1 and the Qwen distills; a llama.cpp conversion log of the HF file
// prints it verbatim). `\n` is a Jinja escape here, as in the JSON-decoded original.
constexpr std::string_view k_r1_template =
    R"jinja({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %})jinja"
    R"jinja({% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %})jinja"
    R"jinja({%- for message in messages %}{%- if message['role'] == 'system' %})jinja"
    R"jinja({% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}})jinja"
    R"jinja({{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %})jinja"
    R"jinja({%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %})jinja"
    R"jinja({%- if message['role'] == 'assistant' and message['content'] is none %})jinja"
    R"jinja({%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %})jinja"
    R"jinja({{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}})jinja"
    R"jinja({%- set ns.is_first = true -%}{%- else %})jinja"
    R"jinja({{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}})jinja"
    R"jinja({{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %})jinja"
    R"jinja({%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %})jinja"
    R"jinja({{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}})jinja"
    R"jinja({%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %})jinja"
    R"jinja({% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %})jinja"
    R"jinja({{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %})jinja"
    R"jinja({%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %})jinja"
    R"jinja({{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}})jinja"
    R"jinja({%- set ns.is_output_first = false %}{%- else %})jinja"
    R"jinja({{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %})jinja"
    R"jinja({%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %})jinja"
    R"jinja({% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %})jinja";

// DeepSeek-V2(-Lite)-Chat's chat_template (also DeepSeek-LLM-Chat's; llama.cpp's test-chat-template
// carries the same text).
constexpr std::string_view k_v2_template =
    R"jinja({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %})jinja"
    R"jinja({{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %})jinja"
    R"jinja({{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %})jinja"
    R"jinja({{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %})jinja"
    R"jinja({{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %})jinja"
    R"jinja({{ 'Assistant:' }}{% endif %})jinja";

std::optional<std::string> shared_template(const std::string & tokenizer) {
    const auto path = frugal::test::shared_data("tokenizers/" + tokenizer + "/tokenizer_config.json");
    if (!path) return std::nullopt;
    std::ifstream in(*path);
    return json::parse(in).at("chat_template").get<std::string>();
}

// A template from the llama.cpp peer's source tree (fetched from the publishers' repos by its
// scripts/get_chat_template.py), or nullopt.
std::optional<std::string> peer_template(const std::string & file) {
    std::ifstream in(frugal::test::peer_dir() / "llama.cpp/source/models/templates" / file);
    if (!in) return std::nullopt;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string show_role(chat_role r) { return r == S ? "system" : r == U ? "user" : "assistant"; }

} // namespace

TEST_CASE("render_chat: hand-written prompts for every format" * doctest::timeout(10)) {
    for (const auto & c : k_hand_cases) {
        const std::string format(frugal::chat_format_name(c.format));
        CAPTURE(format);
        CAPTURE(c.conversation);
        CAPTURE(c.add_generation_prompt);
        CHECK(frugal::render_chat(c.format, k_conversations.at(c.conversation), c.add_generation_prompt,
                                  tokens_for(c.format)) == c.expected);
    }
}

TEST_CASE("render_chat: R1 keeps only the text after the last </think>" * doctest::timeout(10)) {
    const conversation conv = {{U, "x"}, {A, "<think>one</think>two</think>\nthree"}, {A, "<think>unclosed"}};
    CHECK(frugal::render_chat(chat_format::deepseek_r1, conv, false, {"", ""}) ==
          "<｜User｜>x<｜Assistant｜>\nthree<｜end▁of▁sentence｜><｜Assistant｜><think>unclosed<｜end▁of▁sentence｜>");
}

TEST_CASE("render_chat: errors name the offending value" * doctest::timeout(10)) {
    const conversation one = {{U, "hi"}};
    const conversation bad_role = {{U, "hi"}, {chat_role(7), "?"}};
    const struct {
        chat_format format;
        const conversation * messages;
        std::string needle;
    } cases[] = {
        {chat_format::none, &one, "format none"},
        {chat_format(42), &one, "chat_format value 42"},
        {chat_format::chatml, &bad_role, "chat_role value 7"},
        {chat_format::deepseek_r1, &bad_role, "chat_role value 7"}, // R1 would otherwise skip it silently
        {chat_format::llama3, nullptr, "no messages"},
    };
    for (const auto & c : cases) {
        CAPTURE(c.needle);
        const std::span<const chat_message> messages =
            c.messages ? std::span(*c.messages) : std::span<const chat_message>();
        try {
            frugal::render_chat(c.format, messages, true, k_deepseek_tokens);
            FAIL("no frugal::error");
        } catch (const frugal::error & e) {
            CHECK(e.code() == frugal::status::invalid_argument);
            CHECK_MESSAGE(std::string_view(e.what()).find(c.needle) != std::string_view::npos, e.what());
        }
    }
}

TEST_CASE("chat_format names round-trip" * doctest::timeout(10)) {
    for (auto f : {chat_format::none, chat_format::deepseek_r1, chat_format::deepseek_v3, chat_format::deepseek_v2,
                   chat_format::chatml, chat_format::llama3, chat_format::llama31})
        CHECK(frugal::chat_format_from_name(frugal::chat_format_name(f)) == f);
    CHECK(frugal::chat_format_name(chat_format::deepseek_r1) == "deepseek-r1");
    CHECK(frugal::chat_format_name(chat_format::llama31) == "llama3.1");
    CHECK_FALSE(frugal::chat_format_from_name("deepseek3").has_value());
}

TEST_CASE("detect_chat_format: synthetic vocabularies" * doctest::timeout(10)) {
    const auto detect = [](std::set<std::string, std::less<>> vocab) {
        return frugal::detect_chat_format("", [&](std::string_view t) { return vocab.count(t) > 0; });
    };
    CHECK(detect({"<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"}) ==
          chat_format::deepseek_r1);
    CHECK(detect({"<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"}) == chat_format::deepseek_v3);
    CHECK(detect({"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"}) == chat_format::deepseek_v2);
    CHECK(detect({"<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>"}) == chat_format::llama3);
    CHECK(detect({"<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>", "<|eom_id|>"}) == chat_format::llama31);
    CHECK(detect({"<|im_start|>", "<|im_end|>", "<think>"}) == chat_format::chatml);
    CHECK(detect({"<s>", "</s>"}) == chat_format::none);
    CHECK(frugal::detect_chat_format("", nullptr) == chat_format::none);
    // A template decides even when the vocabulary suggests otherwise; one no renderer fits gives none.
    CHECK(frugal::detect_chat_format(k_v2_template, [](std::string_view) { return true; }) == chat_format::deepseek_v2);
    CHECK(frugal::detect_chat_format("{{ '[INST] ' + m }}", [](std::string_view) { return true; }) ==
          chat_format::none);
}

TEST_CASE("detect_chat_format: published and ../shared templates" * doctest::timeout(30)) {
    CHECK(frugal::detect_chat_format(k_r1_template, nullptr) == chat_format::deepseek_r1);
    CHECK(frugal::detect_chat_format(k_v2_template, nullptr) == chat_format::deepseek_v2);

    // ../shared: the llama3.1 folder's template is Llama 3's later revision (no dates), so llama3.
    const std::pair<std::string, chat_format> shared[] = {
        {"deepseek-v3", chat_format::deepseek_v3},
        {"llama3", chat_format::llama3},
        {"llama3.1", chat_format::llama3},
        {"qwen2", chat_format::chatml}, // Qwen3's template
    };
    for (const auto & [name, want] : shared) {
        CAPTURE(name);
        const auto tmpl = shared_template(name);
        if (!tmpl) FRUGAL_SKIP("../shared/data/tokenizers is not available");
        CHECK(frugal::detect_chat_format(*tmpl, nullptr) == want);
    }
}

TEST_CASE("detect_chat_format: templates from the llama.cpp peer's tree" * doctest::timeout(30)) {
    const std::pair<std::string, chat_format> peer[] = {
        {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", chat_format::deepseek_r1},
        {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", chat_format::deepseek_r1},
        {"deepseek-ai-DeepSeek-V3.1.jinja", chat_format::none}, // reasoning on/off switch: not built in
        {"deepseek-ai-DeepSeek-V3.2.jinja", chat_format::none},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", chat_format::llama31},
        {"meta-llama-Llama-3.2-3B-Instruct.jinja", chat_format::llama31}, // but writes today's date (strftime_now)
        {"meta-llama-Llama-3.3-70B-Instruct.jinja", chat_format::llama31},
        {"Qwen-Qwen2.5-7B-Instruct.jinja", chat_format::chatml},
        {"Qwen-Qwen3-0.6B.jinja", chat_format::chatml},
        {"Qwen-QwQ-32B.jinja", chat_format::chatml},
        {"mistralai-Mistral-Nemo-Instruct-2407.jinja", chat_format::none},
        {"google-gemma-2-2b-it.jinja", chat_format::none},
    };
    for (const auto & [file, want] : peer) {
        CAPTURE(file);
        const auto tmpl = peer_template(file);
        if (!tmpl) FRUGAL_SKIP("no llama.cpp peer source tree (../shared/tools/setup-peer.sh --source)");
        CHECK(frugal::detect_chat_format(*tmpl, nullptr) == want);
    }
}

TEST_CASE("detect_chat_format: real vocabularies" * doctest::timeout(60)) {
    // The ../shared llama3.1 vocabulary is Llama 3's (128008 is still a reserved token), so llama3.
    const std::pair<std::string, chat_format> cases[] = {
        {"deepseek-v3", chat_format::deepseek_v3}, // V3 has no <think> token (R1's 128798)
        {"llama3", chat_format::llama3},
        {"llama3.1", chat_format::llama3},
        {"qwen2", chat_format::chatml},
    };
    for (const auto & [name, want] : cases) {
        CAPTURE(name);
        const auto path = frugal::test::shared_data("tokenizers/" + name + "/tokenizer.json");
        if (!path) FRUGAL_SKIP("../shared/data/tokenizers is not available");
        std::ifstream in(*path);
        const json tok = json::parse(in);
        std::set<std::string, std::less<>> vocab;
        for (const auto & t : tok.at("added_tokens")) vocab.insert(t.at("content").get<std::string>());
        for (const auto & [text, id] : tok.at("model").at("vocab").items()) vocab.insert(text);
        CHECK(frugal::detect_chat_format("", [&](std::string_view t) { return vocab.count(t) > 0; }) == want);
    }
}

namespace {

// The cross-check's conversations: the hand-written ones and harder ones.
std::vector<std::pair<std::string, conversation>> cross_check_conversations() {
    std::vector<std::pair<std::string, conversation>> all(k_conversations.begin(), k_conversations.end());
    const std::pair<std::string, conversation> more[] = {
        {"several thinks", {{U, "x"}, {A, "<think>one</think>two</think>\nthree"}, {U, "y"}}},
        {"unclosed think", {{U, "q"}, {A, "<think>unfinished reasoning"}, {U, "go on"}}},
        {"reasoning twice",
         {{S, "Be exact."}, {U, "u1"}, {A, "<think>r1</think>a1"}, {U, "u2"}, {A, "<think>\nr2\n</think>\n\na2"},
          {U, "u3"}}},
        {"unicode", {{U, "日本語 — ünïcödé 🙂"}, {A, "Ответ: да."}, {U, "<|im_end|> and <｜User｜> stay text"}}},
        {"empty contents", {{S, ""}, {U, ""}, {A, ""}, {U, "?"}}},
        {"assistant first", {{A, "I start."}, {U, "ok"}, {U, "again"}}},
        {"system only", {{S, "Only a system prompt."}}},
        {"whitespace turns", {{U, " \n lead"}, {A, " \n spaced reply\t"}, {U, "\n"}}},
    };
    all.insert(all.end(), std::begin(more), std::end(more));
    return all;
}

struct oracle {
    std::string name;
    std::optional<std::string> text; // nullopt: not available here
    chat_format format;
    // Which conversations and flags the template and the renderer must agree on.
    std::function<bool(const conversation &, bool add_generation_prompt)> applies;
};

bool always(const conversation &, bool) { return true; }

// Qwen3's template equals plain ChatML unless an assistant turn carries </think> or the
// conversation ends with an assistant turn (then it writes a <think> block).
bool qwen3_is_chatml(const conversation & c, bool) {
    for (const auto & m : c)
        if (m.role == A && m.content.find("</think>") != std::string::npos) return false;
    return c.back().role != A;
}

// Runs tests/tools/render_chat_template.mjs on `requests`; nullopt (with `why`) when Node or the
// package is not there.
std::optional<json> render_with_jinja(const json & requests, std::string & why) {
    const auto dir = frugal::test::scratch_dir("chat");
    const auto in = dir / "requests.json", out = dir / "renderings.json", err = dir / "stderr.txt";
    std::ofstream(in) << requests.dump();
    using frugal::test::sh_quote;
    const std::filesystem::path script = std::string(FRUGAL_TEST_SOURCE_DIR) + "/tools/render_chat_template.mjs";
    const std::string cmd =
        "node " + sh_quote(script) + " < " + sh_quote(in) + " > " + sh_quote(out) + " 2> " + sh_quote(err);
    const int rc = std::system(cmd.c_str());
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    std::stringstream err_text;
    err_text << std::ifstream(err).rdbuf();
    if (code == 127 || code == 77) {
        why = code == 127 ? "node is not installed" : err_text.str();
        return std::nullopt;
    }
    REQUIRE_MESSAGE(code == 0, "render_chat_template.mjs failed (" << code << "): " << err_text.str());
    std::ifstream result(out);
    return json::parse(result);
}

} // namespace

TEST_CASE("render_chat agrees with the publishers' templates rendered by @huggingface/jinja" * doctest::timeout(120)) {
    const oracle oracles[] = {
        {"DeepSeek-R1 (published, Feb 2025)", std::string(k_r1_template), chat_format::deepseek_r1, always},
        {"DeepSeek-V2-Chat (published)", std::string(k_v2_template), chat_format::deepseek_v2, always},
        {"../shared deepseek-v3", shared_template("deepseek-v3"), chat_format::deepseek_v3, always},
        // Llama 3's first revision writes the generation prompt whatever the flag says.
        {"../shared llama3", shared_template("llama3"), chat_format::llama3,
         [](const conversation &, bool gen) { return gen; }},
        {"../shared llama3.1 (Llama 3's later revision)", shared_template("llama3.1"), chat_format::llama3, always},
        {"../shared qwen2 (Qwen3)", shared_template("qwen2"), chat_format::chatml, qwen3_is_chatml},
        {"peer Llama-3.1-8B-Instruct", peer_template("meta-llama-Llama-3.1-8B-Instruct.jinja"), chat_format::llama31,
         always},
        // Qwen2.5 adds its own system prompt when the conversation does not start with one.
        {"peer Qwen2.5-7B-Instruct", peer_template("Qwen-Qwen2.5-7B-Instruct.jinja"), chat_format::chatml,
         [](const conversation & c, bool) { return c.front().role == S; }},
    };

    struct check {
        const oracle * source;
        std::string conversation;
        bool add_generation_prompt;
        std::string ours;
    };
    std::vector<check> checks;
    json requests = json::array();
    std::vector<std::string> unavailable;
    for (const auto & o : oracles) {
        if (!o.text) {
            unavailable.push_back(o.name);
            continue;
        }
        const auto & tokens = tokens_for(o.format);
        for (const auto & [name, conv] : cross_check_conversations()) {
            for (bool gen : {false, true}) {
                if (!o.applies(conv, gen)) continue;
                json messages = json::array();
                for (const auto & m : conv) messages.push_back({{"role", show_role(m.role)}, {"content", m.content}});
                requests.push_back({{"template", *o.text},
                                    {"messages", messages},
                                    {"bos_token", tokens.bos},
                                    {"eos_token", tokens.eos},
                                    {"add_generation_prompt", gen}});
                checks.push_back({&o, name, gen, frugal::render_chat(o.format, conv, gen, tokens)});
            }
        }
    }

    std::string why;
    const auto jinja = render_with_jinja(requests, why);
    if (!jinja) FRUGAL_SKIP("no Jinja oracle: " + why + " (run scripts/setup-node-tools.sh)");
    REQUIRE(jinja->size() == checks.size());
    size_t equal = 0;
    for (size_t i = 0; i < checks.size(); ++i) {
        const auto & c = checks[i];
        const auto & source = c.source->name;
        CAPTURE(source);
        CAPTURE(c.conversation);
        CAPTURE(c.add_generation_prompt);
        const auto want = (*jinja)[i].get<std::string>();
        CHECK(c.ours == want);
        equal += c.ours == want;
    }
    std::printf("chat: %zu of %zu renderings equal to @huggingface/jinja's", equal, checks.size());
    for (const auto & u : unavailable) std::printf("; %s: not available, skipped", u.c_str());
    std::printf("\n");
}
