// repacked_weights_test.cpp - the loader's repacking of Q4_0 matrices (lib/models/repacked_weights):
// which tensors it takes (by policy), that the copies hold the file's values, the memory budget,
// and that the mapped originals stay readable after their pages are released. The mechanics are
// tested under repack::always, on any CPU.
#include <doctest/doctest.h>

#include <cstring>
#include <memory>

#include "common/gguf_builder.hpp"
#include "common/test_support.hpp"
#include "models/repacked_weights.hpp"
#include "ops/quant.hpp"

using namespace frugal;

namespace {

// Q4_0 bytes of `rows` rows of k elements, quantized from seeded random floats.
std::vector<uint8_t> q4_0_rows(int64_t rows, int64_t k, uint32_t seed) {
    const auto x = test::random_floats(size_t(rows * k), seed);
    std::vector<uint8_t> bytes(size_t(rows * row_bytes(dtype::q4_0, k)));
    for (int64_t r = 0; r < rows; ++r)
        ops::quantize_row_weights(dtype::q4_0, x.data() + r * k,
                                  bytes.data() + r * row_bytes(dtype::q4_0, k), k);
    return bytes;
}

// A matrix of 70 rows of 3 blocks (a half pair at each row's end), 2 experts of 5 rows of 64,
// and an F32 vector. Returns the path.
std::filesystem::path write_file() {
    test::gguf::builder b;
    b.add("general.architecture", test::gguf::str("test"));
    b.add_tensor("matrix.weight", {96, 70}, uint32_t(dtype::q4_0), q4_0_rows(70, 96, 1));
    b.add_tensor("experts.weight", {64, 5, 2}, uint32_t(dtype::q4_0), q4_0_rows(10, 64, 2));
    b.add_f32("norm.weight", {8}, test::random_floats(8, 3));
    return test::gguf::write_scratch_model("repacked_weights", "q4_0.gguf", b);
}

// Every row of a as F32 equals the same row of b.
void check_same_values(const raw_view & a, const raw_view & b) {
    REQUIRE(a.shape == b.shape);
    const int64_t k = a.row_size();
    std::vector<float> ra(static_cast<size_t>(k)), rb(static_cast<size_t>(k));
    int differing = 0;
    for (int64_t r = 0; r < a.n_rows(); ++r) {
        ops::dequantize_row(a.type, a.row(r), ra.data(), k);
        ops::dequantize_row(b.type, b.row(r), rb.data(), k);
        differing += ra != rb;
    }
    CHECK(differing == 0);
}

} // namespace

TEST_CASE("repacked weights: Q4_0 matrices are copied into the repacked layout with the file's values") {
    const auto path = write_file();
    const auto f = gguf::file::open(path.string(), true);
    const auto reference = gguf::file::open(path.string(), false); // a second, unreleased copy
    repacked_weights store(uint64_t(1) << 30);
    store.set_policy(repack::always);
    uint64_t expected = 0;
    for (const char * name : {"matrix.weight", "experts.weight"}) {
        CAPTURE(name);
        const raw_view src = f->tensor(name);
        const raw_view got = store.adopt(*f, src, 2);
        CHECK(got.type == dtype::q4_0_repacked);
        CHECK(got.n_bytes() == src.n_bytes());
        CHECK(got.data != src.data);
        check_same_values(got, reference->tensor(name));
        // The released original reads back from the file unchanged.
        CHECK(std::memcmp(src.data, reference->tensor(name).data, size_t(src.n_bytes())) == 0);
        expected += uint64_t(src.n_bytes());
    }
    const raw_view norm = f->tensor("norm.weight");
    CHECK(store.adopt(*f, norm, 2).data == norm.data); // F32: no repacked layout
    CHECK(store.bytes() == expected);
    CHECK(store.skipped_bytes() == 0);
}

TEST_CASE("repacked weights: past the budget, or from a file read into memory, weights stay as stored") {
    const auto path = write_file();
    {
        const auto f = gguf::file::open(path.string(), true);
        const raw_view src = f->tensor("matrix.weight");
        repacked_weights store(uint64_t(src.n_bytes()) - 1);
        store.set_policy(repack::always);
        const raw_view got = store.adopt(*f, src, 1);
        CHECK(got.type == dtype::q4_0);
        CHECK(got.data == src.data);
        CHECK(store.bytes() == 0);
        CHECK(store.skipped_bytes() == uint64_t(src.n_bytes()));
    }
    {
        // Not mapped: releasing could not free the original, so a copy would double the memory.
        const auto f = gguf::file::open(path.string(), false);
        const raw_view src = f->tensor("matrix.weight");
        repacked_weights store(uint64_t(1) << 30);
        store.set_policy(repack::always);
        CHECK(store.adopt(*f, src, 1).data == src.data);
        CHECK(store.bytes() == 0);
    }
}

TEST_CASE("repacked weights: the budget counts the copies of every live store in the process") {
    const auto path = write_file();
    const auto f = gguf::file::open(path.string(), true);
    const raw_view src = f->tensor("matrix.weight");
    const auto n = uint64_t(src.n_bytes());
    const uint64_t before = repacked_weights::process_bytes(); // other tests' stores are gone
    const uint64_t budget = before + n + n / 2;                 // room for one copy, not two
    auto first = std::make_unique<repacked_weights>(budget);
    first->set_policy(repack::always);
    CHECK(first->adopt(*f, src, 1).type == dtype::q4_0_repacked);
    CHECK(repacked_weights::process_bytes() == before + n);
    repacked_weights second(budget);
    second.set_policy(repack::always);
    CHECK(second.adopt(*f, src, 1).type == dtype::q4_0); // the first store's copy counts
    CHECK(second.skipped_bytes() == n);
    first.reset(); // a model going away gives its share back
    CHECK(repacked_weights::process_bytes() == before);
    CHECK(second.adopt(*f, src, 1).type == dtype::q4_0_repacked);
}

TEST_CASE("repacked weights: by default only where this CPU decodes the repacked layout faster; never: none") {
    const auto path = write_file();
    const auto f = gguf::file::open(path.string(), true);
    const raw_view src = f->tensor("matrix.weight");
    repacked_weights store(uint64_t(1) << 30); // repack::where_faster
    const bool faster = ops::repacking_speeds_decode(dtype::q4_0);
    MESSAGE("this CPU decodes Q4_0 faster repacked: " << faster);
    CHECK(store.adopt(*f, src, 1).type == (faster ? dtype::q4_0_repacked : dtype::q4_0));
    repacked_weights none(uint64_t(1) << 30);
    none.set_policy(repack::never);
    CHECK(none.adopt(*f, src, 1).data == src.data);
    CHECK(none.bytes() == 0);
    CHECK(none.skipped_bytes() == 0);
}
