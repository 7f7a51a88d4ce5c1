// deepseek2.hpp - GGUF architecture `deepseek2`: DeepSeek-V2, V2-Lite, V3 and R1.
// Multi-head latent attention (MLA) over a latent KV cache, DeepSeekMoE feed-forward blocks,
// YaRN RoPE. The design is in docs/DEEPSEEK2.md.
#pragma once

#include "models/model.hpp"

namespace frugal {

std::shared_ptr<const model> load_deepseek2(std::shared_ptr<const gguf::file> f, int n_threads,
                                            const load_options & opts);

// How a forward pass computes attention from the latent cache (both give the same results up to
// float rounding):
//   straightforward: decompress K and V of every cached position per head, then plain attention;
//                    cheapest when many new tokens share the decompression (prefill).
//   absorbed:        fold the K up-projection into the query and the V up-projection into the
//                    output, attending over the 576-wide latent rows directly (decode).
//   automatic:       per call, whichever costs fewer multiply-adds.
enum class mla_form { automatic, straightforward, absorbed };

// Forces a form on a deepseek2 session state (tests, benchmarks); throws invalid_argument for a
// state of another architecture.
void set_mla_form(model_state & state, mla_form form);

// The arithmetic of MLA attention: the straightforward form's over the decompressed heads, and the
// absorbed form's over the latent cache where a task has more rows than the direct kernels take
// (ops::attention_params::bf16_products; V3's 128 heads decoding do):
//   f32:       exact F32 products.
//   bf16:      queries, keys, values and softmax weights rounded to BF16 and multiplied with F32
//              sums (ops::attention_params::bf16_products), about twice F32's speed, as DeepSeek's
//              own inference computes attention in BF16; F32 where the CPU lacks AVX-512 BF16.
//              It moves the logits several times more than llama.cpp's rounding does (docs/PERF.md:
//              median row max |diff| 0.042 against 0.006 at DeepSeek-V3's shapes), so it is asked for.
//   automatic: f32 (the default).
enum class mla_attention { automatic, f32, bf16 };
// Throws invalid_argument for a state of another architecture.
void set_mla_attention(model_state & state, mla_attention arithmetic);
// Whether a deepseek2 state's attention multiplies in BF16 on this CPU.
bool mla_attention_bf16(const model_state & state);

// The straightforward form decompresses as many heads at a time as fit in this many bytes of
// K and V (at least one; 256 MiB unless set): tests set it low to run it a head at a time.
// Throws invalid_argument for a state of another architecture.
void set_mla_decompressed_bytes(model_state & state, uint64_t bytes);

} // namespace frugal
