// common.hpp - pieces every architecture's loader and forward pass share: checked reading of
// hyper-parameters and weights from the GGUF file, the SwiGLU feed-forward block, token
// embedding lookup and residual adds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/tensor_view.hpp"
#include "models/model.hpp"
#include "ops/matmul.hpp"
#include "runtime/gguf.hpp"

namespace frugal {

// Reads `<arch>.<key>` hyper-parameters and named tensors, throwing status::invalid_model with
// the file, the key or tensor and the offending value when anything is missing or out of range.
class weight_reader {
public:
    // Matrices (rank >= 2) go through `repacked` when given (its own rules decide), with
    // n_threads doing the copying. Those left in a mapped file are prefaulted (gguf::file::prefault)
    // as they are taken, unless the file is larger than physical memory.
    weight_reader(const gguf::file & f, std::string arch_prefix, repacked_weights * repacked = nullptr,
                  int n_threads = 1);

    const gguf::file & file() const { return f_; }
    // Required integer in [lo, hi].
    int64_t get_int(std::string_view key, int64_t lo, int64_t hi) const;
    // Optional integer in [lo, hi]; `fallback` when the key is absent.
    int64_t opt_int(std::string_view key, int64_t fallback, int64_t lo, int64_t hi) const;
    // Optional real in [lo, hi] (NaN and infinities are out of range); `fallback` when absent.
    double opt_float(std::string_view key, double fallback, double lo, double hi) const;
    bool has_tensor(const std::string & name) const { return f_.find_tensor(name) != nullptr; }

    // A tensor that must have exactly this shape (outermost first); a matrix may come back
    // repacked (ops::repacked_type of its stored type).
    raw_view tensor(const std::string & name, frugal::shape want) const;
    raw_view matrix(const std::string & name, int64_t rows, int64_t cols) const { return tensor(name, {rows, cols}); }
    // A 1-D tensor dequantized to F32; empty when !required and absent.
    std::vector<float> vector(const std::string & name, int64_t n, bool required = true) const;

private:
    const gguf::file & f_;
    std::string prefix_; // "llama.", "deepseek2.", ...
    repacked_weights * repacked_;
    int n_threads_;
    bool prefault_;
};

// SwiGLU feed-forward weights: down(silu(gate·x) * up·x).
struct ffn_weights {
    raw_view gate, up, down; // [n_ff, D], [n_ff, D], [D, n_ff]
    int64_t n_ff() const { return gate.shape.rows(); }
};

// blk.N.ffn_{gate,up,down}<suffix>.weight (suffix "" for a dense block, "_shexp" for shared experts).
ffn_weights load_ffn(const weight_reader & r, const std::string & block, const std::string & suffix, int64_t n_ff,
                     int64_t n_embd);

// Scratch for one feed-forward evaluation, grown on demand.
struct ffn_scratch {
    std::vector<float> gate, up;
    // Prefill computes the up projection in column blocks of at most this many bytes, which
    // bounds this scratch. At the default, a dense model's prompt batch (512 tokens) takes
    // every FFN up to a 70B Llama's (28672 wide: 56 MiB) in one block: on Zen 5, pp512 with 4
    // MiB blocks (~1800 columns of the 1.5B Qwen2) was 4-12 % slower for Q4_0, Q8_0 and F16
    // (each block converts x again and runs its own GEMM calls, and SwiGLU over strided blocks
    // took 34-44 ms against 15-16 whole), and Q4_K_M the same within noise.
    int64_t up_block_bytes = int64_t(64) << 20;
};

// out[m, D] = FFN(x[m, D]).
void swiglu_ffn(ops::matmul_context & mm, const ffn_weights & w, const float * x, int64_t m, float * out,
                ffn_scratch & s);

// x[t, D] = row tokens[t] of the embedding table [n_vocab, D] (any dtype), as F32.
void embed_tokens(const raw_view & table, const int32_t * tokens, int64_t n, float * x);

// The token embedding table and the output layer (final norm + projection to the vocabulary).
struct lm_head {
    raw_view token_embd;            // [n_vocab, D]
    raw_view output;                // [n_vocab, D]; token_embd itself when the file ties them
    std::vector<float> output_norm; // [D]

    // Sets c.n_vocab from token_embd.weight, which must match the tokenizer's vocabulary.
    static lm_head load(const weight_reader & r, model_config & c, int64_t tokenizer_vocab);
    // logits[rows, n_vocab] for the last row of x[T, D] (or all T rows); h: scratch >= rows * D.
    void logits(ops::matmul_context & mm, const float * x, int64_t T, bool all_rows, float rms_eps, float * h,
                float * out) const;
};

// x[i] += y[i], i < n; on n_threads where n is a batch's residual stream (a token's is too small to
// share).
void add_into(float * x, const float * y, int64_t n, int n_threads = 1);

} // namespace frugal
