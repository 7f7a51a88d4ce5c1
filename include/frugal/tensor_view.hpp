// tensor_view.hpp - non-owning views.
//   tensor_view<T>: typed elements, extents + element strides, row-major by default.
//   raw_view:       any dtype (quantized included) as stored, contiguous rows of whole blocks;
//                   what GGUF weights are exposed as.
#pragma once

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "frugal/dtype.hpp"
#include "frugal/shape.hpp"

#ifndef FRUGAL_ASSERT
#  define FRUGAL_ASSERT(cond) assert(cond)
#endif

namespace frugal {

constexpr std::array<int64_t, k_max_rank> contiguous_strides(const shape & s) {
    std::array<int64_t, k_max_rank> st{1, 1, 1, 1};
    int64_t acc = 1;
    for (int i = s.rank - 1; i >= 0; --i) {
        st[size_t(i)] = acc;
        acc *= s.dims[size_t(i)];
    }
    return st;
}

template <class T>
class tensor_view {
public:
    constexpr tensor_view() = default;
    constexpr tensor_view(T * data, shape s) : data_(data), shape_(s), strides_(contiguous_strides(s)) {}
    constexpr tensor_view(T * data, shape s, std::array<int64_t, k_max_rank> strides)
        : data_(data), shape_(s), strides_(strides) {}

    constexpr T * data() const { return data_; }
    constexpr const frugal::shape & shape() const { return shape_; }
    constexpr int rank() const { return shape_.rank; }
    constexpr int64_t dim(int i) const { return shape_[i]; }
    constexpr int64_t stride(int i) const { return strides_[size_t(i)]; }
    constexpr int64_t numel() const { return shape_.numel(); }
    constexpr bool is_contiguous() const { return strides_ == contiguous_strides(shape_); }

    template <class... I>
    constexpr T & operator()(I... idx) const {
        static_assert(sizeof...(I) <= k_max_rank);
        FRUGAL_ASSERT(int(sizeof...(I)) == shape_.rank);
        const int64_t ix[] = {int64_t(idx)...};
        int64_t off = 0;
        for (size_t i = 0; i < sizeof...(I); ++i) {
            FRUGAL_ASSERT(ix[i] >= 0 && ix[i] < shape_.dims[i]);
            off += ix[i] * strides_[i];
        }
        return data_[off];
    }

    // Sub-view of index i along the outermost dimension (drops that dimension).
    constexpr tensor_view slice(int64_t i) const {
        FRUGAL_ASSERT(shape_.rank >= 1 && i >= 0 && i < shape_[0]);
        frugal::shape s;
        s.rank = shape_.rank - 1;
        std::array<int64_t, k_max_rank> st{1, 1, 1, 1};
        for (int d = 1; d < shape_.rank; ++d) {
            s.dims[size_t(d - 1)] = shape_.dims[size_t(d)];
            st[size_t(d - 1)] = strides_[size_t(d)];
        }
        return tensor_view(data_ + i * strides_[0], s, st);
    }

    constexpr operator tensor_view<const T>() const { return {data_, shape_, strides_}; }

private:
    T * data_ = nullptr;
    frugal::shape shape_{};
    std::array<int64_t, k_max_rank> strides_{1, 1, 1, 1};
};

// A tensor as stored: dtype + bytes. Rows (innermost extent) are whole blocks, rows contiguous.
struct raw_view {
    dtype type = dtype::f32;
    const std::byte * data = nullptr;
    frugal::shape shape{};

    constexpr int64_t row_size() const { return shape.innermost(); }            // elements per row
    constexpr int64_t n_rows() const { return shape.rows(); }
    constexpr int64_t row_stride() const { return row_bytes(type, row_size()); } // bytes per row
    constexpr int64_t n_bytes() const { return row_stride() * n_rows(); }
    constexpr const std::byte * row(int64_t i) const { return data + i * row_stride(); }
    template <class T>
    tensor_view<const T> as() const { return {reinterpret_cast<const T *>(data), shape}; }

    // Rows [first, first + count) as a 2-D [count, row_size] view (e.g. one head's block of a
    // fused projection).
    constexpr raw_view row_range(int64_t first, int64_t count) const {
        FRUGAL_ASSERT(first >= 0 && count >= 0 && first + count <= n_rows());
        return {type, row(first), frugal::shape{count, row_size()}};
    }
    // Sub-view of index i along the outermost dimension (e.g. one expert of a stacked [E, N, K]
    // tensor), dropping that dimension.
    constexpr raw_view slice(int64_t i) const {
        FRUGAL_ASSERT(shape.rank >= 2 && i >= 0 && i < shape[0]);
        frugal::shape s;
        s.rank = shape.rank - 1;
        for (int d = 1; d < shape.rank; ++d) s.dims[size_t(d - 1)] = shape.dims[size_t(d)];
        return {type, data + i * (s.numel() / s.innermost()) * row_stride(), s};
    }
};

} // namespace frugal
