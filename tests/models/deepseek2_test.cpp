// deepseek2 (MLA + MoE) consistency on the random-weight tiny models of the parity fixtures:
// the two MLA forms against each other, the two GGUF tensor styles against each other, the
// latent cache's size, and an MTP block that must be skipped. (Agreement with llama.cpp is in
// parity_test.)
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "common/test_support.hpp"
#include "models/deepseek2.hpp"
#include "models/model.hpp"
#include "runtime/session.hpp"

namespace fs = std::filesystem;
using frugal::mla_form;

namespace {

fs::path fixture(const std::string & name) { return frugal::test::parity_fixture(name + ".gguf"); }

std::vector<int32_t> random_tokens(size_t n, int32_t n_vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(0, n_vocab - 1);
    std::vector<int32_t> t(n);
    for (auto & v : t) v = id(rng);
    return t;
}

double max_abs_diff(const std::vector<float> & a, const std::vector<float> & b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
    return m;
}

// Logits of every position, the whole sequence in one forward pass with the given form.
std::vector<float> prefill_logits(const std::shared_ptr<const frugal::model> & m, const std::vector<int32_t> & tokens,
                                  mla_form form) {
    frugal::session s(m, int64_t(tokens.size()));
    frugal::set_mla_form(s.state(), form);
    return s.evaluate_all(tokens);
}

// Logits of every position, one token per forward pass (decode) with the given form.
std::vector<float> decode_logits(const std::shared_ptr<const frugal::model> & m, const std::vector<int32_t> & tokens,
                                 mla_form form) {
    frugal::session s(m, int64_t(tokens.size()));
    frugal::set_mla_form(s.state(), form);
    std::vector<float> all;
    for (const int32_t t : tokens) {
        s.prompt_tokens(std::span(&t, 1));
        const auto l = s.logits();
        all.insert(all.end(), l.begin(), l.end());
    }
    return all;
}

constexpr const char * k_models[] = {"tiny-deepseek2-f32", "tiny-deepseek2-f32-legacy", "tiny-deepseek3-f32",
                                     "tiny-deepseek3-f32-legacy"};

} // namespace

TEST_CASE("deepseek2: absorbed and straightforward MLA agree at every position of 100 tokens" * doctest::timeout(180)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    for (const char * name : k_models) {
        CAPTURE(name);
        const auto m = frugal::load_model(fixture(name).string(), {});
        const auto tokens = random_tokens(100, int32_t(m->config().n_vocab), 11);
        const auto straightforward = prefill_logits(m, tokens, mla_form::straightforward);
        const auto absorbed = prefill_logits(m, tokens, mla_form::absorbed);
        const auto decoded = decode_logits(m, tokens, mla_form::absorbed);
        // Straightforward steps after earlier positions decompress the whole cache each time.
        const auto decoded_straightforward = decode_logits(m, tokens, mla_form::straightforward);
        const auto automatic = decode_logits(m, tokens, mla_form::automatic);
        // Same math in another order: float reassociation only (logits are ~1 in size).
        const double d_prefill = max_abs_diff(straightforward, absorbed);
        const double d_decode = max_abs_diff(straightforward, decoded);
        MESSAGE(name << ": max|straightforward - absorbed| prefill " << d_prefill << ", decode " << d_decode);
        CHECK(d_prefill <= 1e-4);
        CHECK(d_decode <= 1e-4);
        CHECK(max_abs_diff(decoded, automatic) <= 1e-4);
        CHECK(max_abs_diff(straightforward, decoded_straightforward) <= 1e-4);
        // And the forms are really different computations, not one path under two names.
        CHECK(d_prefill > 0);
    }
}

TEST_CASE("deepseek2: split attn_k_b/attn_v_b and legacy attn_kv_b files compute the same function" *
          doctest::timeout(120)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    for (const std::string name : {"tiny-deepseek2-f32", "tiny-deepseek3-f32"}) {
        CAPTURE(name);
        const auto split = frugal::load_model(fixture(name).string(), {});
        const auto legacy = frugal::load_model(fixture(name + "-legacy").string(), {});
        const auto tokens = random_tokens(40, int32_t(split->config().n_vocab), 5);
        for (const auto form : {mla_form::straightforward, mla_form::absorbed}) {
            CAPTURE(int(form));
            CHECK(max_abs_diff(prefill_logits(split, tokens, form), prefill_logits(legacy, tokens, form)) <= 1e-4);
        }
    }
}

TEST_CASE("deepseek2: the KV cache holds only the latent and the roped key: (kv_lora + rope) x layers floats" *
          doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    for (const char * name : k_models) {
        CAPTURE(name);
        const auto m = frugal::load_model(fixture(name).string(), {});
        const auto & f = m->file();
        const int64_t per_token = (f.get_int("deepseek2.attention.kv_lora_rank") + f.get_int("deepseek2.rope.dimension_count")) *
                                  f.get_int("deepseek2.block_count") * int64_t(sizeof(float));
        CHECK(m->config().kv_bytes_per_token == uint64_t(per_token));
        frugal::session s(m, 77);
        CHECK(s.kv_bytes() == uint64_t(77 * per_token));
    }
}

TEST_CASE("deepseek2: an MTP (nextn) block is recognised and skipped" * doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    const auto base = frugal::load_model(fixture("tiny-deepseek3-f32").string(), {});
    const auto with_mtp = frugal::load_model(fixture("tiny-deepseek3-f32-mtp").string(), {});
    CHECK(with_mtp->file().get_int("deepseek2.block_count") == base->config().n_layer + 1);
    CHECK(with_mtp->config().n_layer == base->config().n_layer);
    const auto tokens = random_tokens(20, int32_t(base->config().n_vocab), 3);
    CHECK(max_abs_diff(prefill_logits(base, tokens, mla_form::automatic),
                       prefill_logits(with_mtp, tokens, mla_form::automatic)) == 0);
}
