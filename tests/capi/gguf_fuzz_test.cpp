// Adversarial GGUF files through the C ABI: every malformed file must give a negative status with
// the right code, an error message naming the problem, `*out` untouched and no leak, and the
// library must keep working afterwards. Files come from tests/common/gguf_builder.hpp (a valid
// tiny llama model, then broken on purpose), so the cases reach the loader, tokenizer and model
// code, not only the header. Every case runs with use_mmap 1 and 0. Two seeded campaigns end the
// file: byte-level mutations (bit flips, extreme u32/u64 fields, truncation) and structure-aware
// ones (extreme key values of any type, other tensor types and shapes); every outcome must be a
// loaded-and-working model or a clean error. FRUGAL_FUZZ_ITERATIONS=N FRUGAL_FUZZ_SEED=S run a
// longer campaign by hand (e.g. under the asan preset).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/gguf_builder.hpp"
#include "common/test_support.hpp"
#include "frugal.h"

namespace g = frugal::test::gguf;

namespace {

constexpr uint64_t k_2p63 = uint64_t(1) << 63;

// Never dereferenced: only compared, to prove a failed load leaves *out alone.
frugal_model * const k_sentinel = reinterpret_cast<frugal_model *>(uintptr_t(0x5a5a5a50));

std::filesystem::path case_path(const std::string & tag) {
    return frugal::test::scratch_dir("gguf_fuzz") / (tag + "-" + std::to_string(::getpid()) + ".gguf");
}

// A file the loader opens by path, kept in memory (memfd, opened as /proc/self/fd/N) so that the
// thousands of files the loops below make cost no disk I/O; a scratch file where memfd is missing.
class test_file {
public:
    explicit test_file(const std::string & tag, const std::vector<uint8_t> & bytes = {}) {
        fd_ = ::memfd_create(("frugal-" + tag).c_str(), MFD_CLOEXEC);
        if (fd_ >= 0 && ::access(("/proc/self/fd/" + std::to_string(fd_)).c_str(), R_OK) == 0) {
            path_ = "/proc/self/fd/" + std::to_string(fd_);
        } else {
            if (fd_ >= 0) ::close(fd_);
            path_ = case_path(tag);
            fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            unlink_ = true;
        }
        REQUIRE_MESSAGE(fd_ >= 0, "cannot create a test file for " << tag);
        assign(bytes);
    }
    ~test_file() {
        ::close(fd_);
        if (unlink_) ::unlink(path_.c_str());
    }
    test_file(const test_file &) = delete;
    test_file & operator=(const test_file &) = delete;

    const std::filesystem::path & path() const { return path_; }
    void assign(const std::vector<uint8_t> & bytes) {
        REQUIRE(::ftruncate(fd_, 0) == 0);
        size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, off_t(done));
            REQUIRE(n > 0);
            done += size_t(n);
        }
    }
    // Cuts the file to its first n bytes (grow = zero fill).
    void truncate(size_t n) { REQUIRE(::ftruncate(fd_, off_t(n)) == 0); }

private:
    int fd_ = -1;
    bool unlink_ = false;
    std::filesystem::path path_;
};

struct outcome {
    frugal_status status = FRUGAL_OK;
    frugal_status err_code = FRUGAL_OK;
    std::string message;
    bool err_set = false;
    bool out_untouched = true;
};

frugal_model_options options(int32_t use_mmap) {
    frugal_model_options o;
    FRUGAL_MODEL_OPTIONS_INIT(&o);
    o.n_threads = 1;
    o.use_mmap = use_mmap;
    return o;
}

// Tokenizes and detokenizes a short text, then runs a session for one token: a model that loaded
// must also work without crashing. Any status is acceptable (a mutated vocabulary may not cover
// the text, mutated weights may give NaN logits), but errors carry a message.
std::string exercise(frugal_model * m) {
    frugal_session * s = nullptr;
    frugal_error * err = nullptr;
    std::string problem;
    {
        const std::string text = "the hat, ab \xE2\x98\x83 <s>";
        int32_t ids[64];
        size_t n = 0;
        frugal_status st = frugal_tokenize(m, text.data(), text.size(), 1, 1, ids, 64, &n, &err);
        if (st == FRUGAL_OK) {
            char buf[256];
            size_t len = 0;
            st = frugal_detokenize(m, ids, n, 1, buf, sizeof buf, &len, &err);
        }
        if (st < 0 && st != FRUGAL_ERR_BUFFER_TOO_SMALL && !*frugal_error_message(err))
            problem = "tokenizer call failed without a message";
        frugal_error_free(err);
        err = nullptr;
    }
    if (frugal_session_create(m, 8, &s, &err) != FRUGAL_OK) {
        if (!*frugal_error_message(err)) problem = "session_create failed without a message";
        frugal_error_free(err);
        return problem;
    }
    const int32_t bos = frugal_model_token_bos(m) >= 0 ? frugal_model_token_bos(m) : 0;
    frugal_status st = frugal_session_prompt_tokens(s, &bos, 1, &err);
    if (st == FRUGAL_OK) {
        char buf[64];
        size_t len = 0;
        int32_t tok = -1;
        st = frugal_session_next(s, &tok, buf, sizeof buf, &len, &err);
        if (st == FRUGAL_OK && (tok < 0 || tok >= frugal_model_n_vocab(m))) problem = "next returned a bad token id";
    }
    if (st < 0 && !*frugal_error_message(err)) problem = "session call failed without a message";
    frugal_error_free(err);
    frugal_session_free(s);
    return problem;
}

// Loads `path`; a model that loads is exercised and freed.
outcome load_path(const std::filesystem::path & path, const frugal_model_options * opts,
                  std::string * problem = nullptr) {
    outcome r;
    frugal_model * m = k_sentinel;
    frugal_error * err = nullptr;
    r.status = frugal_model_load(path.c_str(), opts, &m, &err);
    r.err_set = err != nullptr;
    r.err_code = frugal_error_code(err);
    r.message = frugal_error_message(err);
    frugal_error_free(err);
    if (r.status == FRUGAL_OK) {
        r.out_untouched = m == k_sentinel;
        if (m && m != k_sentinel) {
            const std::string p = exercise(m);
            if (problem) *problem = p;
            frugal_model_free(m);
        }
    } else {
        r.out_untouched = m == k_sentinel;
    }
    return r;
}

// Outcome counts of a mutation campaign. A mutant must either load (and then run cleanly) or be
// rejected as an invalid or unsupported model with a message and an untouched out-param.
struct mutation_tally {
    int n_ok = 0, n_rejected = 0;
    std::vector<std::string> failures;

