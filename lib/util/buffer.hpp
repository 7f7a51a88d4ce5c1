// buffer.hpp - scratch buffers that grow on first use and are reused afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace frugal {

// At least n elements in v (never shrinks); returns its data. Scratch: when v grows its contents
// are not kept, and the old buffer is freed before the new one is allocated, so a growing buffer
// never holds both at once (the prompt's peak memory).
template <class T>
T * grow(std::vector<T> & v, int64_t n) {
    if (v.size() < size_t(n)) {
        std::vector<T>().swap(v);
        v.resize(size_t(n));
    }
    return v.data();
}

} // namespace frugal
