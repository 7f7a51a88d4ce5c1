// Parity with an independent engine: llama.cpp's raw logits and greedy continuations on the same
// GGUF files (fixtures made by make_parity_fixtures.sh into the build tree; the test skips when
// they could not be made because ../shared/tools or the llama.cpp peer is missing).
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "common/test_support.hpp"
#include "models/model.hpp"
#include "runtime/session.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path fixture_dir() { return fs::path(FRUGAL_TEST_BINARY_DIR) / "fixtures" / "parity"; }

struct logits_dump {
    int64_t rows = 0, n_vocab = 0;
    std::vector<float> data;
};

// Reads llamacpp-logits' "frugal-logits-v1" binary: one JSON header line, then rows x n_vocab f32.
logits_dump read_logits(const fs::path & p) {
    std::ifstream f(p, std::ios::binary);
    std::string header;
    std::getline(f, header);
    const auto meta = json::parse(header);
    REQUIRE(meta["format"] == "frugal-logits-v1");
    logits_dump d;
    d.rows = meta["shape"][0].get<int64_t>();
    d.n_vocab = meta["shape"][1].get<int64_t>();
    d.data.resize(size_t(d.rows * d.n_vocab));
    f.read(reinterpret_cast<char *>(d.data.data()), std::streamsize(d.data.size() * sizeof(float)));
    REQUIRE(f.good());
    return d;
}

std::vector<int32_t> read_prompt() {
    std::ifstream f(fixture_dir() / "prompt.txt");
    std::vector<int32_t> ids;
    std::string item;
    while (std::getline(f, item, ',')) ids.push_back(std::stoi(item));
    return ids;
}

struct parity_result {
    double max_abs_diff = 0;
    int argmax_agree = 0, rows = 0;
    int greedy_agree = 0, greedy_n = 0;     // leading tokens equal to llama.cpp's
    double min_margin_at_divergence = 0;    // llama.cpp's top1 - top2 where we first differ
};

parity_result run_parity(const std::string & name) {
    const auto dir = fixture_dir();
    const auto model = frugal::load_model((dir / (name + ".gguf")).string(), {});
    const auto prompt = read_prompt();
    const auto ref = read_logits(dir / (name + ".logits.bin"));
    REQUIRE(ref.rows == int64_t(prompt.size()));
    REQUIRE(ref.n_vocab == model->config().n_vocab);

    parity_result r;
    frugal::session s(model, 256);
    const auto mine = s.evaluate_all(prompt);
    const int64_t V = ref.n_vocab;
    for (int64_t row = 0; row < ref.rows; ++row) {
        const float * a = mine.data() + row * V;
        const float * b = ref.data.data() + row * V;
        for (int64_t v = 0; v < V; ++v) r.max_abs_diff = std::max(r.max_abs_diff, double(std::fabs(a[v] - b[v])));
        r.argmax_agree += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
        ++r.rows;
    }

    json greedy;
    std::ifstream(dir / (name + ".greedy.json")) >> greedy;
    const auto want = greedy["generated"].get<std::vector<int32_t>>();
    const auto margin = greedy["margin"].get<std::vector<double>>();
    frugal::session g(model, 256);
    frugal::sampling_params p;
    p.temperature = 0;
    g.set_sampling(p);
    g.prompt_tokens(prompt);
    r.greedy_n = int(want.size());
    bool diverged = false;
    for (size_t i = 0; i < want.size(); ++i) {
        // End-of-generation tokens do not stop llama.cpp's --greedy: feed every token back.
        const auto l = g.logits();
        const int32_t t = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
        if (!diverged && t == want[i]) {
            ++r.greedy_agree;
        } else if (!diverged) {
            diverged = true;
            r.min_margin_at_divergence = margin[i];
        }
        g.prompt_tokens(std::span(&want[i], 1)); // stay on llama.cpp's path
    }
    MESSAGE(name << ": max|logit diff| " << r.max_abs_diff << ", argmax " << r.argmax_agree << "/" << r.rows
                 << ", greedy " << r.greedy_agree << "/" << r.greedy_n
                 << (diverged ? " (llama.cpp margin at divergence " + std::to_string(r.min_margin_at_divergence) + ")" : ""));
    return r;
}

bool fixtures_present() { return fs::exists(fixture_dir() / ".complete-v1"); }

} // namespace

TEST_CASE("parity with llama.cpp: F32 logits within 1e-3, greedy identical" * doctest::timeout(120)) {
    if (!fixtures_present()) FRUGAL_SKIP("parity fixtures were not generated (no ../shared/tools or llama.cpp peer)");
    for (const char * name : {"tiny-llama-f32", "tiny-qwen2-f32"}) {
        CAPTURE(name);
        const auto r = run_parity(name);
        CHECK(r.max_abs_diff <= 1e-3);
        CHECK(r.argmax_agree == r.rows);
        CHECK(r.greedy_agree == r.greedy_n);
    }
}

TEST_CASE("parity with llama.cpp: half and quantized weights" * doctest::timeout(180)) {
    if (!fixtures_present()) FRUGAL_SKIP("parity fixtures were not generated (no ../shared/tools or llama.cpp peer)");
    // Both engines quantize activations the same way (ggml's vec_dot types) on the decode path;
    // the prefill pass differs in summation order and, for wide batches, dequantizes weights to
    // F32, so logits are compared with a tolerance and greedy decoding token by token.
    const std::pair<const char *, double> cases[] = {
        {"tiny-llama-f16", 2e-3},  {"tiny-qwen2-f16", 2e-3},  {"tiny-llama-bf16", 5e-3},
        {"tiny-qwen2-bf16", 5e-3}, {"tiny-llama-q8_0", 2e-2}, {"tiny-qwen2-q8_0", 2e-2},
        {"tiny-llama-q4_0", 5e-2}, {"tiny-qwen2-q4_0", 5e-2}, {"tiny256-qwen2-q4_k_m", 5e-2},
        {"tiny256-llama-q5_k_m", 5e-2},
    };
    for (const auto & [name, tol] : cases) {
        CAPTURE(name);
        const auto r = run_parity(name);
        CHECK(r.max_abs_diff <= tol);
        CHECK(r.greedy_agree == r.greedy_n);
    }
}
