#include "models/llama.hpp"

#include <cmath>

#include "models/common.hpp"
#include "ops/attention.hpp"
#include "ops/matmul.hpp"
#include "ops/quant.hpp"
#include "ops/rmsnorm.hpp"
#include "ops/rope.hpp"
#include "util/buffer.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal {
namespace {

struct layer_weights {
    std::vector<float> attn_norm, ffn_norm;    // [n_embd]
    raw_view wq, wk, wv, wo;                    // [n_head*hd, n_embd], [n_kv*hd, n_embd] x2, [n_embd, n_head*hd]
    std::vector<float> bq, bk, bv;              // qwen2 only
    ffn_weights ffn;
};

class llama_state final : public model_state {
public:
    llama_state(const model_config & c, int64_t n_ctx, dtype kv_type, int threads)
        : model_state(n_ctx, c, kv_type), mm(threads) {
        const int64_t kv_row = c.n_head_kv * c.head_dim;
        for (int64_t l = 0; l < c.n_layer; ++l) {
            k_cache.emplace_back(kv_type, n_ctx, kv_row, c.n_head_kv);
            v_cache.emplace_back(kv_type, n_ctx, kv_row, c.n_head_kv);
        }
    }
    ops::matmul_context & matmul() override { return mm; }

    ops::matmul_context mm;
    std::vector<kv_rows> k_cache, v_cache; // per layer [n_head_kv, n_ctx, head_dim]
    // scratch, grown on demand and reused across calls
    std::vector<float> x, h, q, k, v, att, tmp, attn_scratch;
    ffn_scratch ffn;
    std::vector<int32_t> positions;
    ops::rope_table rope;
};

class llama_model final : public model {
public:
    llama_model(std::shared_ptr<const gguf::file> f, arch a, int n_threads, const load_options & opts);
    std::unique_ptr<model_state> create_state(int64_t n_ctx, dtype kv_type) const override {
        return std::make_unique<llama_state>(config_, n_ctx, kv_type, n_threads_);
    }

protected:
    void forward_batch(model_state & state, std::span<const int32_t> tokens, bool all_logits, float * logits,
                       const std::atomic<bool> * cancel) const override;

private:
    ops::rope_params rope_;
    std::vector<float> rope_freqs_;
    lm_head head_;
    std::vector<layer_weights> layers_;
};

llama_model::llama_model(std::shared_ptr<const gguf::file> f, arch a, int n_threads, const load_options & opts) {
    file_ = std::move(f);
    n_threads_ = n_threads;
    auto & c = config_;
    c.arch = a;
    c.arch_name = file_->get_string("general.architecture");
    c.name = file_->opt_string("general.name").value_or("");
    const weight_reader r(*file_, c.arch_name + ".", repack_store(opts), n_threads);
    c.n_embd = r.get_int("embedding_length", 1, 1 << 20);
    c.n_layer = r.get_int("block_count", 1, 4096);
    c.n_head = r.get_int("attention.head_count", 1, 1 << 14);
    c.n_head_kv = r.opt_int("attention.head_count_kv", c.n_head, 1, c.n_head);
    c.n_ff = r.get_int("feed_forward_length", 1, 1 << 22);
    // sessions default to the training context, so it must be usable
    c.n_ctx_train = r.opt_int("context_length", 2048, 1, int64_t(1) << 32);
    c.rms_eps = float(r.opt_float("attention.layer_norm_rms_epsilon", 1e-5, 1e-12, 1.0));
    if (c.n_embd % c.n_head != 0 || c.n_head % c.n_head_kv != 0)
        throw_error(status::invalid_model, "loader: {} heads / {} kv heads do not divide embedding {}", c.n_head,
                    c.n_head_kv, c.n_embd);
    c.head_dim = r.opt_int("attention.key_length", c.n_embd / c.n_head, 1, 1 << 14);

    tokenizer_ = std::make_unique<frugal::tokenizer>(vocab::from_gguf(*file_));

    rope_.n_rot = r.opt_int("rope.dimension_count", c.head_dim, 2, c.head_dim);
    if (rope_.n_rot % 2)
        throw_error(status::invalid_model, "loader: {}.rope.dimension_count = {} must be even", c.arch_name, rope_.n_rot);
    rope_.freq_base = float(r.opt_float("rope.freq_base", 10000.0, 1.0, 1e12));
    const auto scaling = file_->opt_string(c.arch_name + ".rope.scaling.type").value_or("none");
    if (scaling == "linear") {
        const double factor = r.opt_float("rope.scaling.factor", 1.0, 1e-6, 1e6);
        rope_.freq_scale = float(1.0 / factor);
    } else if (scaling != "none") {
        throw_error(status::unsupported_model, "loader: {}.rope.scaling.type '{}' is not supported for {}", c.arch_name,
                    scaling, c.arch_name);
    }
    // llama: adjacent pairs (the converter permuted Q/K rows back to Meta's layout); qwen2: NeoX.
    rope_.mode = a == arch::qwen2 ? ops::rope_mode::neox : ops::rope_mode::normal;
    if (r.has_tensor("rope_freqs.weight")) {
        rope_freqs_ = r.vector("rope_freqs.weight", rope_.n_rot / 2);
        rope_.freq_factors = rope_freqs_.data();
    }

    head_ = lm_head::load(r, c, tokenizer_->n_vocab());
    const int64_t hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd;
    layers_.resize(size_t(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        report_progress(opts, l, c.n_layer);
        auto & L = layers_[size_t(l)];
        const std::string b = fmt::format("blk.{}.", l);
        L.attn_norm = r.vector(b + "attn_norm.weight", c.n_embd);
        L.ffn_norm = r.vector(b + "ffn_norm.weight", c.n_embd);
        L.wq = r.matrix(b + "attn_q.weight", q_dim, c.n_embd);
        L.wk = r.matrix(b + "attn_k.weight", kv_dim, c.n_embd);
        L.wv = r.matrix(b + "attn_v.weight", kv_dim, c.n_embd);
        L.wo = r.matrix(b + "attn_output.weight", c.n_embd, q_dim);
        const bool bias_required = a == arch::qwen2;
        L.bq = r.vector(b + "attn_q.bias", q_dim, bias_required);
        L.bk = r.vector(b + "attn_k.bias", kv_dim, bias_required);
        L.bv = r.vector(b + "attn_v.bias", kv_dim, bias_required);
        L.ffn = load_ffn(r, b, "", c.n_ff, c.n_embd);
    }
    c.kv_values_per_token = c.n_layer * 2 * kv_dim;
    finish_load(opts);
    FRUGAL_LOG_INFO("loader: {} ({}): {} layers, embd {}, heads {}/{}, ff {}, vocab {}", file_->path(), c.arch_name,
                    c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab);
}

void add_bias(float * x, const std::vector<float> & b, int64_t rows) {
    if (b.empty()) return;
    const auto n = int64_t(b.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i) x[r * n + i] += b[size_t(i)];
}

void llama_model::forward_batch(model_state & base, std::span<const int32_t> tokens, bool all_logits, float * logits,
                                const std::atomic<bool> * cancel) const {
    auto & st = static_cast<llama_state &>(base);
    const auto & c = config_;
    const int64_t T = int64_t(tokens.size());
    const int64_t D = c.n_embd, hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd;
    const int64_t pos0 = st.n_past();
    const int nt = st.mm.n_threads();

    float * x = grow(st.x, T * D);       // [T, D] residual stream
    float * h = grow(st.h, T * D);       // [T, D] normed input of a sub-block
    float * q = grow(st.q, T * q_dim);   // [T, n_head, hd]
    float * k = grow(st.k, T * kv_dim);  // [T, n_head_kv, hd], the new cache rows before rounding
    float * v = grow(st.v, T * kv_dim);
    float * att = grow(st.att, T * q_dim);
    float * tmp = grow(st.tmp, T * D);

    embed_tokens(head_.token_embd, tokens.data(), T, x);

    int32_t * pos = grow(st.positions, T);
    for (int64_t t = 0; t < T; ++t) pos[t] = int32_t(pos0 + t);
    st.rope.build(rope_, pos, T);

    const kv_rows & cache0 = st.k_cache.front(); // every layer's K and V caches are laid out alike
    const ops::attention_params ap{.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = hd, .v_dim = hd,
                                   .scale = float(1.0 / std::sqrt(double(hd))),
                                   .k_stride = cache0.position_stride(), .v_stride = cache0.position_stride(),
                                   .k_head_stride = cache0.head_stride(), .v_head_stride = cache0.head_stride(),
                                   .kv_type = st.kv_type()};
    for (int64_t l = 0; l < c.n_layer; ++l) {
        if (cancel && cancel->load(std::memory_order_relaxed))
            throw_error(status::cancelled, "forward: cancelled at layer {}", l);
        const auto & L = layers_[size_t(l)];
        auto & k_cache = st.k_cache[size_t(l)];
        auto & v_cache = st.v_cache[size_t(l)];

        // attention block
        ops::rmsnorm(x, L.attn_norm.data(), h, T, D, c.rms_eps, nt);
        const ops::row_product qkv[] = {{L.wq, q}, {L.wk, k}, {L.wv, v}};
        st.mm.linear_many(qkv, h, T);
        add_bias(q, L.bq, T);
        add_bias(k, L.bk, T);
        add_bias(v, L.bv, T);
        ops::rope_apply(rope_, st.rope, q, T, c.n_head, hd, nt);
        ops::rope_apply(rope_, st.rope, k, T, c.n_head_kv, hd, nt);
        k_cache.write(pos0, k, T);
        v_cache.write(pos0, v, T);
        // Rows [o, T) go on; all T before the last layer (model::output_rows).
        const int64_t o = l + 1 == c.n_layer ? T - output_rows(T, all_logits, logits) : 0, To = T - o;
        if (To == 0) break; // the cache rows are written: nothing reads this layer's output
        float * xo = x + o * D;   // [To, D]
        ops::attention(ap, q + o * q_dim, To, pos0 + o, k_cache.data(), v_cache.data(), att, st.attn_scratch, nt);
        st.mm.linear(L.wo, att, To, tmp);  // [To, D]
        add_into(xo, tmp, To * D, nt);

        // feed-forward block
        ops::rmsnorm(xo, L.ffn_norm.data(), h, To, D, c.rms_eps, nt);
        swiglu_ffn(st.mm, L.ffn, h, To, tmp, st.ffn);
        add_into(xo, tmp, To * D, nt);
    }

    // After the last layer x holds its output rows at the end: T of them, or the last one.
    if (logits) {
        const int64_t rows = output_rows(T, all_logits, logits);
        head_.logits(st.mm, x + (T - rows) * D, rows, all_logits, c.rms_eps, h, logits);
    }
}

} // namespace

std::shared_ptr<const model> load_llama(std::shared_ptr<const gguf::file> f, arch a, int n_threads,
                                        const load_options & opts) {
    return std::make_shared<llama_model>(std::move(f), a, n_threads, opts);
}

} // namespace frugal
