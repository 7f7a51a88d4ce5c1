// shape.hpp - up to 4-D extents, outermost first (row-major: the last extent is contiguous).
// GGUF stores ne[] innermost first; shape::from_ne reverses it.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace frugal {

inline constexpr int k_max_rank = 4;

struct shape {
    std::array<int64_t, k_max_rank> dims{1, 1, 1, 1};
    int rank = 0;

    constexpr shape() = default;
    constexpr shape(std::initializer_list<int64_t> d) {
        for (int64_t v : d) dims[size_t(rank++)] = v;
    }
    // From GGUF ne order (ne[0] = innermost).
    static constexpr shape from_ne(std::span<const int64_t> ne) {
        shape s;
        s.rank = int(ne.size());
        for (int i = 0; i < s.rank; ++i) s.dims[size_t(i)] = ne[size_t(s.rank - 1 - i)];
        return s;
    }
    constexpr int64_t operator[](int i) const { return dims[size_t(i)]; }
    constexpr int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < rank; ++i) n *= dims[size_t(i)];
        return n;
    }
    constexpr int64_t innermost() const { return rank ? dims[size_t(rank - 1)] : 1; }
    // Number of rows when viewed as a 2-D [rows, innermost] matrix.
    constexpr int64_t rows() const { return rank ? numel() / innermost() : 1; }
    constexpr bool operator==(const shape & o) const {
        if (rank != o.rank) return false;
        for (int i = 0; i < rank; ++i)
            if (dims[size_t(i)] != o.dims[size_t(i)]) return false;
        return true;
    }
    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[size_t(i)]);
        return s + "]";
    }
};

} // namespace frugal
