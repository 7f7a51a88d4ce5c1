// attention.hpp - causal scaled-dot-product attention with grouped-query heads over a KV cache.
#pragma once

#include <cstdint>
#include <vector>

#include "frugal/dtype.hpp"

namespace frugal::ops {

struct attention_params {
    int64_t n_head = 0;     // query heads
    int64_t n_head_kv = 0;  // key/value heads; n_head % n_head_kv == 0, query head h reads kv head h / (n_head / n_head_kv)
    int64_t head_dim = 0;   // of K (and Q)
    int64_t v_dim = 0;      // of V (= head_dim for llama/qwen2)
    float scale = 1.f;      // softmax scale, 1/sqrt(head_dim) for llama/qwen2
    // Elements between consecutive positions of k and v; 0 = packed (n_head_kv * head_dim,
    // n_head_kv * v_dim). Absorbed MLA reads V as the first v_dim elements of each K row.
    int64_t k_stride = 0;
    int64_t v_stride = 0;
    // Elements from one kv head's rows to the next's; 0 = head_dim (v_dim): the heads side by
    // side in each position's row. A head-major cache ([n_head_kv, n_ctx, head_dim], each head's
    // positions contiguous) passes n_ctx · head_dim here and head_dim as k_stride.
    int64_t k_head_stride = 0;
    int64_t v_head_stride = 0;
    // Elements from one token's queries (outputs) to the next's; 0 = n_head · head_dim (n_head ·
    // v_dim): packed. A subset of a wider layer's heads (DeepSeek's decompressed MLA, a group of
    // heads at a time) passes the layer's widths here and q, out at its first head.
    int64_t q_stride = 0;
    int64_t out_stride = 0;
    // Element type of k and v: f32, f16 (a half-size cache) or q8_0 (about a quarter: llama.cpp's
    // block_q8_0, each head's rows in whole blocks). F16 and Q8_0 values are widened to F32 as they
    // are read, so the arithmetic is the F32 path's on the values the cache holds (llama.cpp instead
    // rounds the query to the key's type; this keeps the query exact).
    dtype kv_type = dtype::f32;
    // Products in BF16, for an F32 or F16 cache where the CPU has AVX-512 BF16 (else ignored):
    // the scaled query, the keys, the values and the softmax weights P are rounded to BF16 (to
    // nearest, ties to even; F16 values from their exact F32 widening) and multiplied with F32
    // sums by vdpbf16ps, at twice the F32 path's rate; the softmax itself stays F32. Tasks of few
    // rows that read an F16 cache directly (attention_kernels::direct_rows: a decode step of
    // GQA heads) keep F32. DeepSeek's MLA takes it on request, as DeepSeek's own inference
    // computes attention in BF16: its decompressed heads (F32) and, in decode, its latent cache.
    bool bf16_products = false;
};

// q:   [n_tokens, n_head, head_dim], token t at position pos0 + t, tokens q_stride elements apart
// k:   [>= pos0 + n_tokens, n_head_kv, head_dim] of kv_type (the cache, positions 0.. filled), rows
//      k_stride elements apart, heads k_head_stride apart
// v:   [>= pos0 + n_tokens, n_head_kv, v_dim] of kv_type, rows v_stride elements apart, heads
//      v_head_stride apart
// out: [n_tokens, n_head, v_dim], tokens out_stride elements apart
// Token t attends to positions 0..pos0 + t. `scratch` is working space, resized as needed; its
// size does not depend on the context length, so a reused vector stops allocating once warm.
// Throws status::invalid_argument for a kv_type other than f32, f16 and q8_0, and for a Q8_0
// cache whose dims or strides are not whole blocks of 32.
void attention(const attention_params & p, const float * q, int64_t n_tokens, int64_t pos0, const void * k,
               const void * v, float * out, std::vector<float> & scratch, int n_threads);

// Whether attention_params::bf16_products takes effect here: the CPU has AVX-512 BF16 (within
// FRUGAL_MAX_CPU_ISA).
bool bf16_products_available();

} // namespace frugal::ops
