// test_support.hpp - helpers shared by the tests: locating ../shared, skipping cleanly, seeded data.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace frugal::test {

// The shared data/tools folder (FRUGAL_SHARED_DIR env var, else the configured default), or
// nullopt when it does not exist (a user's fresh clone).
inline std::optional<std::filesystem::path> shared_dir() {
    const char * env = std::getenv("FRUGAL_SHARED_DIR");
    std::filesystem::path p = env && *env ? env : FRUGAL_TEST_SHARED_DIR;
    std::error_code ec;
    if (!std::filesystem::is_directory(p / "data", ec)) return std::nullopt;
    return p;
}

// Path of a file under ../shared/data, or nullopt if absent.
inline std::optional<std::filesystem::path> shared_data(const std::string & rel) {
    auto dir = shared_dir();
    if (!dir) return std::nullopt;
    auto p = *dir / "data" / rel;
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) return std::nullopt;
    return p;
}

// The peer cache ../shared/tools/setup-peer.sh fills (FRUGAL_PEER_DIR, else ~/.cache/frugal-peer):
// llama.cpp's prebuilt libraries, and with --source its source tree under llama.cpp/source.
inline std::filesystem::path peer_dir() {
    const char * env = std::getenv("FRUGAL_PEER_DIR");
    const char * home = std::getenv("HOME");
    return env && *env ? env : std::string(home ? home : "") + "/.cache/frugal-peer";
}

// Whether `needle` occurs in `hay` (error messages in checks).
inline bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

// Quotes a path for /bin/sh.
inline std::string sh_quote(const std::filesystem::path & p) {
    std::string out = "'";
    for (const char c : p.string()) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

// Build-tree scratch folder for generated fixtures.
inline std::filesystem::path scratch_dir(const std::string & name) {
    auto p = std::filesystem::path(FRUGAL_TEST_BINARY_DIR) / "scratch" / name;
    std::filesystem::create_directories(p);
    return p;
}

// The llama.cpp parity fixtures (tests/models/make_parity_fixtures.sh; ctest fixture
// parity_models): seeded random-weight GGUF models with llama.cpp's logits. Absent when
// ../shared/tools or its llama.cpp peer is missing.
inline std::filesystem::path parity_fixture(const std::string & file) {
    return std::filesystem::path(FRUGAL_TEST_BINARY_DIR) / "fixtures" / "parity" / file;
}
// The stamp the script writes last (its name comes from the script, through tests/CMakeLists.txt).
inline bool parity_fixtures_present() { return std::filesystem::exists(parity_fixture(FRUGAL_PARITY_STAMP)); }
#define FRUGAL_REQUIRE_PARITY_FIXTURES()                                                                      \
    if (!frugal::test::parity_fixtures_present())                                                            \
    FRUGAL_SKIP("parity fixtures were not generated (no ../shared/tools or llama.cpp peer)")

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto & x : v) x = dist(rng);
    return v;
}

// n seeded random token ids in [0, n_vocab).
inline std::vector<int32_t> random_tokens(size_t n, int64_t n_vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(0, int32_t(n_vocab - 1));
    std::vector<int32_t> t(n);
    for (auto & v : t) v = id(rng);
    return t;
}

} // namespace frugal::test

// Ends the current test case as skipped (ctest matches "SKIP: ").
#define FRUGAL_SKIP(msg)                                                 \
    do {                                                                 \
        std::printf("SKIP: %s\n", std::string(msg).c_str());             \
        std::fflush(stdout);                                             \
        return;                                                          \
    } while (0)
