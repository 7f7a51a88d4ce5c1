// The strongest end-to-end check: Karpathy's trained stories260K model (../shared/data) must
// reproduce llama2.c's published greedy sample token for token, and numpy's float32 logits.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "common/test_support.hpp"
#include "models/model.hpp"
#include "runtime/session.hpp"

using json = nlohmann::json;

namespace {

struct fixture {
    json ref;
    std::shared_ptr<const frugal::model> model;
};

std::optional<fixture> load_stories(bool use_mmap = true) {
    const auto gguf = frugal::test::shared_data("stories260K/stories260K.gguf");
    const auto refp = frugal::test::shared_data("stories260K/reference.json");
    if (!gguf || !refp) return std::nullopt;
    fixture f;
    std::ifstream(*refp) >> f.ref;
    frugal::load_options lo;
    lo.use_mmap = use_mmap;
    f.model = frugal::load_model(gguf->string(), lo);
    return f;
}

frugal::sampling_params greedy() {
    frugal::sampling_params p;
    p.temperature = 0;
    return p;
}

// Positions 0..7 (BOS + the first 7 generated ids) with a KV cache of kv_type: the largest logit
// difference from numpy's float32 forward pass (one prefill pass), and from decoding the same
// positions one token at a time.
struct first_positions {
    double vs_numpy = 0, decode_vs_prefill = 0;
};

first_positions first_8_positions(const fixture & f, frugal::dtype kv_type) {
    const auto & g = f.ref["greedy_from_bos"];
    std::vector<int32_t> seq = g["prompt_ids"].get<std::vector<int32_t>>();
    const auto gen = g["generated_ids"].get<std::vector<int32_t>>();
    seq.insert(seq.end(), gen.begin(), gen.begin() + 7);
    frugal::session s(f.model, 0, kv_type);
    const auto all = s.evaluate_all(seq);
    const int64_t V = f.model->config().n_vocab;
    first_positions r;
    for (size_t p = 0; p < 8; ++p) {
        const auto row = g["logits_first_8_pos"][p].get<std::vector<float>>();
        REQUIRE(int64_t(row.size()) == V);
        for (int64_t v = 0; v < V; ++v) r.vs_numpy = std::max(r.vs_numpy, double(std::fabs(all[p * V + v] - row[v])));
    }
    frugal::session d(f.model, 0, kv_type);
    for (size_t p = 0; p < 8; ++p) {
        d.prompt_tokens(std::span(&seq[p], 1));
        const auto l = d.logits();
        for (int64_t v = 0; v < V; ++v)
            r.decode_vs_prefill = std::max(r.decode_vs_prefill, double(std::fabs(l[v] - all[p * V + v])));
    }
    MESSAGE(frugal::dtype_name(kv_type) << " cache: max |logit - numpy float32| over 8 x " << V << " = " << r.vs_numpy
                                        << ", max |decode - prefill| = " << r.decode_vs_prefill);
    return r;
}

} // namespace

TEST_CASE("stories260K: config matches reference.json" * doctest::timeout(30)) {
    auto f = load_stories();
    if (!f) FRUGAL_SKIP("../shared/data/stories260K is not available");
    const auto & c = f->model->config();
    const auto & rc = f->ref["config"];
    CHECK(c.n_embd == rc["dim"].get<int64_t>());
    CHECK(c.n_ff == rc["hidden_dim"].get<int64_t>());
    CHECK(c.n_layer == rc["n_layers"].get<int64_t>());
    CHECK(c.n_head == rc["n_heads"].get<int64_t>());
    CHECK(c.n_head_kv == rc["n_kv_heads"].get<int64_t>());
    CHECK(c.n_vocab == rc["vocab_size"].get<int64_t>());
    CHECK(c.n_ctx_train == rc["seq_len"].get<int64_t>());
    CHECK(c.head_dim == rc["head_size"].get<int64_t>());
}

TEST_CASE("stories260K: greedy 256 tokens from BOS reproduce llama2.c's sample" * doctest::timeout(60)) {
    for (const bool use_mmap : {true, false}) {
        CAPTURE(use_mmap);
        auto f = load_stories(use_mmap);
        if (!f) FRUGAL_SKIP("../shared/data/stories260K is not available");
        const auto & g = f->ref["greedy_from_bos"];
        frugal::session s(f->model, 0, frugal::dtype::f32);
        s.set_sampling(greedy());
        const auto prompt = g["prompt_ids"].get<std::vector<int32_t>>();
        s.prompt_tokens(prompt);
        const auto want = g["generated_ids"].get<std::vector<int32_t>>();
        std::vector<int32_t> got;
        std::string text;
        for (size_t i = 0; i < want.size(); ++i) {
            auto r = s.next();
            REQUIRE_FALSE(r.done);
            got.push_back(r.token);
            text += r.piece;
        }
        size_t agree = 0;
        while (agree < want.size() && got[agree] == want[agree]) ++agree;
        MESSAGE("greedy token agreement: " << agree << "/" << want.size() << " (first divergence at " << agree << ")");
        CHECK(got == want);
        CHECK(text == g["text"].get<std::string>());
    }
}

