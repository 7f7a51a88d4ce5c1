// repacked_weights.hpp - weights the loader rewrites into a layout the decode kernels read faster
// (ops::repacked_type: Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL), owned by the model that uses them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "frugal/tensor_view.hpp"
#include "runtime/gguf.hpp"

namespace frugal {

// Which Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL matrices the loader repacks: none, those whose decode on this CPU is faster
// repacked (ops::repacking_speeds_decode; the default), or all (for tests and comparisons).
enum class repack { never, where_faster, always };

// Each copy takes the place of its mapped original, whose pages are released right after, so
// the process keeps one resident copy of every weight, as without repacking. Copies stop at a
// budget (half the physical memory for models) that counts every live copy in the process, of
// every model: past it, weights stay mapped and are paged in from the file on demand, which is
// what lets a model larger than memory run at all.
class repacked_weights {
public:
    repacked_weights(); // budget: half the physical memory
    explicit repacked_weights(uint64_t budget);
    ~repacked_weights();
    repacked_weights(const repacked_weights &) = delete;
    repacked_weights & operator=(const repacked_weights &) = delete;

    // A repacked copy of src (a tensor of f, any rank, rows repacked independently), or src
    // itself when its type has no repacked layout, the policy leaves it (repack::where_faster
    // and a CPU that decodes it as fast as stored), the file is not mapped (releasing would not
    // free the original), the budget is spent or memory for the copy cannot be had.
    raw_view adopt(const gguf::file & f, const raw_view & src, int n_threads);
    void set_policy(repack p) { policy_ = p; }

    uint64_t bytes() const { return bytes_; }           // held in this store's copies
    uint64_t skipped_bytes() const { return skipped_; } // repackable but left mapped (budget, memory)
    static uint64_t process_bytes();                    // held in the copies of every live store

private:
    struct unmap {
        size_t size;
        void operator()(std::byte * p) const;
    };
    // Room for an n-byte copy: the newest arena's next free page, or a new arena's first.
    std::byte * place(const gguf::file & f, size_t n);

    std::vector<std::unique_ptr<std::byte, unmap>> regions_; // the arenas
    std::byte * next_ = nullptr;                              // the newest one's free bytes
    size_t left_ = 0;
    uint64_t budget_;
    repack policy_ = repack::where_faster;
    uint64_t bytes_ = 0;
    uint64_t skipped_ = 0;
};

} // namespace frugal