    void check(const test_file & file, int iteration, const std::string & what) {
        for (const int32_t mm : {1, 0}) {
            const auto o = options(mm);
            std::string problem;
            const auto r = load_path(file.path(), &o, &problem);
            const bool clean =
                r.status == FRUGAL_OK
                    ? !r.err_set && problem.empty()
                    : (r.status == FRUGAL_ERR_INVALID_MODEL || r.status == FRUGAL_ERR_UNSUPPORTED_MODEL) &&
                          r.err_code == r.status && !r.message.empty() && r.out_untouched;
            (r.status == FRUGAL_OK ? n_ok : n_rejected)++;
            if (!clean) {
                std::ostringstream s;
                s << "iteration " << iteration << " use_mmap " << mm << ":" << what << " -> status " << r.status
                  << " '" << r.message << "' " << problem;
                failures.push_back(s.str());
            }
        }
    }
};

using frugal::test::contains;

// The file must be rejected with `want` and a message containing every word, for both mmap modes.
void expect_rejected(const std::string & tag, const std::vector<uint8_t> & bytes, frugal_status want,
                     const std::vector<std::string> & words) {
    const test_file file(tag, bytes);
    for (const int32_t mm : {1, 0}) {
        CAPTURE(tag);
        CAPTURE(mm);
        const auto o = options(mm);
        const auto r = load_path(file.path(), &o);
        CAPTURE(r.message);
        CHECK(r.status == want);
        CHECK(r.err_set);
        CHECK(r.err_code == r.status);
        CHECK(r.out_untouched);
        CHECK_FALSE(r.message.empty());
        for (const auto & w : words) CHECK_MESSAGE(contains(r.message, w), "the message lacks '" << w << "'");
    }
}

void expect_loads(const std::string & tag, const std::vector<uint8_t> & bytes) {
    const test_file file(tag, bytes);
    for (const int32_t mm : {1, 0}) {
        CAPTURE(tag);
        CAPTURE(mm);
        const auto o = options(mm);
        std::string problem;
        const auto r = load_path(file.path(), &o, &problem);
        CAPTURE(r.message);
        CHECK(r.status == FRUGAL_OK);
        CHECK_FALSE(r.err_set);
        CHECK(problem.empty());
    }
}

std::vector<uint8_t> valid_bytes(g::layout * L = nullptr) { return g::tiny_llama().build(L); }

// A valid model with `edit` applied to its builder.
std::vector<uint8_t> edited(const std::function<void(g::builder &)> & edit) {
    auto b = g::tiny_llama();
    edit(b);
    return b.build();
}

// A valid model with `patch` applied to its bytes.
std::vector<uint8_t> patched(const std::function<void(std::vector<uint8_t> &, const g::layout &)> & patch) {
    g::layout L;
    auto bytes = valid_bytes(&L);
    patch(bytes, L);
    return bytes;
}

// Gives tensor `name` new extents and zero data of the matching size.
void reshape(g::builder & b, const std::string & name, std::vector<uint64_t> ne) {
    g::tensor & t = b.get_tensor(name);
    t.ne = std::move(ne);
    t.data.assign(size_t(g::tensor_nbytes(t.type, t.ne).value()), 0);
}

// The library still loads and runs a valid model (no state was corrupted by a failure).
void check_still_usable() { expect_loads("still-usable", valid_bytes()); }

size_t n_tiny_vocab() { return g::tiny_llama_tokens().size(); }

} // namespace

