// session_test.cpp - session defaults that depend on the model: DeepSeek's recommended sampling for
// R1-family models (MODEL-SPEC.md §5), the library defaults otherwise. Uses the tiny llama of
// tests/common/gguf_builder.hpp with and without an R1-style chat template.
#include <doctest/doctest.h>

#include <unistd.h>

#include "common/gguf_builder.hpp"
#include "common/test_support.hpp"
#include "models/model.hpp"
#include "runtime/session.hpp"

namespace {

std::shared_ptr<const frugal::model> tiny_with_template(const std::string & name, const std::string & chat_template) {
    namespace g = frugal::test::gguf;
    auto b = g::tiny_llama();
    if (!chat_template.empty()) b.set("tokenizer.chat_template", g::str(chat_template));
    const auto path = frugal::test::scratch_dir("session") / (name + "." + std::to_string(::getpid()) + ".gguf");
    g::write_file(path, b.build());
    auto m = frugal::load_model(path.string(), {});
    std::filesystem::remove(path);
    return m;
}

} // namespace

TEST_CASE("session: R1-family models start from DeepSeek's recommended sampling, others from the defaults" *
          doctest::timeout(60)) {
    const frugal::sampling_params defaults;
    // the part of DeepSeek-R1's template that tells it apart (it ends the prompt with <think>\n)
    const std::string r1 = "{% if add_generation_prompt %}{{'<\uFF5CAssistant\uFF5C><think>\\n'}}{% endif %}";
    const frugal::session plain(tiny_with_template("plain", ""), 16);
    CHECK(plain.model().tokenizer().chat_format() == frugal::chat_format::none);
    CHECK(plain.sampling().temperature == defaults.temperature);
    CHECK(plain.sampling().top_p == defaults.top_p);

    frugal::session reasoning(tiny_with_template("r1", r1), 16);
    CHECK(reasoning.model().tokenizer().chat_format() == frugal::chat_format::deepseek_r1);
    CHECK(reasoning.sampling().temperature == 0.6f);
    CHECK(reasoning.sampling().top_p == 0.95f);
    CHECK(reasoning.sampling().top_k == defaults.top_k); // DeepSeek names no other knob
    // what the user sets wins, and reset() keeps it
    auto p = reasoning.sampling();
    p.temperature = 1.1f;
    reasoning.set_sampling(p);
    reasoning.reset();
    CHECK(reasoning.sampling().temperature == 1.1f);
}
