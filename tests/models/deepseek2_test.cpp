// deepseek2 (MLA + MoE) consistency on the random-weight tiny models of the parity fixtures:
// the two MLA forms against each other, the two GGUF tensor styles against each other, the
// latent cache's size, and an MTP block that must be skipped. (Agreement with llama.cpp is in
// parity_test.)
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "common/test_support.hpp"
#include <fmt/format.h>

#include "models/deepseek2.hpp"
#include "models/model.hpp"
#include "ops/attention.hpp"
#include "runtime/session.hpp"
#include "util/error.hpp"

namespace fs = std::filesystem;
using frugal::mla_attention;
using frugal::mla_form;

namespace {

fs::path fixture(const std::string & name) { return frugal::test::parity_fixture(name + ".gguf"); }

double max_abs_diff(const std::vector<float> & a, const std::vector<float> & b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
    return m;
}

// Logits of every position, the whole sequence in one forward pass with the given form (and
// attention arithmetic).
std::vector<float> prefill_logits(const std::shared_ptr<const frugal::model> & m, const std::vector<int32_t> & tokens,
                                  mla_form form, mla_attention arithmetic = mla_attention::automatic) {
    frugal::session s(m, int64_t(tokens.size()));
    frugal::set_mla_form(s.state(), form);
    frugal::set_mla_attention(s.state(), arithmetic);
    return s.evaluate_all(tokens);
}

// prefill_logits() of the straightforward form decompressing one head at a time.
std::vector<float> prefill_logits_head_by_head(const std::shared_ptr<const frugal::model> & m,
                                               const std::vector<int32_t> & tokens) {
    frugal::session s(m, int64_t(tokens.size()));
    frugal::set_mla_form(s.state(), mla_form::straightforward);
    frugal::set_mla_decompressed_bytes(s.state(), 1);
    return s.evaluate_all(tokens);
}

// Logits of every position, one token per forward pass (decode) with the given form (and
// attention arithmetic).
std::vector<float> decode_logits(const std::shared_ptr<const frugal::model> & m, const std::vector<int32_t> & tokens,
                                 mla_form form, mla_attention arithmetic = mla_attention::automatic) {
    frugal::session s(m, int64_t(tokens.size()));
    frugal::set_mla_form(s.state(), form);
    frugal::set_mla_attention(s.state(), arithmetic);
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

TEST_CASE("deepseek2: absorbed and straightforward MLA (all heads at once or one at a time) agree at every "
          "position of 100 tokens" * doctest::timeout(180)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    for (const char * name : k_models) {
        CAPTURE(name);
        const auto m = frugal::load_model(fixture(name).string(), {});
        const auto tokens = frugal::test::random_tokens(100, int32_t(m->config().n_vocab), 11);
        const auto straightforward = prefill_logits(m, tokens, mla_form::straightforward);
        const auto absorbed = prefill_logits(m, tokens, mla_form::absorbed);
        const auto decoded = decode_logits(m, tokens, mla_form::absorbed);
        // Straightforward steps after earlier positions decompress the whole cache each time.
        const auto decoded_straightforward = decode_logits(m, tokens, mla_form::straightforward);
        const auto automatic = decode_logits(m, tokens, mla_form::automatic);
        // Long contexts decompress a group of heads at a time (as many as fit the budget).
        const auto head_by_head = prefill_logits_head_by_head(m, tokens);
        // Same math in another order: float reassociation only (logits are ~1 in size).
        const double d_prefill = max_abs_diff(straightforward, absorbed);
        const double d_decode = max_abs_diff(straightforward, decoded);
        MESSAGE(std::string(name) << ": max|straightforward - absorbed| prefill " << d_prefill << ", decode " << d_decode);
        CHECK(d_prefill <= 1e-4);
        CHECK(d_decode <= 1e-4);
        CHECK(max_abs_diff(decoded, automatic) <= 1e-4);
        CHECK(max_abs_diff(straightforward, decoded_straightforward) <= 1e-4);
        CHECK(max_abs_diff(straightforward, head_by_head) <= 1e-5);
        // And the forms are really different computations, not one path under two names.
        CHECK(d_prefill > 0);
    }
}

TEST_CASE("deepseek2: BF16 MLA attention moves both forms' logits by BF16 rounding only, where the CPU has it" *
          doctest::timeout(120)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    for (const char * name : k_models) {
        CAPTURE(name);
        const auto m = frugal::load_model(fixture(name).string(), {});
        const auto tokens = frugal::test::random_tokens(100, int32_t(m->config().n_vocab), 13);
        // Over the decompressed heads (F32), and over the F16 latent cache with all of a prompt's
        // heads and tokens in a task's rows.
        for (const auto form : {mla_form::straightforward, mla_form::absorbed}) {
            CAPTURE(int(form));
            const double d = max_abs_diff(prefill_logits(m, tokens, form),
                                          prefill_logits(m, tokens, form, mla_attention::bf16));
            MESSAGE(std::string(name) << ": max|bf16 - f32 attention| " << d);
            if (frugal::ops::bf16_products_available()) {
                CHECK(d > 0);     // the BF16 products ran
                CHECK(d <= 2e-2); // logits ~1: rounding, not another function
            } else {
                CHECK(d == 0); // F32 where the CPU lacks AVX-512 BF16
            }
        }
        // A decode step of these few heads reads the cache directly, in F32 whatever the setting
        // (V3's 128 heads take the BF16 tiles).
        CHECK(max_abs_diff(decode_logits(m, tokens, mla_form::absorbed, mla_attention::bf16),
                           decode_logits(m, tokens, mla_form::absorbed)) == 0);
    }
}

TEST_CASE("deepseek2: split attn_k_b/attn_v_b and legacy attn_kv_b files compute the same function" *
          doctest::timeout(120)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    for (const std::string name : {"tiny-deepseek2-f32", "tiny-deepseek3-f32"}) {
        CAPTURE(name);
        const auto split = frugal::load_model(fixture(name).string(), {});
        const auto legacy = frugal::load_model(fixture(name + "-legacy").string(), {});
        const auto tokens = frugal::test::random_tokens(40, int32_t(split->config().n_vocab), 5);
        for (const auto form : {mla_form::straightforward, mla_form::absorbed}) {
            CAPTURE(int(form));
            CHECK(max_abs_diff(prefill_logits(split, tokens, form), prefill_logits(legacy, tokens, form)) <= 1e-4);
        }
    }
}

TEST_CASE("deepseek2: the KV cache holds only the latent and the roped key: (kv_lora + rope) x layers values" *
          doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    for (const char * name : k_models) {
        CAPTURE(name);
        const auto m = frugal::load_model(fixture(name).string(), {});
        const auto & f = m->file();
        const int64_t values = (f.get_int("deepseek2.attention.kv_lora_rank") + f.get_int("deepseek2.rope.dimension_count")) *
                               f.get_int("deepseek2.block_count");
        CHECK(m->config().kv_bytes_per_token(frugal::dtype::f32) == uint64_t(values * 4));
        CHECK(m->config().kv_bytes_per_token() == uint64_t(values * 2)); // F16 by default
        frugal::session f16(m, 77);
        CHECK(f16.kv_bytes() == uint64_t(77 * values * 2));
        frugal::session f32(m, 77, frugal::dtype::f32);
        CHECK(f32.kv_bytes() == uint64_t(77 * values * 4));
    }
}

TEST_CASE("deepseek2: an MTP (nextn) block is recognised and skipped" * doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    const auto base = frugal::load_model(fixture("tiny-deepseek3-f32").string(), {});
    const auto with_mtp = frugal::load_model(fixture("tiny-deepseek3-f32-mtp").string(), {});
    CHECK(with_mtp->file().get_int("deepseek2.block_count") == base->config().n_layer + 1);
    CHECK(with_mtp->config().n_layer == base->config().n_layer);
    const auto tokens = frugal::test::random_tokens(20, int32_t(base->config().n_vocab), 3);
    CHECK(max_abs_diff(prefill_logits(base, tokens, mla_form::automatic),
                       prefill_logits(with_mtp, tokens, mla_form::automatic)) == 0);
}

namespace {

// Where the value of metadata key `key` starts in a GGUF image (key strings are stored as
// u64 length + bytes, then the u32 value type, then the value), and that type.
std::pair<size_t, uint32_t> find_value(const std::vector<char> & bytes, const std::string & key) {
    std::string needle(8, '\0');
    const uint64_t len = key.size();
    std::memcpy(needle.data(), &len, 8);
    needle += key;
    const auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
    REQUIRE_MESSAGE(it != bytes.end(), key);
    const size_t type_at = size_t(it - bytes.begin()) + needle.size();
    uint32_t type;
    std::memcpy(&type, bytes.data() + type_at, 4);
    return {type_at + 4, type};
}

} // namespace

TEST_CASE("deepseek2: 400 mutated hyper-parameters load with a clear error or run, never crash" *
          doctest::timeout(300)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    const char * keys[] = {"deepseek2.block_count", "deepseek2.embedding_length", "deepseek2.feed_forward_length",
                           "deepseek2.attention.head_count", "deepseek2.attention.kv_lora_rank",
                           "deepseek2.attention.q_lora_rank", "deepseek2.attention.key_length",
                           "deepseek2.attention.value_length", "deepseek2.attention.key_length_mla",
                           "deepseek2.attention.value_length_mla", "deepseek2.rope.dimension_count",
                           "deepseek2.expert_count", "deepseek2.expert_used_count", "deepseek2.expert_shared_count",
                           "deepseek2.expert_feed_forward_length", "deepseek2.expert_group_count",
                           "deepseek2.expert_group_used_count", "deepseek2.expert_gating_func",
                           "deepseek2.leading_dense_block_count", "deepseek2.rope.scaling.factor",
                           "deepseek2.rope.scaling.original_context_length", "deepseek2.rope.scaling.yarn_log_multiplier",
                           "deepseek2.expert_weights_scale", "deepseek2.context_length"};
    const uint32_t values[] = {0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 96, 128, 255, 256, 4096, 1u << 20,
                               0x7FFFFFFF, 0xFFFFFFFF};
    const float floats[] = {0.f, -1.f, 0.5f, 1.f, 40.f, 1e30f, std::nanf(""), HUGE_VALF, -HUGE_VALF};
    std::vector<char> original;
    {
        std::ifstream f(fixture("tiny-deepseek3-q8_0"), std::ios::binary);
        original.assign(std::istreambuf_iterator<char>(f), {});
    }
    const auto path = frugal::test::scratch_dir("deepseek2") / ("mutated.gguf." + std::to_string(::getpid()));
    std::mt19937 rng(2026);
    int loaded = 0, rejected = 0;
    std::vector<std::string> failures;
    for (int iter = 0; iter < 400; ++iter) {
        auto bytes = original;
        const int n_changes = 1 + int(rng() % 2);
        std::string what;
        for (int c = 0; c < n_changes; ++c) {
            const std::string key = keys[rng() % std::size(keys)];
            const auto [at, type] = find_value(bytes, key);
            if (type == 6) { // f32
                const float v = floats[rng() % std::size(floats)];
                std::memcpy(bytes.data() + at, &v, 4);
                what += fmt::format("{}={} ", key, v);
            } else {
                const uint32_t v = values[rng() % std::size(values)];
                std::memcpy(bytes.data() + at, &v, 4); // u32 keys (the generator writes u32)
                what += fmt::format("{}={} ", key, v);
            }
        }
        std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
        try {
            const auto m = frugal::load_model(path.string(), {});
            frugal::session s(m, 16);
            const std::vector<int32_t> tokens{1, 2, 3};
            s.prompt_tokens(tokens);
            const auto l = s.logits();
            if (!std::all_of(l.begin(), l.end(), [](float v) { return std::isfinite(v); }))
                failures.push_back(what + ": loaded but non-finite logits");
            ++loaded;
        } catch (const frugal::error & e) {
            ++rejected;
            if (std::string(e.what()).empty()) failures.push_back(what + ": error without a message");
        } catch (const std::exception & e) {
            failures.push_back(what + ": not a frugal::error: " + e.what());
        }
    }
    std::filesystem::remove(path);
    MESSAGE(loaded << " mutated files loaded and ran, " << rejected << " rejected with a frugal::error");
    for (const auto & f : failures) MESSAGE(f);
    CHECK(failures.empty());
    CHECK(rejected > 0);
}