TEST_CASE("gguf builder: the tiny llama model loads and runs through the C ABI" * doctest::timeout(30)) {
    for (const uint32_t version : {3u, 2u}) {
        for (const bool tied : {false, true}) {
            CAPTURE(version);
            CAPTURE(tied);
            g::tiny_llama_params p;
            p.version = version;
            p.output_weight = !tied;
            const auto b = g::tiny_llama(p);
            const test_file file("tiny-v" + std::to_string(version), b.build());
            const auto & path = file.path();
            for (const int32_t mm : {1, 0}) {
                CAPTURE(mm);
                const auto o = options(mm);
                frugal_model * m = nullptr;
                frugal_error * err = nullptr;
                REQUIRE_MESSAGE(frugal_model_load(path.c_str(), &o, &m, &err) == FRUGAL_OK, frugal_error_message(err));
                CHECK(err == nullptr);
                CHECK(frugal_model_n_vocab(m) == int32_t(n_tiny_vocab()));
                CHECK(frugal_model_n_embd(m) == p.n_embd);
                CHECK(frugal_model_n_layers(m) == p.n_layer);
                CHECK(frugal_model_n_heads(m) == p.n_head);
                CHECK(frugal_model_n_heads_kv(m) == p.n_head_kv);
                CHECK(frugal_model_n_ctx_train(m) == p.n_ctx);
                CHECK(std::string(frugal_model_architecture(m)) == "llama");
                CHECK(std::string(frugal_model_name(m)) == "tiny-llama");
                CHECK(frugal_model_token_bos(m) == 1);
                CHECK(frugal_model_token_eos(m) == 2);
                CHECK(frugal_model_meta_count(m) == int32_t(b.kv.size()));
                uint64_t n_params = 0;
                for (const auto & t : b.tensors) {
                    uint64_t n = 1;
                    for (auto e : t.ne) n *= e;
                    n_params += n;
                }
                CHECK(frugal_model_n_params(m) == n_params);
                CHECK(frugal_model_size_bytes(m) == n_params * 4);
                // Every value type round-trips through the metadata API; arrays as display text,
                // element by element (they are read in place from the file).
                char buf[256];
                size_t len = 0;
                const std::string tokens = "string[" + std::to_string(n_tiny_vocab()) +
                                           "] [\"<unk>\", \"<s>\", \"</s>\", \"<0x00>\", \"<0x01>\", \"<0x02>\", "
                                           "\"<0x03>\", \"<0x04>\", ...]";
                const std::pair<const char *, std::string> want[] = {
                    {"test.u8", "200"},
                    {"test.i8", "-100"},
                    {"test.u16", "60000"},
                    {"test.i16", "-30000"},
                    {"test.u32", "4000000000"},
                    {"test.i32", "-2000000000"},
                    {"test.f32", "1.5"},
                    {"test.bool", "true"},
                    {"test.string", "hello"},
                    {"test.u64", "1099511627776"},
                    {"test.i64", "-1099511627776"},
                    {"test.f64", "-2.25"},
                    {"test.array.empty", "u8[0] []"},
                    {"test.array.nested", "array[2] [i32[2] [1, 2], array[1] [string[2] [\"x\", \"yz\"]]]"},
                    {"test.array.i16", "i16[3] [-3, 7, 300]"},
                    {"test.array.u64", "u64[2] [1099511627776, 5]"},
                    {"test.array.f64", "f64[2] [0.5, -1.25]"},
                    {"test.array.bool", "bool[2] [true, false]"},
                    {"tokenizer.ggml.tokens", tokens}};
                for (const auto & [key, text] : want) {
                    CAPTURE(key);
                    REQUIRE(frugal_model_meta_value(m, key, buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
                    CHECK(std::string(buf) == text);
                }
                // Tokenizer: pieces and byte fallback round-trip.
                const std::string text = "the hat \xE2\x98\x83!";
                int32_t ids[64];
                size_t n = 0;
                REQUIRE(frugal_tokenize(m, text.data(), text.size(), 0, 0, ids, 64, &n, nullptr) == FRUGAL_OK);
                REQUIRE(frugal_detokenize(m, ids, n, 0, buf, sizeof buf, &len, nullptr) == FRUGAL_OK);
                CHECK(std::string(buf, len) == text);
                CHECK(exercise(m).empty());
                frugal_model_free(m);
            }
        }
    }
}

TEST_CASE("gguf fuzz: missing, empty and non-GGUF files" * doctest::timeout(30)) {
    const auto missing = case_path("does-not-exist");
    std::filesystem::remove(missing);
    for (const int32_t mm : {1, 0}) {
        CAPTURE(mm);
        const auto o = options(mm);
        auto r = load_path(missing, &o);
        CHECK(r.status == FRUGAL_ERR_IO);
        CHECK(r.err_code == FRUGAL_ERR_IO);
        CHECK(r.out_untouched);
        CHECK_MESSAGE(contains(r.message, missing.string()), r.message);
        // A directory opens but is not a regular file.
        r = load_path(frugal::test::scratch_dir("gguf_fuzz"), &o);
        CHECK(r.status == FRUGAL_ERR_IO);
        CHECK_MESSAGE(contains(r.message, "not a regular file"), r.message);
        CHECK(r.out_untouched);
    }
    expect_rejected("empty", {}, FRUGAL_ERR_INVALID_MODEL, {"empty"});
    expect_rejected("bad-magic", patched([](auto & b, auto &) { g::patch_u32(b, 0, 0x4c4d4747); }),
                    FRUGAL_ERR_INVALID_MODEL, {"magic", "0x4c4d4747"});
    expect_rejected("text-file", {'h', 'e', 'l', 'l', 'o', '\n'}, FRUGAL_ERR_INVALID_MODEL, {"magic"});
    for (const uint32_t v : {0u, 1u, 4u, 0xFFFFFFFFu}) {
        expect_rejected("version", patched([v](auto & b, auto &) { g::patch_u32(b, 4, v); }), FRUGAL_ERR_INVALID_MODEL,
                        {"version " + std::to_string(v)});
    }
    check_still_usable();
}

TEST_CASE("gguf fuzz: truncation at every byte of the header, metadata and tensor infos" * doctest::timeout(120)) {
    g::layout L;
    const auto full = valid_bytes(&L);
    REQUIRE(L.data_begin < full.size());
    // Every prefix up to the data section, and a few cuts inside the data (the last tensor ends
    // exactly at the end of the file, so every cut removes tensor bytes).
    std::vector<size_t> cuts;
    for (size_t n = 0; n < L.data_begin; ++n) cuts.push_back(n);
    for (size_t n :
         {L.data_begin, L.data_begin + 1, (L.data_begin + full.size()) / 2, full.size() - 4, full.size() - 1})
        cuts.push_back(n);
    // Longest first, so that each cut is one ftruncate of the same file.
    std::sort(cuts.rbegin(), cuts.rend());
    test_file file("truncated");
    std::vector<std::string> failures;
    for (const int32_t mm : {1, 0}) {
        const auto o = options(mm);
        file.assign(full);
        for (const size_t n : cuts) {
            file.truncate(n);
            const auto r = load_path(file.path(), &o);
            const bool names_it = contains(r.message, "truncated") || contains(r.message, "exceeds") ||
                                  contains(r.message, "past the end") || contains(r.message, "larger than the file") ||
                                  contains(r.message, "empty");
            if (r.status != FRUGAL_ERR_INVALID_MODEL || r.err_code != r.status || !r.out_untouched || !names_it) {
                std::ostringstream s;
                s << "use_mmap " << mm << ", " << n << " of " << full.size() << " bytes: status " << r.status
                  << ", message '" << r.message << "'";
                failures.push_back(s.str());
            }
        }
    }
    MESSAGE(cuts.size() << " prefixes x 2 mmap modes, data section at " << L.data_begin << " of " << full.size());
    for (size_t i = 0; i < failures.size() && i < 10; ++i) MESSAGE(failures[i]);
    CHECK(failures.empty());
    check_still_usable();
}

TEST_CASE("gguf fuzz: giant counts and lengths" * doctest::timeout(30)) {
    for (const uint64_t big : {k_2p63, ~uint64_t(0), uint64_t(1) << 40}) {
        const auto n = std::to_string(big);
        CAPTURE(n);
        expect_rejected("tensor-count", patched([&](auto & b, auto & L) { g::patch_u64(b, L.tensor_count_at, big); }),
                        FRUGAL_ERR_INVALID_MODEL, {"tensor count", n});
        expect_rejected("kv-count", patched([&](auto & b, auto & L) { g::patch_u64(b, L.kv_count_at, big); }),
                        FRUGAL_ERR_INVALID_MODEL, {"metadata count", n});
        expect_rejected("array-count",
                        edited([&](g::builder & b) { b.get("tokenizer.ggml.tokens").count_override = big; }),
                        FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.tokens", "array count", n});
        expect_rejected("string-length", edited([&](g::builder & b) { b.get("general.name").count_override = big; }),
                        FRUGAL_ERR_INVALID_MODEL, {"general.name", "length", n});
        expect_rejected("key-length",
                        patched([&](auto & b, auto & L) { g::patch_u64(b, L.key_at.at("general.name"), big); }),
                        FRUGAL_ERR_INVALID_MODEL, {"metadata key", n});
        expect_rejected("tensor-name-length",
                        edited([&](g::builder & b) { b.get_tensor("output_norm.weight").name_len_override = big; }),
                        FRUGAL_ERR_INVALID_MODEL, {"tensor name", n});
    }
    // One more tensor or key than the file holds: the parser runs into the next section.
    expect_rejected("tensor-count+1", edited([](g::builder & b) { b.tensor_count = b.tensors.size() + 1; }),
                    FRUGAL_ERR_INVALID_MODEL, {"gguf: ", "tensor"});
    // (What the misread bytes look like is the parser's business; it must be the parser that stops.)
    expect_rejected("kv-count+1", edited([](g::builder & b) { b.kv_count = b.kv.size() + 1; }),
                    FRUGAL_ERR_INVALID_MODEL, {"gguf: "});
    // A string length just past the end of the file.
    expect_rejected("string-past-end", patched([](auto & b, auto & L) {
                        const size_t at = L.key_at.at("general.name");
                        g::patch_u64(b, at, b.size() - at - 8 + 1);
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"truncated"});
    // Array count one larger than the items present.
    expect_rejected("array-count+1", edited([](g::builder & b) {
                        auto & v = b.get("tokenizer.ggml.scores");
                        v.count_override = v.items.size() + 1;
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"gguf: "});
    check_still_usable();
}

TEST_CASE("gguf fuzz: bad value types and values" * doctest::timeout(30)) {
    for (const uint32_t tag : {13u, 255u, 0xFFFFFFFFu}) {
        const auto t = std::to_string(tag);
        expect_rejected("value-type", edited([&](g::builder & b) { b.get("test.u32").tag_override = tag; }),
                        FRUGAL_ERR_INVALID_MODEL, {"test.u32", "value type " + t});
        expect_rejected("elem-type",
                        edited([&](g::builder & b) { b.get("tokenizer.ggml.scores").elem_tag_override = tag; }),
                        FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.scores", "value type " + t});
    }
    for (const uint8_t byte : {uint8_t(2), uint8_t(255)}) {
        expect_rejected("bool", edited([&](g::builder & b) { b.set("test.bool", g::raw_bool(byte)); }),
                        FRUGAL_ERR_INVALID_MODEL, {"test.bool", "bool value " + std::to_string(byte)});
    }
    expect_rejected("bool-in-array", edited([](g::builder & b) {
                        b.set("test.bools", g::arr(g::vtype::boolean, {g::boolean(true), g::raw_bool(2)}));
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"test.bools", "bool value 2"});
    // Arrays nest 4 deep at most (an array inside an array inside ...): 4 loads, 5 does not.
    auto nest = [](int depth) {
        g::value v = g::arr_i32({7});
        for (int d = 1; d < depth; ++d) v = g::arr(g::vtype::array, {v});
        return v;
    };
    expect_loads("nested-4", edited([&](g::builder & b) { b.set("test.deep", nest(4)); }));
    expect_rejected("nested-5", edited([&](g::builder & b) { b.set("test.deep", nest(5)); }), FRUGAL_ERR_INVALID_MODEL,
                    {"test.deep", "nested"});
    expect_rejected("nested-64", edited([&](g::builder & b) { b.set("test.deep", nest(64)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"test.deep", "nested"});

    // Keys of the wrong type.
    expect_rejected("int-as-string", edited([](g::builder & b) { b.set("llama.embedding_length", g::str("8")); }),
                    FRUGAL_ERR_INVALID_MODEL, {"llama.embedding_length", "string"});
    expect_rejected("int-as-float", edited([](g::builder & b) { b.set("llama.block_count", g::f32(1.0f)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"llama.block_count", "f32"});
    expect_rejected("string-as-int", edited([](g::builder & b) { b.set("general.architecture", g::u32(1)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"general.architecture", "u32"});
    expect_rejected("tokens-not-strings", edited([](g::builder & b) {
                        std::vector<int32_t> ids(n_tiny_vocab(), 1);
                        b.set("tokenizer.ggml.tokens", g::arr_i32(ids));
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.tokens", "i32"});
    expect_rejected("tokens-not-array", edited([](g::builder & b) { b.set("tokenizer.ggml.tokens", g::str("a")); }),
                    FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.tokens", "array"});
    expect_rejected("scores-not-numbers", edited([](g::builder & b) {
                        b.set("tokenizer.ggml.scores", g::arr_str(std::vector<std::string>(n_tiny_vocab(), "x")));
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.scores", "string"});
    expect_rejected("u64-too-big", edited([](g::builder & b) { b.set("llama.block_count", g::u64(~uint64_t(0))); }),
                    FRUGAL_ERR_INVALID_MODEL, {"llama.block_count", "18446744073709551615"});
    // Integer keys in any width are accepted (writers disagree on widths).
    expect_loads("int-widths", edited([](g::builder & b) {
                     b.set("llama.block_count", g::u8(1));
                     b.set("llama.embedding_length", g::i64(8));
                     b.set("llama.feed_forward_length", g::u16(16));
                     b.set("llama.attention.head_count", g::i32(2));
                 }));

    // Hyperparameters out of range.
    expect_rejected("embd-0", edited([](g::builder & b) { b.set("llama.embedding_length", g::u32(0)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"embedding_length", "0"});
    expect_rejected("layers-negative", edited([](g::builder & b) { b.set("llama.block_count", g::i32(-1)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"block_count", "-1"});
    expect_rejected("heads-3", edited([](g::builder & b) { b.set("llama.attention.head_count", g::u32(3)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"3 heads"});
    expect_rejected("kv-heads-above-heads",
                    edited([](g::builder & b) { b.set("llama.attention.head_count_kv", g::u32(4)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"head_count_kv", "4"});
    expect_rejected("rope-odd", edited([](g::builder & b) { b.set("llama.rope.dimension_count", g::u32(3)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"rope.dimension_count", "3"});
    for (const int32_t n_ctx : {0, -5}) {
        expect_rejected("ctx-" + std::to_string(n_ctx),
                        edited([&](g::builder & b) { b.set("llama.context_length", g::i32(n_ctx)); }),
                        FRUGAL_ERR_INVALID_MODEL, {"context_length", std::to_string(n_ctx)});
    }

    // Token ids and types.
    const auto nv = std::to_string(n_tiny_vocab());
    expect_rejected("bos-out-of-range", edited([](g::builder & b) {
                        b.set("tokenizer.ggml.bos_token_id", g::u32(uint32_t(n_tiny_vocab())));
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"bos_token_id", nv});
    expect_rejected("eos-negative", edited([](g::builder & b) { b.set("tokenizer.ggml.eos_token_id", g::i32(-1)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"eos_token_id", "-1"});
    expect_rejected("unk-huge",
                    edited([](g::builder & b) { b.set("tokenizer.ggml.unknown_token_id", g::u64(uint64_t(1) << 40)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"unknown_token_id", "1099511627776"});
    expect_rejected("token-type-7",
                    edited([](g::builder & b) { b.get("tokenizer.ggml.token_type").items[5] = g::i32(7); }),
                    FRUGAL_ERR_INVALID_MODEL, {"token_type[5]", "7"});
    expect_rejected("bad-byte-token",
                    edited([](g::builder & b) { b.get("tokenizer.ggml.tokens").items[3] = g::str("<0xZZ>"); }),
                    FRUGAL_ERR_INVALID_MODEL, {"<0xZZ>"});

    // Valid files frugal cannot run.
    expect_rejected("arch", edited([](g::builder & b) { b.set("general.architecture", g::str("gpt5")); }),
                    FRUGAL_ERR_UNSUPPORTED_MODEL, {"architecture", "gpt5"});
    expect_rejected("tokenizer-model", edited([](g::builder & b) { b.set("tokenizer.ggml.model", g::str("bert")); }),
                    FRUGAL_ERR_UNSUPPORTED_MODEL, {"tokenizer.ggml.model", "bert"});
    expect_rejected("rope-scaling", edited([](g::builder & b) { b.set("llama.rope.scaling.type", g::str("yarn")); }),
                    FRUGAL_ERR_UNSUPPORTED_MODEL, {"rope.scaling.type", "yarn"});
    check_still_usable();
}

TEST_CASE("gguf fuzz: missing and duplicate keys and tensors, inconsistent vocabulary" * doctest::timeout(30)) {
    for (const char * key :
         {"general.architecture", "llama.embedding_length", "llama.block_count", "llama.attention.head_count",
          "llama.feed_forward_length", "tokenizer.ggml.model", "tokenizer.ggml.tokens"}) {
        expect_rejected(std::string("missing-key-") + key, edited([&](g::builder & b) { REQUIRE(b.remove(key)); }),
                        FRUGAL_ERR_INVALID_MODEL, {key});
    }
    for (const char * name :
         {"token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight",
          "blk.0.attn_output.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"}) {
        expect_rejected(std::string("missing-tensor-") + name,
                        edited([&](g::builder & b) { REQUIRE(b.remove_tensor(name)); }), FRUGAL_ERR_INVALID_MODEL,
                        {"missing tensor", name});
    }
    expect_rejected("duplicate-key", edited([](g::builder & b) { b.add("general.name", g::str("again")); }),
                    FRUGAL_ERR_INVALID_MODEL, {"duplicate", "general.name"});
    expect_rejected("duplicate-tensor", edited([](g::builder & b) {
                        const g::tensor t = b.get_tensor("output_norm.weight");
                        b.tensors.push_back(t);
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"duplicate", "output_norm.weight"});

    const auto nv = n_tiny_vocab();
    expect_rejected("scores-longer",
                    edited([](g::builder & b) { b.get("tokenizer.ggml.scores").items.push_back(g::f32(0)); }),
                    FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.scores", std::to_string(nv + 1), std::to_string(nv)});
    expect_rejected("types-shorter",
                    edited([](g::builder & b) { b.get("tokenizer.ggml.token_type").items.pop_back(); }),
                    FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.token_type", std::to_string(nv - 1)});
    expect_rejected("tokens-empty", edited([](g::builder & b) { b.set("tokenizer.ggml.tokens", g::arr_str({})); }),
                    FRUGAL_ERR_INVALID_MODEL, {"tokenizer.ggml.tokens"});
    // One more token than token_embd.weight has rows.
    expect_rejected("vocab-vs-embedding", edited([](g::builder & b) {
                        b.get("tokenizer.ggml.tokens").items.push_back(g::str("zz"));
                        b.get("tokenizer.ggml.scores").items.push_back(g::f32(0));
                        b.get("tokenizer.ggml.token_type").items.push_back(g::i32(1));
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"token_embd.weight", std::to_string(nv), std::to_string(nv + 1)});
    check_still_usable();
}

TEST_CASE("gguf fuzz: tensor infos (offsets, ranks, extents, types, shapes)" * doctest::timeout(30)) {
    g::layout L0;
    valid_bytes(&L0);
    const auto & last = std::max_element(L0.tensors.begin(), L0.tensors.end(), [](auto & a, auto & b) {
                            return a.second.offset < b.second.offset;
                        })->first;
    // Offsets: past the end, misaligned, overlapping.
    for (const uint64_t off : {uint64_t(1) << 20, ~uint64_t(0) - 31, k_2p63}) {
        expect_rejected("offset-past-end",
                        patched([&](auto & b, auto & L) { g::patch_u64(b, L.tensors.at(last).offset_at, off); }),
                        FRUGAL_ERR_INVALID_MODEL, {last, std::to_string(off), "past the end"});
    }
    expect_rejected("offset-misaligned", patched([&](auto & b, auto & L) {
                        const auto & f = L.tensors.at("output_norm.weight");
                        g::patch_u64(b, f.offset_at, f.offset + 4);
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"output_norm.weight", "not aligned", "32"});
    expect_rejected("overlap", patched([&](auto & b, auto & L) {
                        g::patch_u64(b, L.tensors.at("blk.0.attn_k.weight").offset_at,
                                     L.tensors.at("blk.0.attn_q.weight").offset);
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"overlap", "blk.0.attn_k.weight", "blk.0.attn_q.weight"});

    // Ranks and extents.
    for (const uint32_t n_dims : {0u, 5u, 0xFFFFFFFFu}) {
        expect_rejected("n-dims", patched([&](auto & b, auto & L) {
                            g::patch_u32(b, L.tensors.at("output_norm.weight").n_dims_at, n_dims);
                        }),
                        FRUGAL_ERR_INVALID_MODEL, {"output_norm.weight", std::to_string(n_dims) + " dimensions"});
    }
    for (const uint64_t ne : {uint64_t(0), k_2p63, ~uint64_t(0)}) {
        expect_rejected("extent", patched([&](auto & b, auto & L) {
                            g::patch_u64(b, L.tensors.at("blk.0.ffn_up.weight").ne_at + 8, ne);
                        }),
                        FRUGAL_ERR_INVALID_MODEL, {"blk.0.ffn_up.weight", "dimension 1", std::to_string(ne)});
    }
    // Products of extents that overflow int64 (or whose byte size does), on a tensor no layer needs.
    const std::vector<std::vector<uint64_t>> huge = {{uint64_t(1) << 32, uint64_t(1) << 32},
                                                     {uint64_t(1) << 21, uint64_t(1) << 21, uint64_t(1) << 22},
                                                     {uint64_t(1) << 31, uint64_t(1) << 31},
                                                     {uint64_t(1) << 62},
                                                     {3, uint64_t(1) << 61}};
    for (const auto & ne : huge) {
        std::string tag = "huge-product";
        for (auto e : ne) tag.append("-").append(std::to_string(e));
        expect_rejected(tag, edited([&](g::builder & b) { b.add_tensor("extra.weight", ne, g::ggml::f32, {}); }),
                        FRUGAL_ERR_INVALID_MODEL, {"extra.weight"});
    }
    // A row that is not a whole number of blocks.
    expect_rejected("q8_0-row-33", edited([](g::builder & b) {
                        b.add_tensor("extra.weight", {33, 2}, g::ggml::q8_0, std::vector<uint8_t>(34 * 2));
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"extra.weight", "33", "q8_0", "32"});
    expect_rejected("q4_k-row-32", edited([](g::builder & b) {
                        b.add_tensor("extra.weight", {32}, g::ggml::q4_k, std::vector<uint8_t>(144));
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"extra.weight", "256"});

    // Types frugal does not know: fine on a tensor nobody reads, unsupported on a required one.
    expect_loads("unknown-type-unused",
                 edited([](g::builder & b) { b.add_tensor("extra.weight", {32}, 99, std::vector<uint8_t>(64)); }));
    for (const uint32_t type : {99u, 0xFFFFFFFFu}) {
        expect_rejected("unknown-type-required", patched([&](auto & b, auto & L) {
                            g::patch_u32(b, L.tensors.at("blk.0.attn_q.weight").type_at, type);
                        }),
                        FRUGAL_ERR_UNSUPPORTED_MODEL, {"blk.0.attn_q.weight", "type " + std::to_string(type)});
    }
    // A format ggml has and frugal does not read is named, with its id.
    expect_rejected("iq2_xxs-named", patched([&](auto & b, auto & L) {
                        g::patch_u32(b, L.tensors.at("blk.0.attn_q.weight").type_at, g::ggml::iq2_xxs);
                    }),
                    FRUGAL_ERR_UNSUPPORTED_MODEL, {"type 16 (IQ2_XXS)"});
    // A shard of a split model says so (gguf-split writes split.no and split.count as u16), and
    // a split "of 1" is an ordinary file.
    expect_rejected("split-shard", edited([](g::builder & b) {
                        b.set("split.no", g::u16(1));
                        b.set("split.count", g::u16(3));
                    }),
                    FRUGAL_ERR_UNSUPPORTED_MODEL, {"shard 2 of a model split into 3 files", "--merge"});
    expect_loads("split-of-1", edited([](g::builder & b) {
                     b.set("split.no", g::u16(0));
                     b.set("split.count", g::u16(1));
                 }));
    // A known type of a different size than the data written: f32 -> f16 halves it, still valid.
    expect_loads("f16-norm", edited([](g::builder & b) {
                     auto & t = b.get_tensor("output_norm.weight");
                     t.type = g::ggml::f16;
                     t.data.assign(t.data.size() / 2, 0);
                     for (size_t i = 1; i < t.data.size(); i += 2) t.data[i] = 0x3c; // 1.0 in binary16
                 }));

    // Shapes that do not fit the architecture.
    expect_rejected("shape-q", edited([](g::builder & b) {
                        reshape(b, "blk.0.attn_q.weight", {8, 4});
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"blk.0.attn_q.weight", "bad shape"});
    expect_rejected("shape-down", edited([](g::builder & b) {
                        reshape(b, "blk.0.ffn_down.weight", {8, 16});
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"blk.0.ffn_down.weight", "bad shape"});
    expect_rejected("shape-norm", edited([](g::builder & b) { reshape(b, "output_norm.weight", {9}); }),
                    FRUGAL_ERR_INVALID_MODEL, {"output_norm.weight", "bad shape"});
    expect_rejected("shape-norm-2d", edited([](g::builder & b) {
                        reshape(b, "blk.0.attn_norm.weight", {8, 1});
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"blk.0.attn_norm.weight", "bad shape"});
    expect_rejected("shape-embd-1d",
                    edited([](g::builder & b) { reshape(b, "token_embd.weight", {8 * n_tiny_vocab()}); }),
                    FRUGAL_ERR_INVALID_MODEL, {"token_embd.weight", "bad shape"});
    expect_rejected("shape-output", edited([](g::builder & b) {
                        reshape(b, "output.weight", {8, 7});
                    }),
                    FRUGAL_ERR_INVALID_MODEL, {"output.weight", "bad shape"});
    check_still_usable();
}

TEST_CASE("gguf fuzz: general.alignment" * doctest::timeout(30)) {
    for (const int64_t al : {int64_t(0), int64_t(7), int64_t(12), int64_t(-32), int64_t(1) << 40}) {
        expect_rejected("alignment", edited([&](g::builder & b) { b.set("general.alignment", g::i64(al)); }),
                        FRUGAL_ERR_INVALID_MODEL, {"general.alignment", std::to_string(al)});
    }
    expect_rejected("alignment-string", edited([](g::builder & b) { b.set("general.alignment", g::str("32")); }),
                    FRUGAL_ERR_INVALID_MODEL, {"general.alignment", "string"});
    // Valid alignments other than the default, with the data laid out for them.
    for (const uint32_t al : {8u, 64u, 4096u}) {
        CAPTURE(al);
        expect_loads("alignment-ok", edited([&](g::builder & b) {
                         b.alignment = al;
                         b.set("general.alignment", g::u32(al));
                     }));
        // The right key, but the data laid out for the default: misaligned or out of place.
        if (al > 32)
            expect_rejected("alignment-mismatch",
                            edited([&](g::builder & b) { b.set("general.alignment", g::u32(al)); }),
                            FRUGAL_ERR_INVALID_MODEL, {"not aligned to " + std::to_string(al)});
    }
    // No key: the default 32.
    expect_loads("alignment-default", edited([](g::builder & b) { b.remove("general.alignment"); }));
    check_still_usable();
}

namespace {
int32_t cancel_at_first(float, void * ud) {
    ++*static_cast<int *>(ud);
    return 1;
}
int32_t cancel_at_end(float f, void * ud) {
    ++*static_cast<int *>(ud);
    return f >= 1.0f ? 7 : 0;
}
struct progress_log {
    std::vector<float> fractions;
};
int32_t record_progress(float f, void * ud) {
    static_cast<progress_log *>(ud)->fractions.push_back(f);
    return 0;
}
} // namespace

TEST_CASE("gguf fuzz: load arguments and options" * doctest::timeout(30)) {
    const test_file file("options", valid_bytes());
    const auto & path = file.path();
    frugal_error * err = nullptr;
    frugal_model * m = k_sentinel;

    // NULL path and NULL out.
    CHECK(frugal_model_load(nullptr, nullptr, &m, &err) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(frugal_error_code(err) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(frugal_error_message(err), "path"));
    CHECK(m == k_sentinel);
    frugal_error_free(err);
    err = nullptr;
    CHECK(frugal_model_load(path.c_str(), nullptr, nullptr, &err) == FRUGAL_ERR_INVALID_ARGUMENT);
    CHECK(contains(frugal_error_message(err), "out"));
    frugal_error_free(err);
    err = nullptr;
    CHECK(frugal_model_load(nullptr, nullptr, nullptr, nullptr) == FRUGAL_ERR_INVALID_ARGUMENT);

    // NULL options = defaults; err stays NULL on success.
    REQUIRE(frugal_model_load(path.c_str(), nullptr, &m, &err) == FRUGAL_OK);
    CHECK(err == nullptr);
    CHECK(m != k_sentinel);
    frugal_model_free(m);

    for (const int32_t mm : {1, 0}) {
        CAPTURE(mm);
        // struct_size too small to hold the fields every version has.
        for (const uint32_t size : {0u, 4u, 8u, 15u}) {
            CAPTURE(size);
            auto o = options(mm);
            o.struct_size = size;
            const auto r = load_path(path, &o);
            CHECK(r.status == FRUGAL_ERR_INVALID_ARGUMENT);
            CHECK(r.out_untouched);
            CHECK_MESSAGE(contains(r.message, "struct_size " + std::to_string(size)), r.message);
        }
        // An older caller's struct without the progress fields is fine.
        {
            auto o = options(mm);
            o.struct_size = uint32_t(offsetof(frugal_model_options, progress));
            o.progress = cancel_at_first; // beyond struct_size: must be ignored
            CHECK(load_path(path, &o).status == FRUGAL_OK);
        }
        // A newer caller's larger struct: OK iff the fields we do not know are zero.
        struct newer {
            frugal_model_options base;
            uint64_t extra[3];
        } big{};
        big.base = options(mm);
        big.base.struct_size = uint32_t(sizeof big);
        CHECK(load_path(path, &big.base).status == FRUGAL_OK);
        big.extra[2] = 1;
        auto r = load_path(path, &big.base);
        CHECK(r.status == FRUGAL_ERR_STRUCT_SIZE);
        CHECK(r.out_untouched);
        CHECK_MESSAGE(contains(r.message, "struct_size " + std::to_string(sizeof big)), r.message);

        // Field values out of range: refused with the field (and the value) named.
        using field = int32_t frugal_model_options::*;
        const auto refused = [&](field f, int32_t value, const std::string & needle) {
            CAPTURE(needle);
            auto o = options(mm);
            o.*f = value;
            const auto res = load_path(path, &o);
            CHECK(res.status == FRUGAL_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE(contains(res.message, needle), res.message);
        };
        for (const int32_t n : {-1, 1025, INT32_MIN})
            refused(&frugal_model_options::n_threads, n, "n_threads " + std::to_string(n));
        for (const int32_t u : {2, -1}) refused(&frugal_model_options::use_mmap, u, "use_mmap " + std::to_string(u));
        for (const int32_t u : {3, -1}) refused(&frugal_model_options::repack_weights, u, "repack_weights " + std::to_string(u));
        refused(&frugal_model_options::reserved0, 1, "reserved0");
        refused(&frugal_model_options::reserved1, 1, "reserved1");

        // Progress: fractions rise to 1; a non-zero return cancels, whenever it comes.
        {
            progress_log log;
            auto o = options(mm);
            o.progress = record_progress;
            o.progress_user_data = &log;
            CHECK(load_path(path, &o).status == FRUGAL_OK);
            REQUIRE_FALSE(log.fractions.empty());
            CHECK(std::is_sorted(log.fractions.begin(), log.fractions.end()));
            CHECK(log.fractions.front() >= 0.0f);
            CHECK(log.fractions.back() == 1.0f);
        }
        for (const auto fn : {cancel_at_first, cancel_at_end}) {
            int calls = 0;
            auto o = options(mm);
            o.progress = fn;
            o.progress_user_data = &calls;
            r = load_path(path, &o);
            CHECK(r.status == FRUGAL_ERR_CANCELLED);
            CHECK(r.out_untouched);
            CHECK_MESSAGE(contains(r.message, "cancel"), r.message);
            CHECK(calls >= 1);
        }
    }
    check_still_usable();
}

TEST_CASE("gguf fuzz: 2000 seeded random mutations never crash" * doctest::timeout(120)) {
    g::layout L;
    const auto base = valid_bytes(&L);
    const uint64_t extremes[] = {0,
                                 1,
                                 7,
                                 31,
                                 32,
                                 33,
                                 255,
                                 0xFFFF,
                                 0x7FFFFFFF,
                                 0x80000000,
                                 0xFFFFFFFF,
                                 uint64_t(1) << 32,
                                 uint64_t(1) << 40,
                                 uint64_t(1) << 62,
                                 k_2p63 - 1,
                                 k_2p63,
                                 ~uint64_t(0),
                                 ~uint64_t(0) - 31};
    test_file file("mutated");
    // FRUGAL_FUZZ_ITERATIONS / FRUGAL_FUZZ_SEED run a longer or another campaign by hand.
    const char * env_n = std::getenv("FRUGAL_FUZZ_ITERATIONS");
    const char * env_seed = std::getenv("FRUGAL_FUZZ_SEED");
    const int k_iterations = env_n ? std::atoi(env_n) : 2000;
    const uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 0) : 0xF00D5EED;
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](size_t n) { return size_t(rng() % n); };
    mutation_tally tally;
    for (int it = 0; it < k_iterations; ++it) {
        auto bytes = base;
        std::ostringstream what;
        const int n_mut = 1 + int(pick(3));
        for (int k = 0; k < n_mut; ++k) {
            // Three in four mutations hit the header, metadata and tensor infos; the rest anywhere.
            const size_t limit = pick(4) ? L.data_begin : bytes.size();
            switch (pick(5)) {
            case 0: {
                const size_t at = pick(limit);
                const int bit = int(pick(8));
                bytes[at] ^= uint8_t(1u << bit);
                what << " flip " << at << ":" << bit;
                break;
            }
            case 1: {
                const size_t at = pick(limit);
                bytes[at] = uint8_t(rng());
                what << " byte " << at << "=" << int(bytes[at]);
                break;
            }
            case 2: {
                const size_t at = L.u64_fields[pick(L.u64_fields.size())];
                const uint64_t v = extremes[pick(std::size(extremes))];
                g::patch_u64(bytes, at, v);
                what << " u64 " << at << "=" << v;
                break;
            }
            case 3: {
                const size_t at = L.u32_fields[pick(L.u32_fields.size())];
                const auto v = uint32_t(extremes[pick(std::size(extremes))]);
                g::patch_u32(bytes, at, v);
                what << " u32 " << at << "=" << v;
                break;
            }
            default: {
                const size_t at = pick(limit - 8);
                const uint64_t v = extremes[pick(std::size(extremes))];
                g::patch_u64(bytes, at, v);
                what << " raw64 " << at << "=" << v;
                break;
            }
            }
        }
        // Some mutations also truncate.
        if (pick(10) == 0) {
            const size_t n = pick(bytes.size());
            bytes.resize(n);
            what << " truncate " << n;
        }
        file.assign(bytes);
        tally.check(file, it, what.str());
    }
    MESSAGE(k_iterations << " mutations (seed " << seed << ") x 2 mmap modes: " << tally.n_ok << " loaded, " << tally.n_rejected
                         << " rejected");
    for (size_t i = 0; i < tally.failures.size() && i < 10; ++i) MESSAGE(tally.failures[i]);
    CHECK(tally.failures.empty());
    CHECK(tally.n_rejected > 0);
    check_still_usable();
}

TEST_CASE("gguf fuzz: 300 structured mutations (key values, tensor types and shapes) never crash" *
          doctest::timeout(120)) {
    // n_embd 32 so that quantized types (blocks of 32) can be valid: mutated models then load
    // and run through dequantization and quantized matmuls, not only the parser.
    g::tiny_llama_params p;
    p.n_embd = 32;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 64;
    const auto base = g::tiny_llama(p);
    const char * keys[] = {"llama.context_length",
                           "llama.embedding_length",
                           "llama.block_count",
                           "llama.feed_forward_length",
                           "llama.attention.head_count",
                           "llama.attention.head_count_kv",
                           "llama.attention.key_length",
                           "llama.rope.dimension_count",
                           "llama.rope.freq_base",
                           "llama.attention.layer_norm_rms_epsilon",
                           "llama.rope.scaling.factor",
                           "tokenizer.ggml.bos_token_id",
                           "tokenizer.ggml.eos_token_id",
                           "tokenizer.ggml.eot_token_id",
                           "tokenizer.ggml.unknown_token_id",
                           "tokenizer.ggml.padding_token_id",
                           "tokenizer.ggml.add_bos_token",
                           "tokenizer.ggml.add_eos_token",
                           "tokenizer.ggml.add_space_prefix",
                           "general.alignment",
                           "general.architecture",
                           "tokenizer.ggml.model"};
    const double numbers[] = {0,
                              1,
                              -1,
                              2,
                              3,
                              4,
                              7,
                              8,
                              16,
                              32,
                              64,
                              277,
                              278,
                              1e-6,
                              0.5,
                              1e4,
                              2147483647.0,
                              4294967296.0,
                              -9.2e18,
                              1e30,
                              std::nan(""),
                              HUGE_VAL,
                              -HUGE_VAL};
    const uint32_t types[] = {g::ggml::f32,  g::ggml::f16,  g::ggml::bf16, g::ggml::q8_0,
                              g::ggml::q4_0, g::ggml::q4_k, g::ggml::q6_k, g::ggml::q4_1};
    const uint64_t extents[] = {1, 2, 4, 8, 16, 32, 64, 256, 278};
    const char * env_n = std::getenv("FRUGAL_FUZZ_ITERATIONS");
    const char * env_seed = std::getenv("FRUGAL_FUZZ_SEED");
    const int k_iterations = env_n ? std::max(1, std::atoi(env_n) * 3 / 20) : 300;
    const uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 0) : 0xBEEF;
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](size_t n) { return size_t(rng() % n); };
    auto random_bytes = [&](size_t n) {
        std::vector<uint8_t> v(n);
        for (auto & x : v) x = uint8_t(rng());
        return v;
    };
    // A value of a random type holding `x` (as far as that type can).
    auto random_value = [&](double x) -> g::value {
        const auto i = std::isfinite(x) ? int64_t(std::clamp(x, -9.2e18, 9.2e18)) : int64_t(-1);
        switch (pick(9)) {
        case 0: return g::u8(uint8_t(i));
        case 1: return g::i32(int32_t(i));
        case 2: return g::u32(uint32_t(i));
        case 3: return g::i64(i);
        case 4: return g::u64(uint64_t(i));
        case 5: return g::f32(float(x));
        case 6: return g::f64(x);
        case 7: return g::raw_bool(uint8_t(i & 3));
        default: return g::str(pick(2) ? "linear" : std::to_string(x));
        }
    };

    test_file file("structured");
    mutation_tally tally;
    for (int it = 0; it < k_iterations; ++it) {
        auto b = base;
        std::ostringstream what;
        if (pick(4) == 0) b.set("llama.rope.scaling.type", g::str("linear"));
        const int n_mut = 1 + int(pick(3));
        for (int k = 0; k < n_mut; ++k) {
            switch (pick(3)) {
            case 0: {
                const char * key = keys[pick(std::size(keys))];
                const double x = numbers[pick(std::size(numbers))];
                b.set(key, random_value(x));
                what << " " << key << "=" << x << "(" << uint32_t(b.get(key).type) << ")";
                break;
            }
            case 1: {
                auto & t = b.tensors[pick(b.tensors.size())];
                t.type = types[pick(std::size(types))];
                const auto n = g::tensor_nbytes(t.type, t.ne);
                if (n) t.data = random_bytes(size_t(*n));
                what << " " << t.name << " type " << t.type;
                break;
            }
            default: {
                auto & t = b.tensors[pick(b.tensors.size())];
                t.ne.assign(1 + pick(3), 1);
                for (auto & e : t.ne) e = extents[pick(std::size(extents))];
                const auto n = g::tensor_nbytes(t.type, t.ne);
                t.data.assign(n ? size_t(*n) : 64, 0);
                what << " " << t.name << " ne[0] " << t.ne[0] << " rank " << t.ne.size();
                break;
            }
            }
        }
        file.assign(b.build());
        tally.check(file, it, what.str());
    }
    MESSAGE(k_iterations << " structured mutations (seed " << seed << ") x 2 mmap modes: " << tally.n_ok << " loaded, "
                         << tally.n_rejected << " rejected");
    for (size_t i = 0; i < tally.failures.size() && i < 10; ++i) MESSAGE(tally.failures[i]);
    CHECK(tally.failures.empty());
    CHECK(tally.n_ok > 0);
    CHECK(tally.n_rejected > 0);
    check_still_usable();
}