TEST_CASE("stories260K: logits of the first 8 positions agree within 1e-4" * doctest::timeout(30)) {
    auto f = load_stories();
    if (!f) FRUGAL_SKIP("../shared/data/stories260K is not available");
    const auto r = first_8_positions(*f, frugal::dtype::f32);
    CHECK(r.vs_numpy < 1e-4);
    // The decode path (one token at a time) agrees with the prefill pass.
    CHECK(r.decode_vs_prefill < 1e-4);
}

TEST_CASE("stories260K: an F16 KV cache halves the cache, keeps the greedy sample and moves logits by < 0.02" *
          doctest::timeout(60)) {
    auto f = load_stories();
    if (!f) FRUGAL_SKIP("../shared/data/stories260K is not available");
    const auto & g = f->ref["greedy_from_bos"];
    frugal::session s(f->model, 0); // the default cache
    frugal::session exact(f->model, 0, frugal::dtype::f32);
    REQUIRE(s.kv_type() == frugal::dtype::f16);
    CHECK(2 * s.kv_bytes() == exact.kv_bytes());

    // Logits of positions 0..7 in one prefill against numpy's float32 forward pass: K and V are
    // rounded to 11 significant bits, so they move, but by far less than the logits' spread.
    // Decoding one token at a time: its K and V differ from the prefill's in the last float bits
    // (other matmul paths), and rounding to F16 turns a few of those into whole F16 steps, so the
    // two agree to the F16 cache's own error, not the F32 cache's 1e-4.
    const auto r = first_8_positions(*f, frugal::dtype::f16);
    CHECK(r.vs_numpy > 0); // the cache really is F16
    CHECK(r.vs_numpy < 0.02);
    CHECK(r.decode_vs_prefill < 0.02);

    // llama2.c's 256-token greedy sample from BOS survives the rounding token for token.
    const auto gen = g["generated_ids"].get<std::vector<int32_t>>();
    s.set_sampling(greedy());
    s.prompt_tokens(g["prompt_ids"].get<std::vector<int32_t>>());
    size_t agree = 0;
    while (agree < gen.size() && s.next().token == gen[agree]) ++agree;
    MESSAGE("F16 cache: greedy token agreement " << agree << "/" << gen.size());
    CHECK(agree == gen.size());
}

TEST_CASE("stories260K: prompted continuations match" * doctest::timeout(60)) {
    auto f = load_stories();
    if (!f) FRUGAL_SKIP("../shared/data/stories260K is not available");
    for (const auto & p : f->ref["prompts"]) {
        const auto prompt = p["prompt"].get<std::string>();
        CAPTURE(prompt);
        // Tokenizing the text (BOS added) gives the reference ids.
        CHECK(f->model->tokenizer().encode(prompt, true, false) == p["prompt_ids"].get<std::vector<int32_t>>());
        frugal::session s(f->model, 0, frugal::dtype::f32);
        s.set_sampling(greedy());
        s.prompt_text(prompt);
        const auto want = p["generated_ids"].get<std::vector<int32_t>>();
        std::vector<int32_t> got;
        std::string streamed;
        for (size_t i = 0; i < want.size(); ++i) {
            auto r = s.next();
            got.push_back(r.token);
            streamed += r.piece;
        }
        CHECK(got == want);
        // The streamed pieces keep the continuation's leading space (it follows the prompt, not BOS).
        CHECK(streamed == p["generated_text"].get<std::string>());
    }
}

namespace {
// Resident set of this process in bytes (VmRSS).
uint64_t resident_bytes() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}
} // namespace

TEST_CASE("stories260K: a large context costs memory only as it fills" * doctest::timeout(60)) {
    auto f = load_stories();
    if (!f) FRUGAL_SKIP("../shared/data/stories260K is not available");
    const uint64_t before = resident_bytes();
    frugal::session s(f->model, int64_t(1) << 20, frugal::dtype::f32); // 1M positions: a 1.25 GiB KV cache
    CHECK(s.kv_bytes() == uint64_t(5) * 2 * (1u << 20) * 32 * sizeof(float));
    s.set_sampling(greedy());
    const auto & g = f->ref["greedy_from_bos"];
    s.prompt_tokens(g["prompt_ids"].get<std::vector<int32_t>>());
    const auto want = g["generated_ids"].get<std::vector<int32_t>>();
    for (size_t i = 0; i < 16; ++i) CHECK(s.next().token == want[i]);
    const uint64_t grown = resident_bytes() - before;
    MESSAGE("resident memory grew by " << grown / 1024 << " KiB for a " << s.kv_bytes() / (1 << 20) << " MiB KV cache");
    CHECK(grown < (uint64_t(64) << 20));
}
