// tensor.hpp - owning tensor with 64-byte aligned storage.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>

#include "frugal/tensor_view.hpp"

namespace frugal {

inline constexpr size_t k_tensor_alignment = 64;

template <class T>
class tensor {
public:
    tensor() = default;
    explicit tensor(frugal::shape s) { resize(s); }

    // Reallocates only when growing; contents are unspecified after a resize.
    void resize(frugal::shape s) {
        const size_t n = size_t(s.numel());
        if (!storage_) capacity_ = 0; // moved from: the capacity left behind is not ours
        if (n > capacity_) {
            const size_t bytes = (n * sizeof(T) + k_tensor_alignment - 1) / k_tensor_alignment * k_tensor_alignment;
            void * p = std::aligned_alloc(k_tensor_alignment, bytes);
            if (!p) throw std::bad_alloc();
            storage_.reset(static_cast<T *>(p));
            capacity_ = n;
        }
        shape_ = s;
    }
    void fill(T v) {
        if (storage_) std::fill_n(storage_.get(), shape_.numel(), v); // a default tensor owns nothing
    }

    T * data() { return storage_.get(); }
    const T * data() const { return storage_.get(); }
    const frugal::shape & shape() const { return shape_; }
    int64_t numel() const { return shape_.numel(); }
    tensor_view<T> view() { return {storage_.get(), shape_}; }
    tensor_view<const T> view() const { return {storage_.get(), shape_}; }
    T & operator[](int64_t i) { return storage_.get()[i]; }
    const T & operator[](int64_t i) const { return storage_.get()[i]; }

private:
    struct free_deleter {
        void operator()(T * p) const noexcept { std::free(p); }
    };
    std::unique_ptr<T, free_deleter> storage_;
    size_t capacity_ = 0;
    frugal::shape shape_{};
};

} // namespace frugal
