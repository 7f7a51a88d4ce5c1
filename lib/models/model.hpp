// model.hpp - what every architecture provides to the runtime: a config, a tokenizer, and a
// forward pass over a per-session state (KV cache + scratch).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "models/kv_cache.hpp"
#include "models/repacked_weights.hpp"
#include "ops/matmul.hpp"
#include "runtime/gguf.hpp"
#include "runtime/tokenizer.hpp"

namespace frugal {

enum class arch { llama, qwen2, deepseek2 };

struct model_config {
    frugal::arch arch = arch::llama;
    std::string arch_name;     // general.architecture
    std::string name;          // general.name (may be empty)
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    int64_t n_embd = 0;
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;
    int64_t n_ff = 0;              // dense feed-forward width
    int64_t n_expert = 0;          // routed experts (0: dense model)
    int64_t n_expert_used = 0;     // experts per token
    int64_t kv_values_per_token = 0; // KV cache values one position holds (all layers)
    float rms_eps = 1e-5f;
    int64_t n_params = 0;      // elements in all weight tensors
    uint64_t weight_bytes = 0; // bytes of all weight tensors as stored
    // Weight bytes one decode step reads: every tensor except the token embedding (one row of it;
    // all of it when the output layer is tied to it), routed experts at n_expert_used/n_expert.
    // Memory read bandwidth / this = the decode speed limit.
    uint64_t decode_bytes_per_token = 0;
    // Multiply-adds one prompt token costs, by stored weight type: every matrix but the token
    // embedding and the output layer (one row per prompt), experts at n_expert_used / n_expert.
    std::map<dtype, int64_t> prefill_macs_by_type;
    // KV cache bytes one position costs (all layers) in a cache of type t.
    uint64_t kv_bytes_per_token(dtype t = k_default_kv_type) const {
        return uint64_t(row_bytes(t, kv_values_per_token));
    }
    // Weight bytes the loader rewrote into a faster layout (repacked_weights.hpp), and those it
    // could have but left mapped (memory budget).
    uint64_t repacked_bytes = 0;
    uint64_t repack_skipped_bytes = 0;
};

struct load_options {
    int n_threads = 0;         // 0 = physical cores in this process's affinity mask
    bool use_mmap = true;
    // Which Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL matrices to rewrite into the repacked decode layout
    // (repacked_weights.hpp). repack::never: every weight is used in place from the file, as stored.
    repack repack_weights = repack::where_faster;
    // Called with the fraction loaded; returning false cancels the load (status::cancelled).
    std::function<bool(float)> progress;
};

// Per-session mutable state: owned by one session, used by one thread at a time.
class model_state {
public:
    virtual ~model_state() = default;
    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_past() const { return n_past_; }
    uint64_t kv_bytes() const { return uint64_t(n_ctx_) * kv_bytes_per_token_; }
    dtype kv_type() const { return kv_type_; }
    // The session's matmul context (threads, prefill GEMM choice).
    virtual ops::matmul_context & matmul() = 0;
    void set_n_threads(int n) { matmul().set_n_threads(n); }
    void reset() { n_past_ = 0; }

protected:
    // Throws status::invalid_argument for a kv_type other than f32, f16 and q8_0 (require_kv_type), and
    // status::out_of_memory when the KV cache (n_ctx positions) exceeds this machine's physical
    // memory: it would only end in the OOM killer once filled.
    model_state(int64_t n_ctx, const model_config & c, dtype kv_type);
    int64_t n_ctx_;
    dtype kv_type_;
    uint64_t kv_bytes_per_token_;
    int64_t n_past_ = 0;
    friend class model;
};

class model {
public:
    virtual ~model() = default;
    const model_config & config() const { return config_; }
    const frugal::tokenizer & tokenizer() const { return *tokenizer_; }
    const gguf::file & file() const { return *file_; }
    int n_threads() const { return n_threads_; }

    // A state for n_ctx positions with a KV cache of kv_type (f32, f16 or q8_0).
    virtual std::unique_ptr<model_state> create_state(int64_t n_ctx, dtype kv_type) const = 0;

    // Evaluates `tokens` at positions state.n_past().. and advances n_past. Writes logits of the
    // last token ([n_vocab]) or of every token ([tokens.size(), n_vocab]) into `logits`.
    // Throws status::context_full (nothing evaluated) if the tokens do not fit,
    // status::invalid_argument for an out-of-range id, status::cancelled when `cancel` is set
    // (checked between layers; the state is left as before the call).
    void forward(model_state & state, std::span<const int32_t> tokens, bool all_logits, float * logits,
                 const std::atomic<bool> * cancel) const;

    // Largest number of tokens one forward_batch processes (bounds scratch memory): 512, or 2048
    // for models with routed experts. A batch reads (and on the q8 path packs) each routed
    // expert's weights once for the rows routed to it: a 512-token batch gives V3's 256 experts
    // (8 used) ~16 rows each, V2-Lite's 64 (6 used) ~48, where a dense weight serves all 512.
    // deepseek2-lite6 pp4096 on Zen 5: Q8_0 832-838 → 988 t/s, Q4_K_M 761 → 924, peak RSS 3.84
    // → 4.09 GB (the MLA decompression of the cached prefix is also done once a batch); a dense
    // 1.5B Qwen2 gained nothing (pp4096 380-386 t/s either way), so dense models keep 512.
    int64_t max_batch() const { return config_.n_expert > 0 ? k_max_moe_batch : k_max_batch; }

protected:
    virtual void forward_batch(model_state & state, std::span<const int32_t> tokens, bool all_logits, float * logits,
                               const std::atomic<bool> * cancel) const = 0;
    static constexpr int64_t k_max_batch = 512, k_max_moe_batch = 2048; // max_batch()
    // Trailing rows of a batch of T whose last-layer output anything reads: all T for
    // all_logits, the last one for a prompt's logits, none when no logits are asked (an earlier
    // batch of a long prompt). The last layer still writes every row's KV cache entry, but runs
    // its attention output and feed-forward on these rows only (as llama.cpp does).
    static int64_t output_rows(int64_t T, bool all_logits, const float * logits) {
        return all_logits ? T : (logits ? 1 : 0);
    }

    // Loader steps shared by the architectures: the progress callback before layer `layer`
    // (throws status::cancelled when it asks to stop), and the final totals of weights.
    static void report_progress(const load_options & opts, int64_t layer, int64_t n_layer);
    void finish_load(const load_options & opts);
    // The store the weight reader repacks through, under opts.repack_weights's policy.
    repacked_weights * repack_store(const load_options & opts);

    model_config config_;
    std::shared_ptr<const gguf::file> file_;
    // Repacked copies of some of file_'s matrices; the layers' weight views point into both.
    repacked_weights repacked_;
    std::unique_ptr<frugal::tokenizer> tokenizer_;
    int n_threads_ = 1;
};

// Opens a GGUF file and builds the model its general.architecture names.
std::shared_ptr<const model> load_model(const std::string & path, const load_options & opts);

} // namespace frugal
