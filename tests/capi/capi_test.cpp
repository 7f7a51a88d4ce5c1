// The C ABI as a C/FFI caller sees it: only frugal.h (no lib/ headers). Argument checking on every
// entry point, status strings, error objects, options, and end to end on the stories260K model
// (../shared/data; those cases skip without it): getters, metadata, tokenizer, greedy and prompted
// generation against reference.json, buffers too small, context limits, sampling knobs, seeds,
// reset, handle lifetimes, cancellation from another thread and the log callback. Cases that only
// need *a* model use the tiny llama built by tests/common/gguf_builder.hpp, so they always run.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/gguf_builder.hpp"
#include "common/stories.hpp"
#include "common/test_support.hpp"
#include "frugal.h"
#include "frugal_experimental.h"

using json = nlohmann::json;

namespace {

using model_ptr = std::unique_ptr<frugal_model, decltype(&frugal_model_free)>;
using session_ptr = std::unique_ptr<frugal_session, decltype(&frugal_session_free)>;

// Owns the frugal_error of one call; `out()` frees the previous one.
class err_box {
public:
    err_box() = default;
    err_box(const err_box &) = delete;
    err_box & operator=(const err_box &) = delete;
    ~err_box() { frugal_error_free(e_); }
    frugal_error ** out() {
        frugal_error_free(e_);
        e_ = nullptr;
        return &e_;
    }
    frugal_error * get() const { return e_; }
    frugal_status code() const { return frugal_error_code(e_); }
    std::string message() const { return frugal_error_message(e_); }

private:
    frugal_error * e_ = nullptr;
};

using frugal::test::contains;

model_ptr load(const std::string & path, int32_t use_mmap = 1) {
    frugal_model_options o;
    FRUGAL_MODEL_OPTIONS_INIT(&o);
    o.use_mmap = use_mmap;
    frugal_model * m = nullptr;
    err_box err;
    const frugal_status st = frugal_model_load(path.c_str(), &o, &m, err.out());
    REQUIRE_MESSAGE(st == FRUGAL_OK, path << ": " << err.message());
    return model_ptr(m, frugal_model_free);
}

session_ptr make_session(frugal_model * m, int32_t n_ctx = 0) {
    frugal_session * s = nullptr;
    err_box err;
    REQUIRE_MESSAGE(frugal_session_create(m, n_ctx, &s, err.out()) == FRUGAL_OK, err.message());
    return session_ptr(s, frugal_session_free);
}

// A session whose KV cache keeps F32 values: what the references of float32 forward passes
// (stories260K's reference.json, llama.cpp's default) are compared with.
session_ptr make_f32_session(frugal_model * m, int32_t n_ctx = 0) {
    frugal_session_options o;
    FRUGAL_SESSION_OPTIONS_INIT(&o);
    o.n_ctx = n_ctx;
    o.kv_type = FRUGAL_KV_F32;
    frugal_session * s = nullptr;
    err_box err;
    REQUIRE_MESSAGE(frugal_session_create_v2(m, &o, &s, err.out()) == FRUGAL_OK, err.message());
    REQUIRE(frugal_session_kv_type(s) == FRUGAL_KV_F32);
    return session_ptr(s, frugal_session_free);
}

// Evaluates prompt and copies out the logits of its last token.
std::vector<float> prompt_logits(frugal_session * s, const int32_t * prompt, int32_t n_prompt) {
    REQUIRE(frugal_session_prompt_tokens(s, prompt, n_prompt, nullptr) == FRUGAL_OK);
    int32_t n = 0;
    const float * l = frugal_session_logits(s, &n);
    REQUIRE(l);
    return {l, l + n};
}

float max_abs_diff(const std::vector<float> & a, const std::vector<float> & b) {
    REQUIRE(a.size() == b.size());
    float diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    return diff;
}

// The tiny llama model of gguf_builder.hpp, written once per process.
const std::string & tiny_model_path() {
    static const std::string path =
        frugal::test::gguf::write_scratch_model("capi", "tiny.gguf", frugal::test::gguf::tiny_llama()).string();
    return path;
}

using frugal::test::ids_of;

struct generated {
    std::vector<int32_t> ids;
    std::string text;
    frugal_status last = FRUGAL_OK;
    std::string message;
};

// Pulls up to n tokens with a roomy buffer; stops at FRUGAL_DONE or an error.
generated generate(frugal_session * s, size_t n) {
    generated g;
    char buf[256];
    for (size_t i = 0; i < n; ++i) {
        int32_t tok = -1;
        size_t len = 0;
        err_box err;
        g.last = frugal_session_next(s, &tok, buf, sizeof buf, &len, err.out());
        if (g.last < 0) {
            g.message = err.message();
            break;
        }
        g.ids.push_back(tok);
        g.text.append(buf, len);
        if (g.last == FRUGAL_DONE) break;
    }
    return g;
}

void set_greedy(frugal_session * s) {
    err_box err;
    REQUIRE_MESSAGE(frugal_session_set_param_f32(s, FRUGAL_PARAM_TEMPERATURE, 0.0f, err.out()) == FRUGAL_OK,
                    err.message());
}

// Calls `call` with an error slot and with NULL: both must give FRUGAL_ERR_INVALID_ARGUMENT, the
// first with a matching error object and a message.
template <class F>
void expect_invalid(const char * what, F && call) {
    CAPTURE(what);
    err_box err;
    CHECK(call(err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(err.code() == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK_FALSE(err.message().empty());
    CHECK(call(nullptr) == FRUGAL_ERR_INVALID_ARGUMENT);
}

} // namespace

TEST_CASE("capi: version functions agree with the header's macros" * doctest::timeout(10)) {
    CHECK(frugal_version_number() == uint32_t(FRUGAL_VERSION_NUMBER));
    CHECK(FRUGAL_VERSION_NUMBER == FRUGAL_VERSION_MAJOR * 10000 + FRUGAL_VERSION_MINOR * 100 + FRUGAL_VERSION_PATCH);
    REQUIRE(frugal_version_string() != nullptr);
    CHECK(std::string(frugal_version_string()) == FRUGAL_VERSION_STRING);
    CHECK(std::string(frugal_version_string()) == std::to_string(FRUGAL_VERSION_MAJOR) + "." +
                                                      std::to_string(FRUGAL_VERSION_MINOR) + "." +
                                                      std::to_string(FRUGAL_VERSION_PATCH));
    CHECK(frugal_version_string() == frugal_version_string()); // static storage
}

TEST_CASE("capi: frugal_status_string covers every code" * doctest::timeout(10)) {
    const frugal_status codes[] = {FRUGAL_OK,
                                   FRUGAL_DONE,
                                   FRUGAL_ERR_INVALID_ARGUMENT,
                                   FRUGAL_ERR_OUT_OF_MEMORY,
                                   FRUGAL_ERR_IO,
                                   FRUGAL_ERR_UNSUPPORTED_MODEL,
                                   FRUGAL_ERR_CONTEXT_FULL,
                                   FRUGAL_ERR_CANCELLED,
                                   FRUGAL_ERR_BUFFER_TOO_SMALL,
                                   FRUGAL_ERR_STRUCT_SIZE,
                                   FRUGAL_ERR_INVALID_MODEL,
                                   FRUGAL_ERR_INTERNAL};
    const std::string unknown = frugal_status_string(12345);
    CHECK_FALSE(unknown.empty());
    std::set<std::string> seen;
    for (const frugal_status c : codes) {
        CAPTURE(c);
        const char * s = frugal_status_string(c);
        REQUIRE(s != nullptr);
        CHECK(std::strlen(s) > 0);
        CHECK(s == frugal_status_string(c)); // static text
        CHECK(std::string(s) != unknown);
        CHECK(seen.insert(s).second); // distinct
    }
    for (const frugal_status c : {-10, -99, -101, 2, INT32_MIN, INT32_MAX}) {
        CAPTURE(c);
        REQUIRE(frugal_status_string(c) != nullptr);
        CHECK(std::string(frugal_status_string(c)) == unknown);
    }
}

TEST_CASE("capi: error objects are NULL-safe" * doctest::timeout(10)) {
    CHECK(frugal_error_code(nullptr) == FRUGAL_OK);
    REQUIRE(frugal_error_message(nullptr) != nullptr);
    CHECK(std::string(frugal_error_message(nullptr)).empty());
    frugal_error_free(nullptr);
    // A real error object: code and message, then freed (ASan checks the free).
    frugal_error * err = nullptr;
    CHECK(frugal_model_load(nullptr, nullptr, nullptr, &err) == FRUGAL_ERR_INVALID_ARGUMENT);
    REQUIRE(err != nullptr);
    CHECK(frugal_error_code(err) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(std::strlen(frugal_error_message(err)) > 0);
    frugal_error_free(err);
}

TEST_CASE("capi: frugal_session_options and frugal_session_create_v2" * doctest::timeout(30)) {
    frugal_session_options o;
    std::memset(&o, 0xAB, sizeof o);
    CHECK(frugal_session_options_init(nullptr, sizeof o) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(frugal_session_options_init(&o, 2) == FRUGAL_ERR_INVALID_ARGUMENT);
    REQUIRE(FRUGAL_SESSION_OPTIONS_INIT(&o) == FRUGAL_OK);
    CHECK(o.struct_size == sizeof o);
    CHECK(o.n_ctx == 0);
    CHECK(o.kv_type == FRUGAL_KV_F16);
    CHECK(o.reserved0 == 0);

    auto model = load(tiny_model_path());
    const auto create = [&](const frugal_session_options * opts, err_box & err) {
        frugal_session * s = nullptr;
        const frugal_status st = frugal_session_create_v2(model.get(), opts, &s, err.out());
        const session_ptr owned(s, frugal_session_free);
        CHECK((st == FRUGAL_OK) == (s != nullptr));
        return std::make_pair(st, st == FRUGAL_OK ? std::optional<uint64_t>(frugal_session_kv_bytes(s)) : std::nullopt);
    };
    // NULL options are the defaults: an F16 cache of min(training context, 4096) positions.
    err_box err;
    const auto [st_default, bytes_default] = create(nullptr, err);
    REQUIRE(st_default == FRUGAL_OK);
    const uint64_t n_ctx_default = uint64_t(std::min(frugal_model_n_ctx_train(model.get()), 4096));
    CHECK(*bytes_default == n_ctx_default * frugal_model_kv_bytes_per_token(model.get()));
    // F32 costs twice F16.
    o.n_ctx = 64;
    o.kv_type = FRUGAL_KV_F32;
    const auto [st_f32, bytes_f32] = create(&o, err);
    REQUIRE(st_f32 == FRUGAL_OK);
    CHECK(*bytes_f32 == 2 * 64 * frugal_model_kv_bytes_per_token(model.get()));
    // Bad values name themselves; nothing is created.
    for (const int32_t bad : {2, 9, -1}) {
        CAPTURE(bad);
        o.kv_type = bad;
        err_box e;
        CHECK(create(&o, e).first == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(e.message(), "kv_type " + std::to_string(bad)));
    }
    o.kv_type = FRUGAL_KV_F16;
    o.n_ctx = -3;
    {
        err_box e;
        CHECK(create(&o, e).first == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(e.message(), "-3"));
    }
    o.n_ctx = 0;
    o.reserved0 = 1;
    {
        err_box e;
        CHECK(create(&o, e).first == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(e.message(), "reserved0"));
    }
    o.reserved0 = 0;
    // An older caller's struct that ends before kv_type is too small; a newer caller's larger
    // struct is accepted while the fields this library does not know are zero.
    {
        frugal_session_options old = o;
        old.struct_size = uint32_t(offsetof(frugal_session_options, kv_type));
        err_box e;
        CHECK(create(&old, e).first == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(e.message(), "struct_size"));
    }
    struct newer {
        frugal_session_options known;
        int32_t future_field, future_padding;
    } big{};
    REQUIRE(frugal_session_options_init(&big.known, sizeof big) == FRUGAL_OK);
    CHECK(big.known.kv_type == FRUGAL_KV_F16);
    {
        err_box e;
        CHECK(create(&big.known, e).first == FRUGAL_OK);
    }
    big.future_field = 1;
    {
        err_box e;
        CHECK(create(&big.known, e).first == FRUGAL_ERR_STRUCT_SIZE);
    }
    CHECK(frugal_session_kv_type(nullptr) == -1);
}

TEST_CASE("capi: a Q8_0 KV cache: 17/32 of F16's bytes, logits near the F32 cache's; refused, naming the "
          "width, where heads are not whole blocks" *
          doctest::timeout(30)) {
    frugal_session_options o;
    REQUIRE(FRUGAL_SESSION_OPTIONS_INIT(&o) == FRUGAL_OK);
    o.n_ctx = 64;
    const auto create = [&](frugal_model * m, int32_t kv_type, err_box & err) {
        o.kv_type = kv_type;
        frugal_session * s = nullptr;
        const frugal_status st = frugal_session_create_v2(m, &o, &s, err.out());
        CHECK((st == FRUGAL_OK) == (s != nullptr));
        return std::make_pair(st, session_ptr(s, frugal_session_free));
    };
    // The usual tiny model's heads are 4 values wide.
    {
        auto narrow = load(tiny_model_path());
        err_box err;
        CHECK(create(narrow.get(), FRUGAL_KV_Q8_0, err).first == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(err.message(), "q8_0"));
        CHECK(contains(err.message(), "are 4"));
        CHECK(create(narrow.get(), FRUGAL_KV_F16, err).first == FRUGAL_OK); // and the model stays usable
    }
    // Heads of 32 (64 wide, 2 heads).
    frugal::test::gguf::tiny_llama_params wide;
    wide.n_embd = 64;
    wide.n_ff = 128;
    const auto path =
        frugal::test::gguf::write_scratch_model("capi", "tiny-head32.gguf", frugal::test::gguf::tiny_llama(wide));
    auto model = load(path.string());
    err_box err;
    auto [st_q8, q8] = create(model.get(), FRUGAL_KV_Q8_0, err);
    REQUIRE_MESSAGE(st_q8 == FRUGAL_OK, err.message());
    CHECK(frugal_session_kv_type(q8.get()) == FRUGAL_KV_Q8_0);
    auto [st_f16, f16] = create(model.get(), FRUGAL_KV_F16, err);
    auto [st_f32, f32] = create(model.get(), FRUGAL_KV_F32, err);
    REQUIRE(st_f16 == FRUGAL_OK);
    REQUIRE(st_f32 == FRUGAL_OK);
    CHECK(frugal_session_kv_bytes(q8.get()) * 32 == frugal_session_kv_bytes(f16.get()) * 17);
    // The same prompt through each cache: Q8_0 moves the logits, a little.
    const int32_t prompt[] = {1, 260, 261, 262, 100, 101, 102, 103, 104};
    const auto exact = prompt_logits(f32.get(), prompt, int32_t(std::size(prompt)));
    const auto quantized = prompt_logits(q8.get(), prompt, int32_t(std::size(prompt)));
    const float diff = max_abs_diff(exact, quantized);
    float top = 0;
    for (float v : exact) top = std::max(top, std::abs(v));
    MESSAGE("max |logit, Q8_0 cache - F32 cache| " << diff << " of max |logit| " << top);
    CHECK(diff > 0);
    CHECK(diff < 0.05f * top);
    // And it generates past the prompt, token by token, as the F32 cache does.
    const auto g = generate(q8.get(), 8);
    CHECK(g.last >= 0);
    CHECK_MESSAGE(!g.ids.empty(), g.message);
}

TEST_CASE("capi: frugal_model_options_init" * doctest::timeout(10)) {
    CHECK(frugal_model_options_init(nullptr, sizeof(frugal_model_options)) == FRUGAL_ERR_INVALID_ARGUMENT);
    frugal_model_options o;
    std::memset(&o, 0xAB, sizeof o);
    CHECK(frugal_model_options_init(&o, 0) == FRUGAL_ERR_INVALID_ARGUMENT);
    REQUIRE(FRUGAL_MODEL_OPTIONS_INIT(&o) == FRUGAL_OK);
    CHECK(o.struct_size == sizeof o);
    CHECK(o.n_threads == 0);
    CHECK(o.use_mmap == 1);
    CHECK(o.reserved0 == 0);
    CHECK(o.repack_weights == 1);
    CHECK(o.reserved1 == 0);
    CHECK((o.progress == nullptr));
    CHECK(o.progress_user_data == nullptr);
    // An older caller's smaller struct: nothing past its size is written.
    unsigned char small[sizeof(frugal_model_options) + 8];
    std::memset(small, 0xAB, sizeof small);
    const auto old_size = uint32_t(offsetof(frugal_model_options, progress));
    REQUIRE(frugal_model_options_init(reinterpret_cast<frugal_model_options *>(small), old_size) == FRUGAL_OK);
    frugal_model_options head;
    std::memcpy(&head, small, old_size);
    CHECK(head.struct_size == old_size);
    CHECK(head.use_mmap == 1);
    for (size_t i = old_size; i < sizeof small; ++i) CHECK(small[i] == 0xAB);
    // A newer caller's larger struct: known fields set, the unknown tail zeroed.
    std::memset(small, 0xAB, sizeof small);
    REQUIRE(frugal_model_options_init(reinterpret_cast<frugal_model_options *>(small), sizeof small) == FRUGAL_OK);
    std::memcpy(&head, small, sizeof head);
    CHECK(head.struct_size == sizeof small);
    CHECK(head.use_mmap == 1);
    CHECK((head.progress == nullptr));
    for (size_t i = sizeof head; i < sizeof small; ++i) CHECK(small[i] == 0);
}

TEST_CASE("capi: every entry point rejects NULL handles and arguments" * doctest::timeout(30)) {
    // Getters on NULL: 0, "" or NULL (the token ids: -1, "none").
    CHECK(frugal_model_n_vocab(nullptr) == 0);
    CHECK(frugal_model_n_ctx_train(nullptr) == 0);
    CHECK(frugal_model_n_embd(nullptr) == 0);
    CHECK(frugal_model_n_layers(nullptr) == 0);
    CHECK(frugal_model_n_heads(nullptr) == 0);
    CHECK(frugal_model_n_heads_kv(nullptr) == 0);
    CHECK(frugal_model_n_params(nullptr) == 0);
    CHECK(frugal_model_size_bytes(nullptr) == 0);
    CHECK(frugal_model_n_experts(nullptr) == 0);
    CHECK(frugal_model_n_experts_used(nullptr) == 0);
    CHECK(frugal_model_kv_bytes_per_token(nullptr) == 0);
    REQUIRE(frugal_model_architecture(nullptr) != nullptr);
    CHECK(std::string(frugal_model_architecture(nullptr)).empty());
    REQUIRE(frugal_model_name(nullptr) != nullptr);
    CHECK(std::string(frugal_model_name(nullptr)).empty());
    CHECK(frugal_model_token_bos(nullptr) == -1);
    CHECK(frugal_model_token_eos(nullptr) == -1);
    CHECK(frugal_model_token_is_eog(nullptr, 0) == 0);
    CHECK(frugal_model_meta_count(nullptr) == 0);
    CHECK(frugal_session_n_ctx(nullptr) == 0);
    CHECK(frugal_session_n_past(nullptr) == 0);
    CHECK(frugal_session_kv_bytes(nullptr) == 0);
    int32_t n_vocab = 12345;
    CHECK(frugal_session_logits(nullptr, &n_vocab) == nullptr);
    CHECK(frugal_session_logits(nullptr, nullptr) == nullptr);
    // Destructors and cancel accept NULL.
    frugal_model_free(nullptr);
    frugal_session_free(nullptr);
    frugal_session_cancel(nullptr);

    auto model = load(tiny_model_path());
    frugal_model * m = model.get();
    auto session = make_session(m, 32);
    frugal_session * s = session.get();
    char buf[64];
    size_t len = 777;
    int32_t ids[16];
    size_t n = 777;
    int32_t tok = 5;
    const char * text = "ab";

    // model
    frugal_model * out_model = nullptr;
    expect_invalid("load: NULL path",
                   [&](frugal_error ** e) { return frugal_model_load(nullptr, nullptr, &out_model, e); });
    expect_invalid("load: NULL out", [&](frugal_error ** e) {
        return frugal_model_load(tiny_model_path().c_str(), nullptr, nullptr, e);
    });
    CHECK(out_model == nullptr);
    expect_invalid("meta_key: NULL model",
                   [&](frugal_error ** e) { return frugal_model_meta_key(nullptr, 0, buf, sizeof buf, &len, e); });
    expect_invalid("meta_key: NULL buf",
                   [&](frugal_error ** e) { return frugal_model_meta_key(m, 0, nullptr, 8, &len, e); });
    expect_invalid("meta_key: NULL out_len",
                   [&](frugal_error ** e) { return frugal_model_meta_key(m, 0, buf, sizeof buf, nullptr, e); });
    expect_invalid("meta_key: index -1",
                   [&](frugal_error ** e) { return frugal_model_meta_key(m, -1, buf, sizeof buf, &len, e); });
    expect_invalid("meta_key: index count", [&](frugal_error ** e) {
        return frugal_model_meta_key(m, frugal_model_meta_count(m), buf, sizeof buf, &len, e);
    });
    expect_invalid("meta_value: NULL model", [&](frugal_error ** e) {
        return frugal_model_meta_value(nullptr, "general.name", buf, sizeof buf, &len, e);
    });
    expect_invalid("meta_value: NULL key",
                   [&](frugal_error ** e) { return frugal_model_meta_value(m, nullptr, buf, sizeof buf, &len, e); });
    expect_invalid("meta_value: NULL buf",
                   [&](frugal_error ** e) { return frugal_model_meta_value(m, "general.name", nullptr, 8, &len, e); });
    expect_invalid("meta_value: NULL out_len", [&](frugal_error ** e) {
        return frugal_model_meta_value(m, "general.name", buf, sizeof buf, nullptr, e);
    });
    expect_invalid("meta_value: no such key", [&](frugal_error ** e) {
        return frugal_model_meta_value(m, "no.such.key", buf, sizeof buf, &len, e);
    });
    CHECK(len == 777); // failed calls leave out-params alone
    // tokenizer
    expect_invalid("tokenize: NULL model",
                   [&](frugal_error ** e) { return frugal_tokenize(nullptr, text, 2, 1, 0, ids, 16, &n, e); });
    expect_invalid("tokenize: NULL text",
                   [&](frugal_error ** e) { return frugal_tokenize(m, nullptr, 2, 1, 0, ids, 16, &n, e); });
    expect_invalid("tokenize: NULL out",
                   [&](frugal_error ** e) { return frugal_tokenize(m, text, 2, 1, 0, nullptr, 16, &n, e); });
    expect_invalid("tokenize: NULL out_n",
                   [&](frugal_error ** e) { return frugal_tokenize(m, text, 2, 1, 0, ids, 16, nullptr, e); });
    expect_invalid("detokenize: NULL model",
                   [&](frugal_error ** e) { return frugal_detokenize(nullptr, ids, 1, 0, buf, sizeof buf, &len, e); });
    expect_invalid("detokenize: NULL tokens",
                   [&](frugal_error ** e) { return frugal_detokenize(m, nullptr, 1, 0, buf, sizeof buf, &len, e); });
    expect_invalid("detokenize: NULL buf",
                   [&](frugal_error ** e) { return frugal_detokenize(m, &tok, 1, 0, nullptr, 8, &len, e); });
    expect_invalid("detokenize: NULL out_len",
                   [&](frugal_error ** e) { return frugal_detokenize(m, &tok, 1, 0, buf, sizeof buf, nullptr, e); });
    const int32_t bad_ids[] = {-1, frugal_model_n_vocab(m)};
    for (const int32_t id : bad_ids)
        expect_invalid("detokenize: id out of range",
                       [&](frugal_error ** e) { return frugal_detokenize(m, &id, 1, 0, buf, sizeof buf, &len, e); });
    CHECK(n == 777);
    CHECK(len == 777);
    // NULL with a zero length/capacity is an empty input/output, not an error.
    CHECK(frugal_tokenize(m, nullptr, 0, 0, 0, nullptr, 0, &n, nullptr) == FRUGAL_OK);
    CHECK(n == 0);
    CHECK(frugal_detokenize(m, nullptr, 0, 0, nullptr, 0, &len, nullptr) == FRUGAL_OK);
    CHECK(len == 0);
    // sessions
    frugal_session * out_session = reinterpret_cast<frugal_session *>(&n);
    expect_invalid("session_create: NULL model",
                   [&](frugal_error ** e) { return frugal_session_create(nullptr, 8, &out_session, e); });
    expect_invalid("session_create: NULL out",
                   [&](frugal_error ** e) { return frugal_session_create(m, 8, nullptr, e); });
    expect_invalid("session_create: n_ctx -1",
                   [&](frugal_error ** e) { return frugal_session_create(m, -1, &out_session, e); });
    expect_invalid("session_create: n_ctx huge",
                   [&](frugal_error ** e) { return frugal_session_create(m, INT32_MAX, &out_session, e); });
    CHECK(out_session == reinterpret_cast<frugal_session *>(&n));
    expect_invalid("reset: NULL", [&](frugal_error ** e) { return frugal_session_reset(nullptr, e); });
    expect_invalid("set_param_f32: NULL", [&](frugal_error ** e) {
        return frugal_session_set_param_f32(nullptr, FRUGAL_PARAM_TEMPERATURE, 0.5f, e);
    });
    expect_invalid("set_param_i64: NULL",
                   [&](frugal_error ** e) { return frugal_session_set_param_i64(nullptr, FRUGAL_PARAM_TOP_K, 5, e); });
    expect_invalid("prompt: NULL session",
                   [&](frugal_error ** e) { return frugal_session_prompt(nullptr, text, 2, e); });
    expect_invalid("prompt: NULL text", [&](frugal_error ** e) { return frugal_session_prompt(s, nullptr, 2, e); });
    expect_invalid("prompt_tokens: NULL session",
                   [&](frugal_error ** e) { return frugal_session_prompt_tokens(nullptr, &tok, 1, e); });
    expect_invalid("prompt_tokens: NULL tokens",
                   [&](frugal_error ** e) { return frugal_session_prompt_tokens(s, nullptr, 1, e); });
    expect_invalid("prompt_tokens: none",
                   [&](frugal_error ** e) { return frugal_session_prompt_tokens(s, &tok, 0, e); });
    expect_invalid("next: NULL session",
                   [&](frugal_error ** e) { return frugal_session_next(nullptr, &tok, buf, sizeof buf, &len, e); });
    expect_invalid("next: NULL buf",
                   [&](frugal_error ** e) { return frugal_session_next(s, &tok, nullptr, 8, &len, e); });
    expect_invalid("next: NULL out_len",
                   [&](frugal_error ** e) { return frugal_session_next(s, &tok, buf, sizeof buf, nullptr, e); });
    expect_invalid("next: before any prompt",
                   [&](frugal_error ** e) { return frugal_session_next(s, &tok, buf, sizeof buf, &len, e); });
    CHECK(tok == 5);
    CHECK(frugal_session_n_past(s) == 0);
    CHECK(frugal_session_logits(s, &n_vocab) == nullptr); // nothing evaluated yet

    // tokenizers and chat templates
    frugal_tokenizer * out_tok = nullptr;
    CHECK(frugal_tokenizer_n_vocab(nullptr) == 0);
    CHECK(frugal_tokenizer_token_bos(nullptr) == -1);
    CHECK(frugal_tokenizer_token_eos(nullptr) == -1);
    CHECK(frugal_tokenizer_token_is_eog(nullptr, 0) == 0);
    CHECK(std::string(frugal_tokenizer_chat_format(nullptr)) == "none");
    frugal_tokenizer_free(nullptr);
    expect_invalid("tokenizer_load: NULL path",
                   [&](frugal_error ** e) { return frugal_tokenizer_load(nullptr, &out_tok, e); });
    expect_invalid("tokenizer_load: NULL out",
                   [&](frugal_error ** e) { return frugal_tokenizer_load(tiny_model_path().c_str(), nullptr, e); });
    expect_invalid("get_tokenizer: NULL model",
                   [&](frugal_error ** e) { return frugal_model_get_tokenizer(nullptr, &out_tok, e); });
    CHECK(out_tok == nullptr);
    expect_invalid("tokenizer_encode: NULL tokenizer", [&](frugal_error ** e) {
        return frugal_tokenizer_encode(nullptr, text, 2, 1, 1, ids, 16, &n, e);
    });
    expect_invalid("tokenizer_decode: NULL tokenizer", [&](frugal_error ** e) {
        return frugal_tokenizer_decode(nullptr, &tok, 1, 0, buf, sizeof buf, &len, e);
    });
    const frugal_chat_message hello{"user", "hi", 2};
    expect_invalid("chat: NULL tokenizer", [&](frugal_error ** e) {
        return frugal_chat_apply_template(nullptr, nullptr, &hello, 1, 1, buf, sizeof buf, &len, e);
    });
    expect_invalid("next_part: NULL session", [&](frugal_error ** e) {
        return frugal_session_next_part(nullptr, &tok, nullptr, buf, sizeof buf, &len, e);
    });
    expect_invalid("next_part: before any prompt", [&](frugal_error ** e) {
        return frugal_session_next_part(s, &tok, nullptr, buf, sizeof buf, &len, e);
    });

    // The session still works after all that; out_token may be NULL.
    const int32_t bos = frugal_model_token_bos(m);
    REQUIRE(frugal_session_prompt_tokens(s, &bos, 1, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_next(s, nullptr, buf, sizeof buf, &len, nullptr) >= 0);
    CHECK(frugal_session_n_past(s) == 1);
}

TEST_CASE("capi: log callback receives messages and can be unset" * doctest::timeout(30)) {
    struct sink {
        std::mutex mu;
        std::vector<std::pair<int32_t, std::string>> messages;
        size_t count(int32_t level) {
            std::lock_guard lock(mu);
            return size_t(std::count_if(messages.begin(), messages.end(), [&](auto & m) { return m.first == level; }));
        }
        size_t size() {
            std::lock_guard lock(mu);
            return messages.size();
        }
    };
    struct restore {
        ~restore() { frugal_set_log_callback(nullptr, nullptr, FRUGAL_LOG_LEVEL_WARN); }
    } restore_default;
    const frugal_log_fn on_log = [](int32_t level, const char * message, void * user_data) {
        auto * s = static_cast<sink *>(user_data);
        std::lock_guard lock(s->mu);
        s->messages.emplace_back(level, message ? message : "");
    };

    sink all;
    frugal_set_log_callback(on_log, &all, FRUGAL_LOG_LEVEL_DEBUG);
    {
        auto m = load(tiny_model_path());
        auto s = make_session(m.get(), 2 * frugal_model_n_ctx_train(m.get())); // above training: a warning
    }
    CHECK(all.count(FRUGAL_LOG_LEVEL_DEBUG) > 0);
    CHECK(all.count(FRUGAL_LOG_LEVEL_INFO) > 0);
    CHECK(all.count(FRUGAL_LOG_LEVEL_WARN) > 0);
    for (const auto & [level, text] : all.messages) {
        CHECK(level >= FRUGAL_LOG_LEVEL_DEBUG);
        CHECK(level <= FRUGAL_LOG_LEVEL_ERROR);
        CHECK_FALSE(text.empty());
    }
    // min_level filters: at WARN only the warning arrives.
    sink warn_only;
    frugal_set_log_callback(on_log, &warn_only, FRUGAL_LOG_LEVEL_WARN);
    {
        auto m = load(tiny_model_path());
        auto s = make_session(m.get(), 2 * frugal_model_n_ctx_train(m.get()));
    }
    CHECK(warn_only.size() > 0);
    CHECK(warn_only.count(FRUGAL_LOG_LEVEL_DEBUG) == 0);
    CHECK(warn_only.count(FRUGAL_LOG_LEVEL_INFO) == 0);
    // Unset: nothing more reaches either sink.
    const size_t before_all = all.size(), before_warn = warn_only.size();
    frugal_set_log_callback(nullptr, nullptr, FRUGAL_LOG_LEVEL_DEBUG);
    { auto m = load(tiny_model_path()); }
    CHECK(all.size() == before_all);
    CHECK(warn_only.size() == before_warn);
}

// ---- stories260K ------------------------------------------------------------------------------

TEST_CASE("capi: stories260K model getters and metadata" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    const auto & c = st->ref["config"];
    auto model = load(st->path);
    frugal_model * m = model.get();
    const int64_t dim = c["dim"], hidden = c["hidden_dim"], layers = c["n_layers"], heads = c["n_heads"],
                  kv_heads = c["n_kv_heads"], vocab = c["vocab_size"], seq = c["seq_len"], hs = c["head_size"];
    CHECK(frugal_model_n_vocab(m) == vocab);
    CHECK(frugal_model_n_layers(m) == layers);
    CHECK(frugal_model_n_embd(m) == dim);
    CHECK(frugal_model_n_heads(m) == heads);
    CHECK(frugal_model_n_heads_kv(m) == kv_heads);
    CHECK(frugal_model_n_ctx_train(m) == seq);
    CHECK(std::string(frugal_model_architecture(m)) == "llama");
    CHECK(frugal_model_token_bos(m) == st->ref["greedy_from_bos"]["prompt_ids"][0].get<int32_t>());
    const int32_t eos = frugal_model_token_eos(m);
    CHECK(eos >= 0);
    CHECK(eos < vocab);
    CHECK(frugal_model_token_is_eog(m, eos) == 1);
    CHECK(frugal_model_token_is_eog(m, frugal_model_token_bos(m)) == 0);
    CHECK(frugal_model_token_is_eog(m, -1) == 0);
    CHECK(frugal_model_token_is_eog(m, int32_t(vocab)) == 0);
    // Weights: embeddings + per layer (2 norms, q, k, v, o, 3 FFN) + final norm; the classifier
    // is shared, but a file may still store it as output.weight. F32 throughout.
    const int64_t base =
        vocab * dim + dim + layers * (2 * dim + 2 * dim * dim + 2 * dim * kv_heads * hs + 3 * dim * hidden);
    const uint64_t n_params = frugal_model_n_params(m);
    CHECK((n_params == uint64_t(base) || n_params == uint64_t(base + vocab * dim)));
    CHECK(frugal_model_size_bytes(m) == 4 * n_params);

    // Metadata: every key readable, general.architecture among them.
    const int32_t n_meta = frugal_model_meta_count(m);
    REQUIRE(n_meta > 0);
    bool found_arch = false;
    for (int32_t i = 0; i < n_meta; ++i) {
        CAPTURE(i);
        size_t need = 0;
        err_box err;
        REQUIRE(frugal_model_meta_key(m, i, nullptr, 0, &need, err.out()) == FRUGAL_ERR_BUFFER_TOO_SMALL);
        REQUIRE(need >= 2);
        std::vector<char> key(need, '\x7f');
        size_t got = 0;
        // One byte short: still too small, same size reported, buffer untouched.
        CHECK(frugal_model_meta_key(m, i, key.data(), need - 1, &got, nullptr) == FRUGAL_ERR_BUFFER_TOO_SMALL);
        CHECK(got == need);
        CHECK(key[0] == '\x7f');
        REQUIRE(frugal_model_meta_key(m, i, key.data(), need, &got, err.out()) == FRUGAL_OK);
        CHECK(got == need);
        CHECK(key[need - 1] == '\0');
        CHECK(std::strlen(key.data()) == need - 1);
        size_t vneed = 0;
        CHECK(frugal_model_meta_value(m, key.data(), nullptr, 0, &vneed, nullptr) == FRUGAL_ERR_BUFFER_TOO_SMALL);
        std::vector<char> value(vneed);
        CHECK(frugal_model_meta_value(m, key.data(), value.data(), vneed, &got, nullptr) == FRUGAL_OK);
        CHECK(got == vneed);
        CHECK(std::strlen(value.data()) == vneed - 1);
        if (std::string(key.data()) == "general.architecture") {
            found_arch = true;
            CHECK(std::string(value.data()) == frugal_model_architecture(m));
        }
    }
    CHECK(found_arch);
    char buf[256];
    size_t len = 0;
    REQUIRE(frugal_model_meta_value(m, "llama.block_count", buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
    CHECK(std::string(buf) == std::to_string(layers));
    REQUIRE(frugal_model_meta_value(m, "tokenizer.ggml.tokens", buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
    CHECK(contains(buf, std::to_string(vocab))); // arrays summarised with their count
    err_box err;
    CHECK(frugal_model_meta_value(m, "no.such.key", buf, sizeof buf, &len, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(err.message(), "no.such.key"));
    CHECK(frugal_model_meta_key(m, n_meta, buf, sizeof buf, &len, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(err.message(), std::to_string(n_meta)));

    // A session sized by default: min(training context, 4096).
    auto s = make_session(m, 0);
    CHECK(frugal_session_n_ctx(s.get()) == std::min<int64_t>(seq, 4096));
    CHECK(frugal_session_n_past(s.get()) == 0);
    CHECK(frugal_session_kv_bytes(s.get()) > 0);
}

TEST_CASE("capi: stories260K tokenize and detokenize" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    auto model = load(st->path);
    frugal_model * m = model.get();
    for (const auto & p : st->ref["prompts"]) {
        const auto prompt = p["prompt"].get<std::string>();
        const auto want = ids_of(p["prompt_ids"]); // BOS included
        CAPTURE(prompt);
        size_t n = 0;
        REQUIRE(frugal_tokenize(m, prompt.data(), prompt.size(), 1, 0, nullptr, 0, &n, nullptr) ==
                FRUGAL_ERR_BUFFER_TOO_SMALL);
        CHECK(n == want.size());
        std::vector<int32_t> ids(want.size() + 4, -7);
        CHECK(frugal_tokenize(m, prompt.data(), prompt.size(), 1, 0, ids.data(), want.size() - 1, &n, nullptr) ==
              FRUGAL_ERR_BUFFER_TOO_SMALL);
        CHECK(n == want.size());
        CHECK(ids[want.size() - 1] == -7); // nothing written past cap
        REQUIRE(frugal_tokenize(m, prompt.data(), prompt.size(), 1, 0, ids.data(), ids.size(), &n, nullptr) ==
                FRUGAL_OK);
        REQUIRE(n == want.size());
        ids.resize(n);
        CHECK(ids == want);
        CHECK(ids[0] == frugal_model_token_bos(m));
        // Without special tokens: no BOS.
        REQUIRE(frugal_tokenize(m, prompt.data(), prompt.size(), 0, 0, ids.data(), ids.size(), &n, nullptr) ==
                FRUGAL_OK);
        CHECK(std::vector<int32_t>(ids.begin(), ids.begin() + std::ptrdiff_t(n)) ==
              std::vector<int32_t>(want.begin() + 1, want.end()));

        // Back to the text (a leading BOS renders as nothing).
        size_t len = 0;
        REQUIRE(frugal_detokenize(m, want.data(), want.size(), 0, nullptr, 0, &len, nullptr) ==
                FRUGAL_ERR_BUFFER_TOO_SMALL);
        CHECK(len == prompt.size());
        std::string text(len, '\0');
        CHECK(frugal_detokenize(m, want.data(), want.size(), 0, text.data(), len - 1, &len, nullptr) ==
              FRUGAL_ERR_BUFFER_TOO_SMALL);
        CHECK(len == prompt.size());
        REQUIRE(frugal_detokenize(m, want.data(), want.size(), 0, text.data(), text.size(), &len, nullptr) ==
                FRUGAL_OK);
        CHECK(text.substr(0, len) == prompt);
    }
    // Control-token text becomes the token only with parse_special.
    const std::string bos_text = "<s>";
    int32_t ids[16];
    size_t n = 0;
    REQUIRE(frugal_tokenize(m, bos_text.data(), bos_text.size(), 0, 1, ids, 16, &n, nullptr) == FRUGAL_OK);
    REQUIRE(n == 1);
    CHECK(ids[0] == frugal_model_token_bos(m));
    REQUIRE(frugal_tokenize(m, bos_text.data(), bos_text.size(), 0, 0, ids, 16, &n, nullptr) == FRUGAL_OK);
    CHECK(n > 1);
    // Invalid UTF-8 names the byte offset.
    const std::string prefix = "Once upon a time, there was a little";
    for (const std::string bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x98"}) {
        const std::string text = prefix + bad + "x";
        err_box err;
        CHECK(frugal_tokenize(m, text.data(), text.size(), 1, 0, ids, 16, &n, err.out()) ==
              FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(err.message(), std::to_string(prefix.size())), err.message());
    }
}

TEST_CASE("capi: tokenizers load alone from GGUF and tokenizer.json, and outlive their model" *
          doctest::timeout(60)) {
    using tokenizer_ptr = std::unique_ptr<frugal_tokenizer, decltype(&frugal_tokenizer_free)>;
    auto load_tokenizer = [](const std::string & path) {
        frugal_tokenizer * t = nullptr;
        err_box err;
        REQUIRE_MESSAGE(frugal_tokenizer_load(path.c_str(), &t, err.out()) == FRUGAL_OK, err.message());
        return tokenizer_ptr(t, frugal_tokenizer_free);
    };
    auto encode = [](const frugal_tokenizer * t, const std::string & text) {
        std::vector<int32_t> ids(text.size() + 8);
        size_t n = 0;
        REQUIRE(frugal_tokenizer_encode(t, text.data(), text.size(), 1, 1, ids.data(), ids.size(), &n, nullptr) ==
                FRUGAL_OK);
        ids.resize(n);
        return ids;
    };

    // the tiny model's vocabulary, from the model and from the file alone
    const std::string text = "the cab<s>ha";
    auto model = load(tiny_model_path());
    frugal_tokenizer * from_model = nullptr;
    REQUIRE(frugal_model_get_tokenizer(model.get(), &from_model, nullptr) == FRUGAL_OK);
    tokenizer_ptr owned(from_model, frugal_tokenizer_free);
    std::vector<int32_t> via_model(32);
    size_t n = 0;
    REQUIRE(frugal_tokenize(model.get(), text.data(), text.size(), 1, 1, via_model.data(), via_model.size(), &n,
                            nullptr) == FRUGAL_OK);
    via_model.resize(n);
    CHECK(encode(from_model, text) == via_model);
    CHECK(frugal_tokenizer_n_vocab(from_model) == frugal_model_n_vocab(model.get()));
    CHECK(frugal_tokenizer_token_bos(from_model) == frugal_model_token_bos(model.get()));
    CHECK(frugal_tokenizer_token_is_eog(from_model, frugal_model_token_eos(model.get())) == 1);
    auto alone = load_tokenizer(tiny_model_path());
    CHECK(encode(alone.get(), text) == via_model);
    model.reset(); // the tokenizer keeps what it needs
    CHECK(encode(from_model, text) == via_model);
    char buf[64];
    size_t len = 0;
    REQUIRE(frugal_tokenizer_decode(from_model, via_model.data(), via_model.size(), 1, buf, sizeof buf, &len,
                                    nullptr) == FRUGAL_OK);
    // SentencePiece: the space the encoder puts before each text fragment shows after a rendered <s>
    CHECK(std::string(buf, len) == "<s> the cab<s> ha");

    // errors name the file
    err_box err;
    frugal_tokenizer * t = nullptr;
    const auto missing = frugal::test::scratch_dir("capi") / "no-such-tokenizer";
    CHECK(frugal_tokenizer_load(missing.c_str(), &t, err.out()) == FRUGAL_ERR_IO);
    CHECK_MESSAGE(contains(err.message(), "no-such-tokenizer"), err.message());
    CHECK(t == nullptr);

    // a Hugging Face folder: DeepSeek-V3's tokenizer adds BOS and knows its chat format
    const auto v3 = frugal::test::shared_data("tokenizers/deepseek-v3");
    if (!v3) FRUGAL_SKIP("../shared/data/tokenizers is absent");
    auto hf = load_tokenizer(v3->string());
    CHECK(encode(hf.get(), "Hello world") == std::vector<int32_t>{0, 19923, 2058});
    CHECK(std::string(frugal_tokenizer_chat_format(hf.get())) == "deepseek-v3");
    CHECK(frugal_tokenizer_n_vocab(hf.get()) == 128815);
}

TEST_CASE("capi: chat templates render conversations and reject bad messages" * doctest::timeout(30)) {
    auto model = load(tiny_model_path());
    frugal_tokenizer * tok = nullptr;
    REQUIRE(frugal_model_get_tokenizer(model.get(), &tok, nullptr) == FRUGAL_OK);
    std::unique_ptr<frugal_tokenizer, decltype(&frugal_tokenizer_free)> owned(tok, frugal_tokenizer_free);
    CHECK(std::string(frugal_tokenizer_chat_format(tok)) == "none"); // no template, no chat tokens

    // content must outlive the message: literals, or strings declared before it
    auto msg = [](const char * role, std::string_view content) {
        return frugal_chat_message{role, content.data(), content.size()};
    };
    const std::string sys = "Be brief.", q1 = "2+2?", a1 = "<think>\nsimple\n</think>\n\n4", q2 = "And 3+3?";
    const frugal_chat_message conv[] = {msg("system", sys), msg("user", q1), msg("assistant", a1), msg("user", q2)};
    auto render = [&](const char * format, int32_t add_generation_prompt, frugal_status want = FRUGAL_OK) {
        size_t len = 0;
        CHECK(frugal_chat_apply_template(tok, format, conv, 4, add_generation_prompt, nullptr, 0, &len, nullptr) ==
              FRUGAL_ERR_BUFFER_TOO_SMALL);
        std::string out(len, '\0');
        err_box err;
        CHECK(frugal_chat_apply_template(tok, format, conv, 4, add_generation_prompt, out.data(), out.size(), &len,
                                         err.out()) == want);
        return out;
    };
    // R1 (MODEL-SPEC.md §4.4): BOS and the system prompt raw, earlier reasoning dropped, "<think>\n" opened
    const std::string user = "<\uFF5CUser\uFF5C>", assistant = "<\uFF5CAssistant\uFF5C>",
                      end = "<\uFF5Cend\u2581of\u2581sentence\uFF5C>";
    CHECK(render("deepseek-r1", 1) ==
          "<s>Be brief." + user + "2+2?" + assistant + "\n\n4" + end + user + "And 3+3?" + assistant + "<think>\n");
    CHECK(render("deepseek-r1", 0) == "<s>Be brief." + user + "2+2?" + assistant + "\n\n4" + end + user + "And 3+3?");
    CHECK(render("chatml", 1) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                                 "<|im_start|>assistant\n" + a1 + "<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n"
                                 "<|im_start|>assistant\n");

    // errors name the offending value; the tokenizer stays usable
    char buf[256];
    size_t len = 0;
    auto expect = [&](const frugal_chat_message * m, size_t n, const char * format, const std::string & needle) {
        err_box err;
        CHECK(frugal_chat_apply_template(tok, format, m, n, 1, buf, sizeof buf, &len, err.out()) ==
              FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(err.message(), needle), err.message());
    };
    const frugal_chat_message tool = msg("tool", "x");
    expect(&tool, 1, "chatml", "'tool'");
    const std::string bad_utf8 = "ok\xC3(";
    const frugal_chat_message bad = msg("user", bad_utf8);
    expect(&bad, 1, "chatml", "offset 2");
    expect(conv, 4, "vicuna", "'vicuna'");
    expect(conv, 4, nullptr, "none"); // the tiny model has no chat format
    CHECK(render("chatml", 1).size() > 0);
}

TEST_CASE("capi: next_part splits one token's text into reasoning and content, one part per call" *
          doctest::timeout(60)) {
    // A tiny model that always generates token 0, whose text closes the reasoning mid-token: with
    // output_norm zero every logit is 0 and greedy takes the lowest id.
    namespace g = frugal::test::gguf;
    auto b = g::tiny_llama();
    auto tokens = g::tiny_llama_tokens();
    tokens[0] = "ab</think>cd";
    b.set("tokenizer.ggml.tokens", g::arr_str(tokens));
    auto & types = b.get("tokenizer.ggml.token_type").items;
    types[0] = g::i32(1); // normal
    b.set("tokenizer.ggml.unknown_token_id", g::u32(2));
    auto & norm = b.get_tensor("output_norm.weight").data;
    std::fill(norm.begin(), norm.end(), uint8_t(0));
    const auto path = frugal::test::scratch_dir("capi") / ("closes-think.gguf." + std::to_string(::getpid()));
    g::write_file(path, b.build());
    auto model = load(path.string());
    std::filesystem::remove(path);
    auto session = make_session(model.get(), 32);
    frugal_session * s = session.get();
    set_greedy(s);
    const std::string prompt = "<think>";
    REQUIRE(frugal_session_prompt(s, prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    const int32_t n_prompt = frugal_session_n_past(s);

    char buf[64];
    size_t len = 0;
    int32_t tok = -1, kind = -1;
    // the first token: reasoning "ab", then (without sampling) content "cd"
    REQUIRE(frugal_session_next_part(s, &tok, &kind, buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
    CHECK(tok == 0);
    CHECK(kind == FRUGAL_TEXT_REASONING);
    CHECK(std::string(buf, len) == "ab");
    CHECK(frugal_session_next_part(s, &tok, &kind, buf, 1, &len, nullptr) == FRUGAL_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 2);
    tok = kind = -1;
    REQUIRE(frugal_session_next_part(s, &tok, &kind, buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
    CHECK(tok == 0);
    CHECK(kind == FRUGAL_TEXT_CONTENT);
    CHECK(std::string(buf, len) == "cd");
    CHECK(frugal_session_n_past(s) == n_prompt); // token 0 not evaluated yet: no second sample so far
    // later tokens: the stray </think> is dropped, the rest is content in one part
    REQUIRE(frugal_session_next_part(s, &tok, &kind, buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
    CHECK(kind == FRUGAL_TEXT_CONTENT);
    CHECK(std::string(buf, len) == "abcd");
    CHECK(frugal_session_n_past(s) == n_prompt + 1);
    // frugal_session_next shows the same token's text as generated
    REQUIRE(frugal_session_next(s, &tok, buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
    CHECK(std::string(buf, len) == "ab</think>cd");
}

TEST_CASE("capi: stories260K reasoning parts follow the prompt's <think>; BOS is not doubled" *
          doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    auto model = load(st->path);
    // raw text of a greedy continuation, and the same continuation as parts
    auto run = [&](const std::string & prompt, bool parts, size_t n_tokens) {
        auto s = make_session(model.get());
        set_greedy(s.get());
        REQUIRE(frugal_session_prompt(s.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
        std::vector<std::pair<int32_t, std::string>> out; // kind, text
        char buf[256];
        for (size_t i = 0; i < n_tokens; ++i) {
            int32_t tok = -1, kind = -1;
            size_t len = 0;
            const frugal_status status =
                parts ? frugal_session_next_part(s.get(), &tok, &kind, buf, sizeof buf, &len, nullptr)
                      : frugal_session_next(s.get(), &tok, buf, sizeof buf, &len, nullptr);
            REQUIRE(status >= 0);
            out.emplace_back(kind, std::string(buf, len));
            if (status == FRUGAL_DONE) break;
        }
        return out;
    };
    auto joined = [](const auto & parts, int32_t kind) {
        std::string s;
        for (const auto & [k, text] : parts)
            if (k == kind) s += text;
        return s;
    };
    auto rstrip = [](std::string s) {
        while (!s.empty() && std::strchr(" \t\r\n", s.back())) s.pop_back();
        return s;
    };
    const std::string story = "Once upon a time";
    const auto raw = joined(run(story, false, 48), -1);
    REQUIRE(!raw.empty());
    // no tags: everything is content, byte for byte
    const auto plain = run(story, true, 48);
    CHECK(joined(plain, FRUGAL_TEXT_CONTENT) == raw);
    CHECK(joined(plain, FRUGAL_TEXT_REASONING).empty());
    // the prompt opened <think> (written as text here): the same continuation is all reasoning, less
    // the whitespace held back at its end
    const auto thinking = run("<think>\n" + story, true, 48);
    CHECK(joined(thinking, FRUGAL_TEXT_CONTENT).empty());
    CHECK(joined(thinking, FRUGAL_TEXT_REASONING) == rstrip(joined(run("<think>\n" + story, false, 48), -1)));

    // a prompt that starts with the BOS text gets no second BOS
    auto s = make_session(model.get());
    const std::string with_bos = "<s>" + story;
    REQUIRE(frugal_session_prompt(s.get(), with_bos.data(), with_bos.size(), nullptr) == FRUGAL_OK);
    const int32_t n_with = frugal_session_n_past(s.get());
    REQUIRE(frugal_session_reset(s.get(), nullptr) == FRUGAL_OK);
    REQUIRE(frugal_session_prompt(s.get(), story.data(), story.size(), nullptr) == FRUGAL_OK);
    CHECK(frugal_session_n_past(s.get()) == n_with);
}

TEST_CASE("capi: stories260K greedy 256 tokens from BOS reproduce reference.json" * doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto prompt = ids_of(g["prompt_ids"]);
    const auto want = ids_of(g["generated_ids"]);
    for (const int32_t mm : {1, 0}) {
        CAPTURE(mm);
        auto model = load(st->path, mm);
        auto s = make_session(model.get(), 0);
        set_greedy(s.get());
        err_box err;
        REQUIRE_MESSAGE(frugal_session_prompt_tokens(s.get(), prompt.data(), prompt.size(), err.out()) == FRUGAL_OK,
                        err.message());
        CHECK(frugal_session_n_past(s.get()) == int32_t(prompt.size()));
        const auto got = generate(s.get(), want.size());
        CAPTURE(got.message);
        CHECK(got.last == FRUGAL_OK);
        CHECK(got.ids == want);
        CHECK(got.text == g["text"].get<std::string>());
        // The last token is sampled but not yet evaluated.
        CHECK(frugal_session_n_past(s.get()) == int32_t(prompt.size() + want.size() - 1));
    }
}

TEST_CASE("capi: stories260K prompted continuations match reference.json" * doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    auto model = load(st->path);
    for (const auto & p : st->ref["prompts"]) {
        const auto prompt = p["prompt"].get<std::string>();
        CAPTURE(prompt);
        const auto want = ids_of(p["generated_ids"]);
        auto s = make_f32_session(model.get(), 0);
        set_greedy(s.get());
        err_box err;
        REQUIRE_MESSAGE(frugal_session_prompt(s.get(), prompt.data(), prompt.size(), err.out()) == FRUGAL_OK,
                        err.message());
        CHECK(frugal_session_n_past(s.get()) == int32_t(p["prompt_ids"].size()));
        const auto got = generate(s.get(), want.size());
        CAPTURE(got.message);
        CHECK(got.ids == want);
        CHECK(got.text == p["generated_text"].get<std::string>());
    }
}

TEST_CASE("capi: stories260K next with a buffer too small keeps the token" * doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto prompt = ids_of(g["prompt_ids"]);
    const auto want = ids_of(g["generated_ids"]);
    auto model = load(st->path);
    auto s = make_session(model.get(), 0);
    set_greedy(s.get());
    REQUIRE(frugal_session_prompt_tokens(s.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    std::vector<int32_t> ids;
    std::string text;
    size_t n_too_small = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        int32_t tok = -5;
        size_t need = 0;
        err_box err;
        // First with no buffer at all: an empty piece fits, anything else is too small.
        frugal_status r = frugal_session_next(s.get(), &tok, nullptr, 0, &need, err.out());
        if (r == FRUGAL_OK) {
            CHECK(need == 0);
            ids.push_back(tok);
            continue;
        }
        REQUIRE(r == FRUGAL_ERR_BUFFER_TOO_SMALL);
        CHECK(tok == -5); // not delivered yet
        CHECK(need > 0);
        ++n_too_small;
        std::vector<char> buf(need + 1, '\x7f');
        size_t len = 0;
        r = frugal_session_next(s.get(), &tok, buf.data(), need - 1, &len, err.out());
        CHECK(r == FRUGAL_ERR_BUFFER_TOO_SMALL);
        CHECK(len == need);
        r = frugal_session_next(s.get(), &tok, buf.data(), need, &len, err.out());
        REQUIRE_MESSAGE(r == FRUGAL_OK, err.message());
        CHECK(len == need);
        CHECK(buf[need] == '\x7f'); // not NUL-terminated, nothing past the piece
        ids.push_back(tok);
        text.append(buf.data(), len);
    }
    CHECK(n_too_small > 0);
    CHECK(ids == want);
    CHECK(text == g["text"].get<std::string>());
}

TEST_CASE("capi: stories260K logits after a prompt" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto prompt = ids_of(g["prompt_ids"]);
    auto model = load(st->path);
    auto s = make_f32_session(model.get(), 0);
    int32_t n = -3;
    CHECK(frugal_session_logits(s.get(), &n) == nullptr);
    REQUIRE(frugal_session_prompt_tokens(s.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    const float * logits = frugal_session_logits(s.get(), &n);
    REQUIRE(logits != nullptr);
    REQUIRE(n == frugal_model_n_vocab(model.get()));
    CHECK(frugal_session_logits(s.get(), nullptr) == logits);
    const auto argmax = int32_t(std::max_element(logits, logits + n) - logits);
    CHECK(argmax == g["generated_ids"][0].get<int32_t>());
    // The values are numpy's float32 forward pass at position 0.
    const auto want = g["logits_first_8_pos"][0].get<std::vector<float>>();
    REQUIRE(want.size() == size_t(n));
    double max_diff = 0;
    for (int32_t i = 0; i < n; ++i) max_diff = std::max(max_diff, double(std::fabs(logits[i] - want[size_t(i)])));
    CHECK(max_diff < 1e-4);
    // After next() returned t, the logits are still those t was drawn from.
    set_greedy(s.get());
    const std::vector<float> before(logits, logits + n);
    const auto got = generate(s.get(), 1);
    REQUIRE(got.ids.size() == 1);
    const float * after = frugal_session_logits(s.get(), &n);
    REQUIRE(after != nullptr);
    CHECK(std::equal(before.begin(), before.end(), after));
}

TEST_CASE("capi: stories260K out-of-range token ids and invalid UTF-8 prompts" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto prompt = ids_of(g["prompt_ids"]);
    const auto want = ids_of(g["generated_ids"]);
    auto model = load(st->path);
    auto s = make_session(model.get(), 0);
    set_greedy(s.get());
    const int32_t n_vocab = frugal_model_n_vocab(model.get());
    for (const int32_t bad : {n_vocab, -1, INT32_MAX, INT32_MIN}) {
        CAPTURE(bad);
        const std::vector<int32_t> ids = {prompt[0], 100, bad, 7};
        err_box err;
        CHECK(frugal_session_prompt_tokens(s.get(), ids.data(), ids.size(), err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(err.code() == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(err.message(), std::to_string(bad)), err.message());
        CHECK(frugal_session_n_past(s.get()) == 0); // nothing evaluated
    }
    const std::string prefix = "Once upon a time, there was a little";
    for (const std::string bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x98"}) {
        const std::string text = prefix + bad + " girl";
        err_box err;
        CHECK(frugal_session_prompt(s.get(), text.data(), text.size(), err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(err.message(), std::to_string(prefix.size())), err.message());
        CHECK(frugal_session_n_past(s.get()) == 0);
    }
    // The session is still usable: the reference continuation from BOS.
    REQUIRE(frugal_session_prompt_tokens(s.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    const auto got = generate(s.get(), 16);
    CHECK(got.ids == std::vector<int32_t>(want.begin(), want.begin() + 16));
}

TEST_CASE("capi: stories260K context full" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto want = ids_of(g["generated_ids"]);
    // BOS + the first 9 reference tokens: the greedy continuation is the reference's from there.
    std::vector<int32_t> prompt = ids_of(g["prompt_ids"]);
    prompt.insert(prompt.end(), want.begin(), want.begin() + 9);
    REQUIRE(prompt.size() == 10);
    constexpr int32_t n_ctx = 16;
    auto model = load(st->path);
    {
        auto s = make_session(model.get(), n_ctx);
        set_greedy(s.get());
        CHECK(frugal_session_n_ctx(s.get()) == n_ctx);
        REQUIRE(frugal_session_prompt_tokens(s.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
        // Each delivered token takes a position when the next call evaluates it: 6 more fit.
        const auto got = generate(s.get(), 100);
        CHECK(got.last == FRUGAL_ERR_CONTEXT_FULL);
        CHECK_MESSAGE(contains(got.message, std::to_string(n_ctx)), got.message);
        CHECK(got.ids.size() == size_t(n_ctx) - prompt.size());
        CHECK(got.ids == std::vector<int32_t>(want.begin() + 9, want.begin() + 9 + std::ptrdiff_t(got.ids.size())));
        CHECK(frugal_session_n_past(s.get()) == n_ctx);
        // It stays full; a prompt does not fit either.
        CHECK(generate(s.get(), 1).last == FRUGAL_ERR_CONTEXT_FULL);
        CHECK(frugal_session_prompt_tokens(s.get(), prompt.data(), 1, nullptr) == FRUGAL_ERR_CONTEXT_FULL);
        // reset frees the positions.
        REQUIRE(frugal_session_reset(s.get(), nullptr) == FRUGAL_OK);
        CHECK(frugal_session_n_past(s.get()) == 0);
        REQUIRE(frugal_session_prompt_tokens(s.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
        CHECK(generate(s.get(), 3).ids == std::vector<int32_t>(want.begin() + 9, want.begin() + 12));
    }
    {
        // A prompt longer than the context: nothing evaluated.
        auto s = make_session(model.get(), n_ctx);
        set_greedy(s.get());
        std::vector<int32_t> too_long = prompt;
        too_long.insert(too_long.end(), want.begin() + 9, want.begin() + 16);
        REQUIRE(too_long.size() == size_t(n_ctx) + 1);
        err_box err;
        CHECK(frugal_session_prompt_tokens(s.get(), too_long.data(), too_long.size(), err.out()) ==
              FRUGAL_ERR_CONTEXT_FULL);
        CHECK_MESSAGE(contains(err.message(), std::to_string(too_long.size())), err.message());
        CHECK_MESSAGE(contains(err.message(), std::to_string(n_ctx)), err.message());
        CHECK(frugal_session_n_past(s.get()) == 0);
        CHECK(frugal_session_logits(s.get(), nullptr) == nullptr);
        // Ten fit; seven more do not, and the ten stay evaluated with their logits.
        REQUIRE(frugal_session_prompt_tokens(s.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
        CHECK(frugal_session_prompt_tokens(s.get(), too_long.data() + 10, 7, err.out()) == FRUGAL_ERR_CONTEXT_FULL);
        CHECK(frugal_session_n_past(s.get()) == 10);
        // Text prompts too.
        std::string long_text;
        for (int i = 0; i < 8; ++i) long_text += " Once upon a time";
        CHECK(frugal_session_prompt(s.get(), long_text.data(), long_text.size(), err.out()) == FRUGAL_ERR_CONTEXT_FULL);
        CHECK(frugal_session_n_past(s.get()) == 10);
        CHECK(generate(s.get(), 1).ids == std::vector<int32_t>{want[9]});
    }
}

TEST_CASE("capi: stories260K sampling parameters are validated" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto prompt = ids_of(g["prompt_ids"]);
    const auto want = ids_of(g["generated_ids"]);
    auto model = load(st->path);
    auto s = make_session(model.get(), 0);
    frugal_session * sp = s.get();
    set_greedy(sp);
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    struct f32_case {
        frugal_param key;
        float value;
        const char * name; // the parameter the message names
    };
    for (const auto & c : {f32_case{FRUGAL_PARAM_TOP_P, 0.0f, "top_p"}, f32_case{FRUGAL_PARAM_TOP_P, 1.5f, "top_p"},
                           f32_case{FRUGAL_PARAM_TOP_P, -0.5f, "top_p"}, f32_case{FRUGAL_PARAM_TOP_P, nan, "top_p"},
                           f32_case{FRUGAL_PARAM_MIN_P, -1.0f, "min_p"}, f32_case{FRUGAL_PARAM_MIN_P, 1.5f, "min_p"},
                           f32_case{FRUGAL_PARAM_TEMPERATURE, nan, "temperature"},
                           f32_case{FRUGAL_PARAM_TEMPERATURE, inf, "temperature"},
                           f32_case{FRUGAL_PARAM_REPEAT_PENALTY, 0.0f, "repeat_penalty"},
                           f32_case{FRUGAL_PARAM_REPEAT_PENALTY, -1.0f, "repeat_penalty"}}) {
        CAPTURE(c.name);
        CAPTURE(c.value);
        err_box err;
        CHECK(frugal_session_set_param_f32(sp, c.key, c.value, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(err.message(), c.name), err.message());
    }
    struct i64_case {
        frugal_param key;
        int64_t value;
        const char * name;
    };
    for (const auto & c :
         {i64_case{FRUGAL_PARAM_TOP_K, -1, "top_k"}, i64_case{FRUGAL_PARAM_TOP_K, int64_t(1) << 40, "top_k"},
          i64_case{FRUGAL_PARAM_REPEAT_LAST_N, -2, "repeat_last_n"}, i64_case{FRUGAL_PARAM_N_THREADS, 0, "n_threads"},
          i64_case{FRUGAL_PARAM_N_THREADS, -3, "n_threads"}}) {
        CAPTURE(c.name);
        CAPTURE(c.value);
        err_box err;
        CHECK(frugal_session_set_param_i64(sp, c.key, c.value, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(err.message(), c.name), err.message());
        CHECK_MESSAGE(contains(err.message(), std::to_string(c.value)), err.message());
    }
    // Unknown keys, and keys of the other type.
    for (const frugal_param key : {0, 9, 999, -1}) {
        CAPTURE(key);
        err_box err;
        CHECK(frugal_session_set_param_f32(sp, key, 0.5f, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(err.message(), std::to_string(key)));
        CHECK(frugal_session_set_param_i64(sp, key, 1, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(err.message(), std::to_string(key)));
    }
    for (const frugal_param key :
         {FRUGAL_PARAM_TEMPERATURE, FRUGAL_PARAM_TOP_P, FRUGAL_PARAM_MIN_P, FRUGAL_PARAM_REPEAT_PENALTY}) {
        CAPTURE(key);
        CHECK(frugal_session_set_param_i64(sp, key, 0, nullptr) == FRUGAL_ERR_INVALID_ARGUMENT);
    }
    for (const frugal_param key :
         {FRUGAL_PARAM_TOP_K, FRUGAL_PARAM_SEED, FRUGAL_PARAM_REPEAT_LAST_N, FRUGAL_PARAM_N_THREADS}) {
        CAPTURE(key);
        CHECK(frugal_session_set_param_f32(sp, key, 1.0f, nullptr) == FRUGAL_ERR_INVALID_ARGUMENT);
    }
    // Values at the edges of their ranges are accepted.
    CHECK(frugal_session_set_param_f32(sp, FRUGAL_PARAM_TOP_P, 1.0f, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_f32(sp, FRUGAL_PARAM_MIN_P, 0.0f, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_f32(sp, FRUGAL_PARAM_MIN_P, 1.0f, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_f32(sp, FRUGAL_PARAM_REPEAT_PENALTY, 1.0f, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_i64(sp, FRUGAL_PARAM_TOP_K, 0, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_i64(sp, FRUGAL_PARAM_REPEAT_LAST_N, 0, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_i64(sp, FRUGAL_PARAM_N_THREADS, 1, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_i64(sp, FRUGAL_PARAM_SEED, -1, nullptr) == FRUGAL_OK);
    CHECK(frugal_session_set_param_f32(sp, FRUGAL_PARAM_TEMPERATURE, -1.0f, nullptr) == FRUGAL_OK); // <= 0: greedy
    // None of the rejected values took effect: still greedy and the reference.
    REQUIRE(frugal_session_prompt_tokens(sp, prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    CHECK(generate(sp, 32).ids == std::vector<int32_t>(want.begin(), want.begin() + 32));
}

TEST_CASE("capi: stories260K seeds, reset and sampled text" * doctest::timeout(60)) {
    REQUIRE_STORIES(st);
    const auto prompt = ids_of(st->ref["greedy_from_bos"]["prompt_ids"]);
    auto model = load(st->path);
    auto sampled = [&](frugal_session * s, int64_t seed) {
        REQUIRE(frugal_session_set_param_f32(s, FRUGAL_PARAM_TEMPERATURE, 0.8f, nullptr) == FRUGAL_OK);
        REQUIRE(frugal_session_set_param_i64(s, FRUGAL_PARAM_SEED, seed, nullptr) == FRUGAL_OK);
        REQUIRE(frugal_session_prompt_tokens(s, prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
        return generate(s, 96);
    };
    auto a = make_session(model.get(), 0);
    const auto first = sampled(a.get(), 1234);
    CHECK(first.last >= 0);
    CHECK(first.ids.size() > 8);
    // The same seed in another session: the same text.
    auto b = make_session(model.get(), 0);
    const auto same = sampled(b.get(), 1234);
    CHECK(same.ids == first.ids);
    CHECK(same.text == first.text);
    // Another seed: (almost surely) another text.
    auto c = make_session(model.get(), 0);
    const auto other = sampled(c.get(), 4321);
    CHECK(other.ids != first.ids);
    // reset rewinds the conversation and the random stream.
    REQUIRE(frugal_session_reset(a.get(), nullptr) == FRUGAL_OK);
    CHECK(frugal_session_n_past(a.get()) == 0);
    CHECK(frugal_session_logits(a.get(), nullptr) == nullptr);
    REQUIRE(frugal_session_prompt_tokens(a.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    const auto again = generate(a.get(), 96);
    CHECK(again.ids == first.ids);
    CHECK(again.text == first.text);
    // Greedy after a reset reproduces the reference.
    const auto want = ids_of(st->ref["greedy_from_bos"]["generated_ids"]);
    REQUIRE(frugal_session_reset(a.get(), nullptr) == FRUGAL_OK);
    set_greedy(a.get());
    REQUIRE(frugal_session_prompt_tokens(a.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    CHECK(generate(a.get(), want.size()).ids == want);
}

TEST_CASE("capi: stories260K model freed before its session" * doctest::timeout(30)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto prompt = ids_of(g["prompt_ids"]);
    const auto want = ids_of(g["generated_ids"]);
    auto model = load(st->path);
    auto s1 = make_session(model.get(), 0);
    auto s2 = make_session(model.get(), 64);
    model.reset(); // frugal_model_free: the sessions keep the weights alive
    for (frugal_session * s : {s1.get(), s2.get()}) {
        set_greedy(s);
        REQUIRE(frugal_session_prompt_tokens(s, prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
        CHECK(generate(s, 48).ids == std::vector<int32_t>(want.begin(), want.begin() + 48));
    }
    s1.reset();
    REQUIRE(frugal_session_reset(s2.get(), nullptr) == FRUGAL_OK);
    REQUIRE(frugal_session_prompt_tokens(s2.get(), prompt.data(), prompt.size(), nullptr) == FRUGAL_OK);
    CHECK(generate(s2.get(), 8).ids == std::vector<int32_t>(want.begin(), want.begin() + 8));
}

TEST_CASE("capi: stories260K cancel from another thread" * doctest::timeout(120)) {
    REQUIRE_STORIES(st);
    const auto & g = st->ref["greedy_from_bos"];
    const auto bos = ids_of(g["prompt_ids"]);
    const auto want = ids_of(g["generated_ids"]);
    auto model = load(st->path);
    auto session = make_session(model.get(), 0);
    frugal_session * s = session.get();
    set_greedy(s);
    // One thread: on a loaded machine spinning worker threads would only slow the rounds down.
    REQUIRE(frugal_session_set_param_i64(s, FRUGAL_PARAM_N_THREADS, 1, nullptr) == FRUGAL_OK);
    // A long prompt: BOS + the 256 reference tokens + their first 200 again.
    std::vector<int32_t> long_prompt = bos;
    long_prompt.insert(long_prompt.end(), want.begin(), want.end());
    long_prompt.insert(long_prompt.end(), want.begin(), want.begin() + 200);
    REQUIRE(long_prompt.size() < size_t(frugal_session_n_ctx(s)) - 16);

    // Idle cancel is a no-op: the next call runs.
    frugal_session_cancel(s);
    REQUIRE(frugal_session_prompt_tokens(s, bos.data(), bos.size(), nullptr) == FRUGAL_OK);
    REQUIRE(frugal_session_reset(s, nullptr) == FRUGAL_OK);

    // The canceller fires at irregular intervals (0-1.5 ms), so some calls finish and some do not.
    std::atomic<bool> stop{false};
    std::atomic<long> n_cancel_calls{0};
    std::thread canceller([&] {
        std::mt19937 rng(7);
        while (!stop.load()) {
            frugal_session_cancel(s);
            n_cancel_calls.fetch_add(1);
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 1500));
        }
    });
    int n_ok = 0, n_cancelled = 0;
    std::vector<std::string> bad;
    // Every call returns OK or CANCELLED; a cancelled call changes nothing, so retrying it until
    // it completes still yields exactly the reference greedy tokens.
    auto call = [&](const char * what, auto && fn) {
        for (int attempt = 0; attempt < 10000; ++attempt) {
            const int32_t before = frugal_session_n_past(s);
            err_box err;
            const frugal_status r = fn(err.out());
            if (r == FRUGAL_OK) {
                ++n_ok;
                return true;
            }
            if (r != FRUGAL_ERR_CANCELLED) {
                bad.push_back(std::string(what) + ": status " + std::to_string(r) + " " + err.message());
                return false;
            }
            ++n_cancelled;
            if (frugal_session_n_past(s) != before) bad.push_back(std::string(what) + ": cancelled but n_past moved");
            if (err.message().empty()) bad.push_back(std::string(what) + ": cancelled without a message");
        }
        bad.push_back(std::string(what) + ": never completed");
        return false;
    };
    constexpr size_t k_tokens = 16;
    for (int round = 0; round < 8 && bad.empty(); ++round) {
        REQUIRE(frugal_session_reset(s, nullptr) == FRUGAL_OK);
        {
            // Long enough to be cancelled mid-way most of the time; either outcome is fine.
            err_box err;
            const frugal_status r = frugal_session_prompt_tokens(s, long_prompt.data(), long_prompt.size(), err.out());
            (r == FRUGAL_OK ? n_ok : n_cancelled)++;
            if (r != FRUGAL_OK && r != FRUGAL_ERR_CANCELLED)
                bad.push_back("long prompt: status " + std::to_string(r) + " " + err.message());
            if (r == FRUGAL_ERR_CANCELLED && frugal_session_n_past(s) != 0)
                bad.push_back("long prompt: cancelled but n_past moved");
        }
        REQUIRE(frugal_session_reset(s, nullptr) == FRUGAL_OK);
        if (!call("prompt",
                  [&](frugal_error ** e) { return frugal_session_prompt_tokens(s, bos.data(), bos.size(), e); }))
            break;
        std::vector<int32_t> ids;
        while (ids.size() < k_tokens) {
            int32_t tok = -1;
            char buf[64];
            size_t len = 0;
            if (!call("next",
                      [&](frugal_error ** e) { return frugal_session_next(s, &tok, buf, sizeof buf, &len, e); }))
                break;
            ids.push_back(tok);
        }
        if (ids != std::vector<int32_t>(want.begin(), want.begin() + k_tokens))
            bad.push_back("round " + std::to_string(round) + ": tokens differ from the reference");
    }
    stop = true;
    canceller.join();
    MESSAGE(n_ok << " calls completed, " << n_cancelled << " cancelled, " << n_cancel_calls.load() << " cancel calls");
    for (const auto & b : bad) MESSAGE(b);
    CHECK(bad.empty());
    CHECK(n_cancelled > 0);
    CHECK(n_ok > 0);
    // Afterwards the session is intact: the reference greedy continuation after a reset.
    REQUIRE(frugal_session_reset(s, nullptr) == FRUGAL_OK);
    REQUIRE(frugal_session_prompt_tokens(s, bos.data(), bos.size(), nullptr) == FRUGAL_OK);
    const auto got = generate(s, want.size());
    CAPTURE(got.message);
    CHECK(got.ids == want);
    CHECK(got.text == g["text"].get<std::string>());
}

TEST_CASE("capi: a KV cache larger than the machine's memory is a clear error" * doctest::timeout(60)) {
    // 4 layers x 8 kv heads x 64 dims: 16 KiB of K and V per position, so 2^24 positions need
    // 256 GiB. The model itself is 17 MiB.
    frugal::test::gguf::tiny_llama_params p;
    p.n_embd = 512;
    p.n_layer = 4;
    p.n_head = 8;
    p.n_head_kv = 8;
    p.n_ctx = 1 << 24;
    const auto path = frugal::test::scratch_dir("capi") / ("wide.gguf." + std::to_string(::getpid()));
    frugal::test::gguf::write_file(path, frugal::test::gguf::tiny_llama(p).build());
    auto model = load(path.string());
    std::filesystem::remove(path);
    frugal_session * s = reinterpret_cast<frugal_session *>(&p); // must stay untouched
    err_box err;
    CHECK(frugal_session_create(model.get(), 1 << 24, &s, err.out()) == FRUGAL_ERR_OUT_OF_MEMORY);
    CHECK(s == reinterpret_cast<frugal_session *>(&p));
    CHECK(contains(err.message(), "16777216"));
    CHECK(contains(err.message(), "GiB"));
    // The library stays usable: a session of a sane size works on the same model.
    auto ok = make_session(model.get(), 256);
    CHECK(frugal_session_kv_type(ok.get()) == FRUGAL_KV_F16);
    CHECK(frugal_session_kv_bytes(ok.get()) == uint64_t(4) * 2 * 256 * 512 * 2); // F16
    CHECK(frugal_model_kv_bytes_per_token(model.get()) == uint64_t(4) * 2 * 512 * 2);
    CHECK(frugal_model_n_experts(model.get()) == 0);
}

TEST_CASE("capi: a deepseek2 model reports its experts and its latent KV cache" * doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    const auto path = frugal::test::parity_fixture("tiny-deepseek2-q8_0.gguf");
    auto model = load(path.string());
    CHECK(std::string(frugal_model_architecture(model.get())) == "deepseek2");
    CHECK(frugal_model_n_experts(model.get()) == 8);
    CHECK(frugal_model_n_experts_used(model.get()) == 2);
    // kv_lora_rank 64 + rope 32 F16 values per layer, 3 layers (make_models.py's tiny-deepseek2).
    CHECK(frugal_model_kv_bytes_per_token(model.get()) == uint64_t(64 + 32) * 3 * 2);
    auto s = make_session(model.get(), 100);
    CHECK(frugal_session_kv_bytes(s.get()) == 100 * frugal_model_kv_bytes_per_token(model.get()));
    const int32_t prompt[] = {1925, 346, 5193, 264};
    err_box err;
    REQUIRE_MESSAGE(frugal_session_prompt_tokens(s.get(), prompt, 4, err.out()) == FRUGAL_OK, err.message());
    CHECK(frugal_session_n_past(s.get()) == 4);

    // experimental: both MLA forms give the same logits within float rounding (F32 weights; with
    // Q8_0 the forms round activations at different places)
    auto f32 = load(frugal::test::parity_fixture("tiny-deepseek2-f32.gguf").string());
    auto s32 = make_session(f32.get(), 100);
    std::vector<std::vector<float>> logits;
    for (const int32_t form : {FRUGALX_MLA_STRAIGHTFORWARD, FRUGALX_MLA_ABSORBED}) {
        REQUIRE(frugal_session_reset(s32.get(), nullptr) == FRUGAL_OK);
        REQUIRE(frugalx_session_set_mla_form(s32.get(), form, err.out()) == FRUGAL_OK);
        logits.push_back(prompt_logits(s32.get(), prompt, 4));
    }
    CHECK(max_abs_diff(logits[0], logits[1]) < 1e-4f);
    CHECK(frugalx_session_set_mla_form(s.get(), 3, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(err.message(), "form 3"));

    // experimental: BF16 MLA attention (straightforward form) against F32: the same logits up to
    // BF16 rounding (where the CPU has AVX-512 BF16; deepseek2_test checks that it runs there)
    std::vector<std::vector<float>> by_arithmetic;
    for (const int32_t arithmetic : {FRUGALX_MLA_ATTENTION_AUTO, FRUGALX_MLA_ATTENTION_F32, FRUGALX_MLA_ATTENTION_BF16}) {
        REQUIRE(frugal_session_reset(s32.get(), nullptr) == FRUGAL_OK);
        REQUIRE(frugalx_session_set_mla_form(s32.get(), FRUGALX_MLA_STRAIGHTFORWARD, err.out()) == FRUGAL_OK);
        REQUIRE(frugalx_session_set_mla_attention(s32.get(), arithmetic, err.out()) == FRUGAL_OK);
        by_arithmetic.push_back(prompt_logits(s32.get(), prompt, 4));
    }
    CHECK(by_arithmetic[0] == by_arithmetic[1]); // AUTO is F32
    const float d = max_abs_diff(by_arithmetic[1], by_arithmetic[2]);
    MESSAGE("BF16 against F32 MLA attention: max |logit diff| ", d);
    CHECK(d <= 2e-2f);
    CHECK(frugalx_session_set_mla_attention(s.get(), 7, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(err.message(), "arithmetic 7"));
}

TEST_CASE("capi: experimental prefill GEMMs change a Q4_0 prompt's logits by rounding noise only" *
          doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    auto model = load(frugal::test::parity_fixture("tiny-qwen2-q4_0.gguf").string());
    auto s = make_session(model.get(), 64);
    err_box err;
    std::vector<int32_t> prompt(40); // above the row kernels' small-batch limit: the GEMM path
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(3 + 7 * i);
    const auto logits_with = [&](int32_t gemm) {
        REQUIRE(frugal_session_reset(s.get(), nullptr) == FRUGAL_OK);
        REQUIRE(frugalx_session_set_prefill_gemm(s.get(), gemm, err.out()) == FRUGAL_OK);
        return prompt_logits(s.get(), prompt.data(), int32_t(prompt.size()));
    };
    const auto exact = logits_with(FRUGALX_PREFILL_F32);
    const auto [lo, hi] = std::minmax_element(exact.begin(), exact.end());
    const float spread = *hi - *lo;
    for (const int32_t gemm : {FRUGALX_PREFILL_BF16, FRUGALX_PREFILL_INT8}) {
        const float diff = max_abs_diff(exact, logits_with(gemm));
        MESSAGE("prefill gemm ", gemm, " vs f32: max |logit diff| ", diff, ", logit spread ", spread);
        CHECK(diff > 0);              // the switch took effect
        CHECK(diff < 0.05f * spread); // and only rounding noise separates the two
    }
    // Q8 takes F32's products (integer block sums on AVX-512 VNNI and AVX2, F32 itself
    // elsewhere): only the summation order may differ.
    const auto q8 = logits_with(FRUGALX_PREFILL_Q8);
    MESSAGE("prefill gemm q8 vs f32: max |logit diff| ", max_abs_diff(exact, q8));
    CHECK(max_abs_diff(exact, q8) < 1e-3f * spread);
    // AUTO is the path this CPU runs best (or what FRUGAL_PREFILL_GEMM names).
    const auto automatic = logits_with(FRUGALX_PREFILL_AUTO);
    float auto_diff = max_abs_diff(exact, automatic);
    for (const int32_t gemm : {FRUGALX_PREFILL_BF16, FRUGALX_PREFILL_INT8, FRUGALX_PREFILL_Q8})
        auto_diff = std::min(auto_diff, max_abs_diff(logits_with(gemm), automatic));
    CHECK(auto_diff == 0);
    for (const int32_t bad : {-1, 5}) {
        CHECK(frugalx_session_set_prefill_gemm(s.get(), bad, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
        CHECK(contains(err.message(), "gemm " + std::to_string(bad)));
    }
    CHECK(frugalx_session_set_prefill_gemm(nullptr, 0, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
}

TEST_CASE("capi: repack_weights = 0 loads Q4_0 weights in place, 2 repacked, with the same prompt logits" *
          doctest::timeout(60)) {
    FRUGAL_REQUIRE_PARITY_FIXTURES();
    // The prefill GEMM multiplies the same dequantized values either way; only the output layer,
    // run for the last token alone by the row kernels, sums the same integer block products in
    // another float order. (That repacking happens is checked in tests/models/parity_test.cpp.)
    std::vector<std::vector<float>> logits;
    for (const int32_t repack : {2, 0}) {
        frugal_model_options o;
        FRUGAL_MODEL_OPTIONS_INIT(&o);
        o.repack_weights = repack;
        frugal_model * m = nullptr;
        err_box err;
        REQUIRE(frugal_model_load(frugal::test::parity_fixture("tiny-qwen2-q4_0.gguf").string().c_str(), &o, &m,
                                  err.out()) == FRUGAL_OK);
        model_ptr model(m, frugal_model_free);
        auto s = make_session(model.get(), 64);
        std::vector<int32_t> prompt(40);
        for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(5 + 11 * i);
        logits.push_back(prompt_logits(s.get(), prompt.data(), int32_t(prompt.size())));
    }
    const float diff = max_abs_diff(logits[0], logits[1]);
    MESSAGE("repacked vs in place: max |logit diff| ", diff);
    CHECK(diff <= 1e-4f);
}

TEST_CASE("capi: experimental MLA form is refused for a model that is not deepseek2" * doctest::timeout(30)) {
    auto model = load(tiny_model_path());
    auto s = make_session(model.get(), 16);
    err_box err;
    CHECK(frugalx_session_set_mla_form(s.get(), FRUGALX_MLA_ABSORBED, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(err.message(), "not deepseek2"));
    CHECK(frugalx_session_set_mla_form(nullptr, FRUGALX_MLA_AUTO, err.out()) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(frugalx_session_set_mla_attention(s.get(), FRUGALX_MLA_ATTENTION_BF16, err.out()) ==
          FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(err.message(), "not deepseek2"));
}
