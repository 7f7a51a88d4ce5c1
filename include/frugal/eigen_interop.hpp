// eigen_interop.hpp - zero-copy Eigen maps over contiguous 2-D (or flattened) views.
#pragma once

#include <Eigen/Core>

#include "frugal/tensor_view.hpp"

namespace frugal {

template <class T>
using row_major_matrix = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// [rows, innermost] map of a contiguous view (leading dimensions are folded into rows).
template <class T>
auto as_matrix(tensor_view<T> v) {
    FRUGAL_ASSERT(v.is_contiguous());
    using map_t = std::conditional_t<std::is_const_v<T>, Eigen::Map<const row_major_matrix<T>>,
                                     Eigen::Map<row_major_matrix<T>>>;
    return map_t(v.data(), v.shape().rows(), v.shape().innermost());
}

// Flat vector map of a contiguous view.
template <class T>
auto as_vector(tensor_view<T> v) {
    FRUGAL_ASSERT(v.is_contiguous());
    using vec_t = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>;
    using map_t = std::conditional_t<std::is_const_v<T>, Eigen::Map<const vec_t>, Eigen::Map<vec_t>>;
    return map_t(v.data(), v.numel());
}

} // namespace frugal
