// tensor_test.cpp - the header-only tensor layer in include/frugal: shapes, views, raw (quantized)
// views, owning tensors and the Eigen maps.
#include <doctest/doctest.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "frugal/eigen_interop.hpp"
#include "frugal/shape.hpp"
#include "frugal/tensor.hpp"
#include "frugal/tensor_view.hpp"

using namespace frugal;

namespace {

// 0, 1, 2, ... so an element's value is its flat offset.
std::vector<float> iota_floats(size_t n) {
    std::vector<float> v(n);
    std::iota(v.begin(), v.end(), 0.f);
    return v;
}

bool aligned(const void * p) { return reinterpret_cast<uintptr_t>(p) % k_tensor_alignment == 0; }

} // namespace

TEST_CASE("shape: from_ne reverses GGUF order, numel, rows, innermost" * doctest::timeout(60)) {
    const int64_t ne2[] = {4096, 32000}; // GGUF: ne[0] innermost
    const shape s2 = shape::from_ne(ne2);
    CHECK(s2 == shape{32000, 4096});
    CHECK(s2.rank == 2);
    CHECK(s2.innermost() == 4096);
    CHECK(s2.rows() == 32000);

    const int64_t ne3[] = {5, 3, 2};
    const shape s3 = shape::from_ne(ne3);
    CHECK(s3 == shape{2, 3, 5});
    CHECK(s3.numel() == 30);
    CHECK(s3.rows() == 6);
    CHECK(s3.str() == "[2, 3, 5]");
    CHECK_FALSE(s3 == shape{2, 3, 5, 1}); // rank matters

    const shape scalar;
    CHECK(scalar.rank == 0);
    CHECK(scalar.numel() == 1);
    CHECK(scalar.rows() == 1);
    CHECK(scalar.innermost() == 1);
    static_assert(shape{2, 3, 4}.numel() == 24); // usable at compile time
}

TEST_CASE("tensor_view: row-major indexing, strides, slices" * doctest::timeout(60)) {
    auto data = iota_floats(24);
    const tensor_view<float> v(data.data(), shape{2, 3, 4});
    CHECK(v.rank() == 3);
    CHECK(v.numel() == 24);
    CHECK(v.stride(0) == 12);
    CHECK(v.stride(1) == 4);
    CHECK(v.stride(2) == 1);
    CHECK(v.is_contiguous());
    for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j)
            for (int64_t k = 0; k < 4; ++k) {
                CAPTURE(i);
                CAPTURE(j);
                CAPTURE(k);
                CHECK(v(i, j, k) == float(i * 12 + j * 4 + k));
            }
    v(1, 2, 3) = -1.f; // views write through
    CHECK(data[23] == -1.f);

    // slice drops the outermost dimension and keeps the remaining strides
    const auto s = v.slice(1);
    CHECK(s.shape() == shape{3, 4});
    CHECK(s.data() == data.data() + 12);
    CHECK(s.stride(0) == 4);
    CHECK(s(2, 1) == 21.f);
    CHECK(s.slice(2).shape() == shape{4});
    CHECK(s.slice(2)(0) == 20.f);
    CHECK(s.is_contiguous()); // a slice of a contiguous view is one

    // A transposed [4, 3] view of a [3, 4] matrix: strides {1, 4}, not contiguous; slicing it
    // gives a column.
    const tensor_view<float> t(data.data(), shape{4, 3}, {1, 4, 1, 1});
    CHECK_FALSE(t.is_contiguous());
    CHECK(t(3, 2) == 11.f);
    const auto col = t.slice(3);
    CHECK(col.stride(0) == 4);
    CHECK(col(1) == 7.f);

    const tensor_view<const float> c = v; // const conversion keeps data, shape and strides
    CHECK(c.data() == v.data());
    CHECK(c(0, 1, 2) == 6.f);
}

