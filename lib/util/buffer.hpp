// buffer.hpp - scratch buffers that grow on first use and are reused afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace frugal {

// At least n elements in v (never shrinks); returns its data.
template <class T>
T * grow(std::vector<T> & v, int64_t n) {
    if (v.size() < size_t(n)) v.resize(size_t(n));
    return v.data();
}

} // namespace frugal
