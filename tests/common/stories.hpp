// stories.hpp - the trained stories260K model and its reference.json in ../shared/data, as the
// C ABI and C++ wrapper tests use them. Include after doctest and test_support.hpp.
#pragma once

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_support.hpp"

namespace frugal::test {

struct stories {
    std::string path;    // stories260K.gguf
    nlohmann::json ref;  // reference.json
};

// nullopt when ../shared/data/stories260K is absent.
inline std::optional<stories> find_stories() {
    const auto gguf = shared_data("stories260K/stories260K.gguf");
    const auto refp = shared_data("stories260K/reference.json");
    if (!gguf || !refp) return std::nullopt;
    stories s{gguf->string(), {}};
    std::ifstream(*refp) >> s.ref;
    return s;
}

inline std::vector<int32_t> ids_of(const nlohmann::json & j) { return j.get<std::vector<int32_t>>(); }

} // namespace frugal::test

// Declares `var` (the stories260K files) or ends the test case as skipped.
#define REQUIRE_STORIES(var)                        \
    const auto var = frugal::test::find_stories(); \
    if (!var) FRUGAL_SKIP("../shared/data/stories260K is not available")
