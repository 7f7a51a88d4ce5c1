// gguf_prefault_test.cpp - gguf::file::prefault maps a mapped file's tensor data into the process
// ahead of use (the model loader calls it): the process's file-backed resident set grows by the
// data's size, progress rises to 1, a callback can cancel, and a file read into memory is left alone.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/gguf_builder.hpp"
#include "common/test_support.hpp"
#include "runtime/gguf.hpp"
#include "util/error.hpp"

using namespace frugal;

namespace {

constexpr uint64_t k_data_bytes = uint64_t(48) << 20; // two 32 MiB chunks

// 48 MiB of F32 tensor data in three tensors. Returns the path.
std::filesystem::path write_file() {
    test::gguf::builder b;
    b.add("general.architecture", test::gguf::str("test"));
    const uint64_t floats = k_data_bytes / 3 / sizeof(float);
    for (int i = 0; i < 3; ++i)
        b.add_f32(fmt::format("t{}.weight", i), {floats}, std::vector<float>(size_t(floats), float(i + 1)));
    return test::gguf::write_scratch_model("gguf_prefault", "data.gguf", b);
}

// This process's file-backed resident bytes (RssFile in /proc/self/status), 0 when unknown.
uint64_t rss_file_bytes() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("RssFile:", 0) == 0) return std::stoull(line.substr(8)) * 1024;
    return 0;
}

} // namespace

TEST_CASE("prefault maps every page of a mapped file's tensor data, with progress up to 1" * doctest::timeout(60)) {
    const auto path = write_file();
    const auto f = gguf::file::open(path.string(), true);
    REQUIRE(f->mapped());
    const uint64_t before = rss_file_bytes();
    if (before == 0) FRUGAL_SKIP("no RssFile in /proc/self/status");
    // Opening touched only the header and metadata.
    CHECK(before + k_data_bytes / 2 > rss_file_bytes());
    std::vector<float> fractions;
    f->prefault(2, [&](float x) {
        fractions.push_back(x);
        return true;
    });
    const uint64_t after = rss_file_bytes();
    MESSAGE("RssFile " << before / 1024 << " -> " << after / 1024 << " KiB");
    CHECK(after >= before + k_data_bytes * 9 / 10);
    REQUIRE(fractions.size() >= 2);
    CHECK(fractions.front() == 0.f);
    CHECK(fractions.back() == 1.f);
    CHECK(std::is_sorted(fractions.begin(), fractions.end()));
    // The data reads back as written.
    const auto bytes = f->tensor_bytes(f->tensors().at(2));
    float last;
    std::memcpy(&last, bytes.data() + bytes.size() - sizeof(float), sizeof last);
    CHECK(last == 3.f);
}

TEST_CASE("prefault: a progress callback that returns false cancels it; unmapped files are left alone" *
          doctest::timeout(60)) {
    const auto path = write_file();
    const auto f = gguf::file::open(path.string(), true);
    int calls = 0;
    try {
        f->prefault(1, [&](float) { return ++calls < 1; });
        FAIL("prefault was not cancelled");
    } catch (const frugal::error & e) {
        CHECK(e.code() == status::cancelled);
        CHECK(std::string(e.what()).find("cancelled") != std::string::npos);
    }
    CHECK(calls == 1);
    f->prefault(1); // still usable afterwards

    const auto in_memory = gguf::file::open(path.string(), false);
    REQUIRE_FALSE(in_memory->mapped());
    int unmapped_calls = 0;
    in_memory->prefault(2, [&](float) { return ++unmapped_calls > 0; });
    CHECK(unmapped_calls == 0);
}
