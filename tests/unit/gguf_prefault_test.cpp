// gguf_prefault_test.cpp - gguf::file::prefault maps the pages of a mapped file's bytes into the
// process ahead of use (the loader's weight_reader does it for the weights it leaves in place):
// the process's file-backed resident set grows by their size, and by no more.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/gguf_builder.hpp"
#include "common/test_support.hpp"
#include "models/model.hpp"
#include "runtime/gguf.hpp"

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

TEST_CASE("prefault maps every page of a mapped file's bytes it is given" * doctest::timeout(60)) {
    const auto path = write_file();
    const auto f = gguf::file::open(path.string(), true);
    REQUIRE(f->mapped());
    const uint64_t before = rss_file_bytes();
    if (before == 0) FRUGAL_SKIP("no RssFile in /proc/self/status");
    // Opening touched only the header and metadata; the first tensor alone is a third of the data.
    const auto first = f->tensor_bytes(f->tensors().at(0));
    f->prefault(first, 2);
    const uint64_t one = rss_file_bytes();
    CHECK(one >= before + first.size() * 9 / 10);
    CHECK(one < before + k_data_bytes / 2);
    // The rest (two 32 MiB chunks on two threads).
    const auto last = f->tensor_bytes(f->tensors().at(2));
    f->prefault({first.data(), size_t(last.data() + last.size() - first.data())}, 2);
    const uint64_t all = rss_file_bytes();
    MESSAGE("RssFile " << before / 1024 << " -> " << one / 1024 << " -> " << all / 1024 << " KiB");
    CHECK(all >= before + k_data_bytes * 9 / 10);
    // The data reads back as written.
    float value;
    std::memcpy(&value, last.data() + last.size() - sizeof(float), sizeof value);
    CHECK(value == 3.f);
    f->prefault({}, 2); // nothing to do
}

TEST_CASE("prefault leaves a file read into memory alone" * doctest::timeout(60)) {
    const auto path = write_file();
    const auto in_memory = gguf::file::open(path.string(), false);
    REQUIRE_FALSE(in_memory->mapped());
    const uint64_t before = rss_file_bytes();
    const auto bytes = in_memory->tensor_bytes(in_memory->tensors().at(0));
    in_memory->prefault(bytes, 2);
    CHECK(rss_file_bytes() < before + bytes.size() / 2);
}

TEST_CASE("loading a mapped model maps its weight matrices before any prompt" * doctest::timeout(60)) {
    test::gguf::tiny_llama_params p;
    p.n_embd = 256;
    p.n_ff = 4096;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_head_kv = 2;
    const auto path = test::gguf::write_scratch_model("gguf_prefault", "llama.gguf", test::gguf::tiny_llama(p));
    // The FFN's gate, up and down matrices alone: F32, 2 layers.
    const uint64_t ffn_bytes = uint64_t(2) * 3 * 256 * 4096 * sizeof(float);
    const uint64_t before = rss_file_bytes();
    if (before == 0) FRUGAL_SKIP("no RssFile in /proc/self/status");
    load_options opts;
    opts.n_threads = 2;
    const auto model = load_model(path.string(), opts);
    const uint64_t after = rss_file_bytes();
    MESSAGE("RssFile " << before / 1024 << " -> " << after / 1024 << " KiB over a load");
    CHECK(after >= before + ffn_bytes * 9 / 10);
}