TEST_CASE("raw_view: row addressing and row bytes for every dtype" * doctest::timeout(60)) {
    struct dtype_case {
        dtype type;
        int64_t bytes_per_256; // row of 256 elements
    };
    const dtype_case cases[] = {
        {dtype::f32, 1024}, {dtype::f16, 512},      {dtype::bf16, 512},     {dtype::q8_0, 8 * 34},
        {dtype::q4_0, 8 * 18}, {dtype::q4_k, 144}, {dtype::q5_k, 176}, {dtype::q6_k, 210},
        {dtype::q5_0, 8 * 22}, {dtype::q5_1, 8 * 24}, {dtype::q4_1, 8 * 20}, {dtype::iq4_nl, 8 * 18}, // MODEL-SPEC.md §3.6
    };
    std::vector<std::byte> buf(6 * 2 * 1024);
    for (const auto & c : cases) {
        CAPTURE(std::string(dtype_name(c.type)));
        CHECK(row_bytes(c.type, 512) == 2 * c.bytes_per_256);
        const raw_view w{c.type, buf.data(), shape{2, 3, 512}}; // [2, 3] rows of 512
        CHECK(w.row_size() == 512);
        CHECK(w.n_rows() == 6);
        CHECK(w.row_stride() == 2 * c.bytes_per_256);
        CHECK(w.n_bytes() == 12 * c.bytes_per_256);
        for (int64_t r = 0; r < 6; ++r) CHECK(w.row(r) == buf.data() + r * 2 * c.bytes_per_256);
    }

    // An f32 raw view reads back as a typed view of the same memory.
    auto data = iota_floats(12);
    const raw_view f{dtype::f32, reinterpret_cast<const std::byte *>(data.data()), shape{3, 4}};
    const auto typed = f.as<float>();
    CHECK(typed.data() == data.data());
    CHECK(typed(2, 1) == 9.f);
}

TEST_CASE("tensor: 64-byte aligned storage, resize grows only when needed" * doctest::timeout(60)) {
    tensor<float> t(shape{3, 5});
    CHECK(aligned(t.data()));
    CHECK(t.numel() == 15);
    t.fill(2.5f);
    CHECK(t[14] == 2.5f);
    CHECK(t.view().shape() == shape{3, 5});
    CHECK(t.view().data() == t.data());

    const float * before = t.data();
    t.resize(shape{2, 7}); // 14 <= 15: same storage, new shape
    CHECK(t.data() == before);
    CHECK(t.shape() == shape{2, 7});
    CHECK(t.numel() == 14);

    for (int64_t n : {17, 1000, 4099}) { // growing reallocates, still aligned
        CAPTURE(n);
        t.resize(shape{n});
        CHECK(aligned(t.data()));
        CHECK(t.numel() == n);
        t.fill(1.f); // the whole new extent is writable
        CHECK(t[n - 1] == 1.f);
    }

    // A moved-from tensor is reusable: resizing it gives it storage of its own.
    const float * owned = t.data();
    tensor<float> moved = std::move(t);
    CHECK(moved.data() == owned);
    t.resize(shape{4});
    REQUIRE(t.data() != nullptr);
    CHECK(t.data() != owned);
    CHECK(aligned(t.data()));
    t.fill(3.f);
    CHECK(moved[0] == 1.f);

    tensor<uint16_t> h(shape{3}); // element size not a divisor of 64
    CHECK(aligned(h.data()));
    const tensor<uint16_t> & ch = h;
    CHECK(ch.view().data() == h.data());
}

TEST_CASE("eigen_interop: maps share the view's memory, row-major" * doctest::timeout(60)) {
    tensor<float> t(shape{2, 3, 4});
    for (int64_t i = 0; i < t.numel(); ++i) t[i] = float(i);

    auto m = as_matrix(t.view()); // leading dims folded: [6, 4]
    CHECK(m.rows() == 6);
    CHECK(m.cols() == 4);
    CHECK(m.data() == t.data());
    CHECK(m(5, 3) == 23.f);
    CHECK(m(1, 0) == 4.f); // row-major: the next row starts 4 floats on
    m(2, 1) = -3.f;
    CHECK(t[9] == -3.f);

    auto vec = as_vector(t.view());
    CHECK(vec.size() == 24);
    CHECK(vec.data() == t.data());
    vec *= 2.f;
    CHECK(t[23] == 46.f);

    const auto row_block = as_matrix(t.view().slice(1)); // [3, 4] starting at element 12
    CHECK(row_block.data() == t.data() + 12);
    CHECK(row_block(2, 3) == 46.f);

    const tensor<float> & ct = t;
    const auto cm = as_matrix(ct.view());
    CHECK(cm.data() == t.data());
    CHECK(cm.row(1).sum() == 2.f * (4 + 5 + 6 + 7));
}
