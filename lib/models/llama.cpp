#include "models/llama.hpp"

#include <unistd.h>

#include <cmath>

#include "frugal/tensor.hpp"
#include "ops/attention.hpp"
#include "ops/matmul.hpp"
#include "ops/quant.hpp"
#include "ops/rmsnorm.hpp"
#include "ops/rope.hpp"
#include "ops/swiglu.hpp"
#include "util/buffer.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal {
namespace {

struct layer_weights {
    std::vector<float> attn_norm, ffn_norm;    // [n_embd]
    raw_view wq, wk, wv, wo;                    // [n_head*hd, n_embd], [n_kv*hd, n_embd] x2, [n_embd, n_head*hd]
    std::vector<float> bq, bk, bv;              // qwen2 only
    raw_view w_gate, w_up, w_down;              // [n_ff, n_embd] x2, [n_embd, n_ff]
};

// A KV cache larger than the machine's memory would only end in the OOM killer once filled.
void check_kv_fits(uint64_t bytes, int64_t n_ctx) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return;
    const uint64_t physical = uint64_t(pages) * uint64_t(page);
    if (bytes > physical)
        throw_error(status::out_of_memory,
                    "session: a KV cache for {} positions needs {:.1f} GiB, more than this machine's {:.1f} GiB of memory",
                    n_ctx, double(bytes) / double(1ull << 30), double(physical) / double(1ull << 30));
}

class llama_state final : public model_state {
public:
    llama_state(const model_config & c, int64_t n_ctx, int threads)
        : model_state(n_ctx), mm(threads) {
        const int64_t kv_row = c.n_head_kv * c.head_dim;
        kv_bytes_ = uint64_t(c.n_layer) * 2 * uint64_t(n_ctx) * uint64_t(kv_row) * sizeof(float);
        check_kv_fits(kv_bytes_, n_ctx);
        // Not zero-filled: pages are touched as positions are used, so a large context costs
        // memory only as it fills, and positions past n_past are never read.
        k_cache.resize(size_t(c.n_layer));
        v_cache.resize(size_t(c.n_layer));
        for (int64_t l = 0; l < c.n_layer; ++l) {
            k_cache[size_t(l)].resize(shape{n_ctx, kv_row});
            v_cache[size_t(l)].resize(shape{n_ctx, kv_row});
        }
    }
    uint64_t kv_bytes() const override { return kv_bytes_; }
    void set_n_threads(int n) override { mm.set_n_threads(n); }

    ops::matmul_context mm;
    std::vector<tensor<float>> k_cache, v_cache; // per layer [n_ctx, n_head_kv * head_dim]
    // scratch, grown on demand and reused across calls
    std::vector<float> x, h, q, att, tmp, gate, up, attn_scratch;
    std::vector<int32_t> positions;
    ops::rope_table rope;

private:
    uint64_t kv_bytes_;
};

class llama_model final : public model {
public:
    llama_model(std::shared_ptr<const gguf::file> f, arch a, int n_threads, const load_options & opts);
    std::unique_ptr<model_state> create_state(int64_t n_ctx) const override {
        return std::make_unique<llama_state>(config_, n_ctx, n_threads_);
    }

protected:
    void forward_batch(model_state & state, std::span<const int32_t> tokens, bool all_logits, float * logits,
                       const std::atomic<bool> * cancel) const override;

private:
    raw_view load_matrix(const std::string & name, int64_t rows, int64_t cols) const;
    std::vector<float> load_vector(const std::string & name, int64_t n, bool required = true) const;

    ops::rope_params rope_;
    std::vector<float> rope_freqs_;
    raw_view token_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<layer_weights> layers_;
};

raw_view llama_model::load_matrix(const std::string & name, int64_t rows, int64_t cols) const {
    const raw_view v = file_->tensor(name);
    if (!(v.shape == shape{rows, cols}))
        throw_error(status::invalid_model, "loader: {}: bad shape {}, want {}", name, v.shape.str(),
                    shape{rows, cols}.str());
    return v;
}

std::vector<float> llama_model::load_vector(const std::string & name, int64_t n, bool required) const {
    if (!required && !file_->find_tensor(name)) return {};
    const raw_view v = file_->tensor(name);
    if (v.shape.numel() != n || v.shape.rank != 1)
        throw_error(status::invalid_model, "loader: {}: bad shape {}, want [{}]", name, v.shape.str(), n);
    std::vector<float> out(static_cast<size_t>(n));
    ops::dequantize_row(v.type, v.data, out.data(), n);
    return out;
}

llama_model::llama_model(std::shared_ptr<const gguf::file> f, arch a, int n_threads, const load_options & opts) {
    file_ = std::move(f);
    n_threads_ = n_threads;
    auto & c = config_;
    c.arch = a;
    c.arch_name = file_->get_string("general.architecture");
    c.name = file_->opt_string("general.name").value_or("");
    const std::string p = c.arch_name + ".";
    c.n_embd = file_->get_int(p + "embedding_length");
    c.n_layer = file_->get_int(p + "block_count");
    c.n_head = file_->get_int(p + "attention.head_count");
    c.n_head_kv = file_->opt_int(p + "attention.head_count_kv").value_or(c.n_head);
    c.n_ff = file_->get_int(p + "feed_forward_length");
    c.n_ctx_train = file_->opt_int(p + "context_length").value_or(2048);
    c.rms_eps = float(file_->opt_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
    auto positive = [&](std::string_view key, int64_t v, int64_t max) {
        if (v <= 0 || v > max) throw_error(status::invalid_model, "loader: {}{} = {} is out of range [1, {}]", p, key, v, max);
    };
    positive("embedding_length", c.n_embd, 1 << 20);
    positive("block_count", c.n_layer, 4096);
    positive("attention.head_count", c.n_head, 1 << 14);
    positive("attention.head_count_kv", c.n_head_kv, c.n_head);
    positive("feed_forward_length", c.n_ff, 1 << 22);
    if (c.n_ctx_train <= 0) // sessions default to it, so it must be usable
        throw_error(status::invalid_model, "loader: {}context_length = {} must be positive", p, c.n_ctx_train);
    if (c.n_embd % c.n_head != 0 || c.n_head % c.n_head_kv != 0)
        throw_error(status::invalid_model, "loader: {} heads / {} kv heads do not divide embedding {}", c.n_head,
                    c.n_head_kv, c.n_embd);
    c.head_dim = file_->opt_int(p + "attention.key_length").value_or(c.n_embd / c.n_head);
    positive("attention.key_length", c.head_dim, 1 << 14);

    tokenizer_ = std::make_unique<frugal::tokenizer>(vocab::from_gguf(*file_));

    rope_.n_rot = file_->opt_int(p + "rope.dimension_count").value_or(c.head_dim);
    if (rope_.n_rot <= 0 || rope_.n_rot > c.head_dim || rope_.n_rot % 2)
        throw_error(status::invalid_model, "loader: {}rope.dimension_count = {} must be even and <= head size {}", p,
                    rope_.n_rot, c.head_dim);
    rope_.freq_base = float(file_->opt_float(p + "rope.freq_base").value_or(10000.0));
    const auto scaling = file_->opt_string(p + "rope.scaling.type").value_or("none");
    if (scaling == "linear") {
        const double factor = file_->opt_float(p + "rope.scaling.factor").value_or(1.0);
        if (!(factor > 0)) throw_error(status::invalid_model, "loader: {}rope.scaling.factor = {} must be > 0", p, factor);
        rope_.freq_scale = float(1.0 / factor);
    } else if (scaling != "none") {
        throw_error(status::unsupported_model, "loader: {}rope.scaling.type '{}' is not supported for {}", p, scaling,
                    c.arch_name);
    }
    // llama: adjacent pairs (the converter permuted Q/K rows back to Meta's layout); qwen2: NeoX.
    rope_.mode = a == arch::qwen2 ? ops::rope_mode::neox : ops::rope_mode::normal;
    if (file_->find_tensor("rope_freqs.weight")) {
        rope_freqs_ = load_vector("rope_freqs.weight", rope_.n_rot / 2);
        rope_.freq_factors = rope_freqs_.data();
    }

    const int64_t hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd;
    token_embd_ = file_->tensor("token_embd.weight");
    if (token_embd_.shape.rank != 2 || token_embd_.shape[1] != c.n_embd)
        throw_error(status::invalid_model, "loader: token_embd.weight: bad shape {}, want [n_vocab, {}]",
                    token_embd_.shape.str(), c.n_embd);
    c.n_vocab = token_embd_.shape[0];
    if (c.n_vocab != tokenizer_->n_vocab())
        throw_error(status::invalid_model, "loader: token_embd.weight has {} rows but the vocabulary has {} tokens",
                    c.n_vocab, tokenizer_->n_vocab());
    output_norm_ = load_vector("output_norm.weight", c.n_embd);
    output_ = file_->find_tensor("output.weight") ? load_matrix("output.weight", c.n_vocab, c.n_embd) : token_embd_;

    layers_.resize(size_t(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        if (opts.progress && !opts.progress(float(l) / float(c.n_layer)))
            throw_error(status::cancelled, "loader: cancelled by the progress callback at layer {}", l);
        auto & L = layers_[size_t(l)];
        const std::string b = fmt::format("blk.{}.", l);
        L.attn_norm = load_vector(b + "attn_norm.weight", c.n_embd);
        L.ffn_norm = load_vector(b + "ffn_norm.weight", c.n_embd);
        L.wq = load_matrix(b + "attn_q.weight", q_dim, c.n_embd);
        L.wk = load_matrix(b + "attn_k.weight", kv_dim, c.n_embd);
        L.wv = load_matrix(b + "attn_v.weight", kv_dim, c.n_embd);
        L.wo = load_matrix(b + "attn_output.weight", c.n_embd, q_dim);
        const bool bias_required = a == arch::qwen2;
        L.bq = load_vector(b + "attn_q.bias", q_dim, bias_required);
        L.bk = load_vector(b + "attn_k.bias", kv_dim, bias_required);
        L.bv = load_vector(b + "attn_v.bias", kv_dim, bias_required);
        L.w_gate = load_matrix(b + "ffn_gate.weight", c.n_ff, c.n_embd);
        L.w_up = load_matrix(b + "ffn_up.weight", c.n_ff, c.n_embd);
        L.w_down = load_matrix(b + "ffn_down.weight", c.n_embd, c.n_ff);
    }
    for (const auto & t : file_->tensors()) {
        c.n_params += t.shape().numel();
        c.weight_bytes += t.n_bytes;
    }
    if (opts.progress && !opts.progress(1.f))
        throw_error(status::cancelled, "loader: cancelled by the progress callback at the end of the load");
    FRUGAL_LOG_INFO("loader: {} ({}): {} layers, embd {}, heads {}/{}, ff {}, vocab {}", file_->path(), c.arch_name,
                    c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab);
}

void add_bias(float * x, const std::vector<float> & b, int64_t rows) {
    if (b.empty()) return;
    const auto n = int64_t(b.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i) x[r * n + i] += b[size_t(i)];
}

void add_into(float * x, const float * y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
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
    float * att = grow(st.att, T * q_dim);
    float * tmp = grow(st.tmp, T * D);
    float * gate = grow(st.gate, T * c.n_ff);  // [T, n_ff]
    float * up = grow(st.up, T * c.n_ff);

    for (int64_t t = 0; t < T; ++t) ops::dequantize_row(token_embd_.type, token_embd_.row(tokens[size_t(t)]), x + t * D, D);

    int32_t * pos = grow(st.positions, T);
    for (int64_t t = 0; t < T; ++t) pos[t] = int32_t(pos0 + t);
    st.rope.build(rope_, pos, T);

    const ops::attention_params ap{c.n_head, c.n_head_kv, hd, hd, float(1.0 / std::sqrt(double(hd)))};
    for (int64_t l = 0; l < c.n_layer; ++l) {
        if (cancel && cancel->load(std::memory_order_relaxed))
            throw_error(status::cancelled, "forward: cancelled at layer {}", l);
        const auto & L = layers_[size_t(l)];
        float * k_new = st.k_cache[size_t(l)].data() + pos0 * kv_dim; // [T, n_head_kv, hd] cache rows
        float * v_new = st.v_cache[size_t(l)].data() + pos0 * kv_dim;

        // attention block
        ops::rmsnorm(x, L.attn_norm.data(), h, T, D, c.rms_eps, nt);
        st.mm.linear(L.wq, h, T, q);
        st.mm.linear(L.wk, h, T, k_new);
        st.mm.linear(L.wv, h, T, v_new);
        add_bias(q, L.bq, T);
        add_bias(k_new, L.bk, T);
        add_bias(v_new, L.bv, T);
        ops::rope_apply(rope_, st.rope, q, T, c.n_head, hd, nt);
        ops::rope_apply(rope_, st.rope, k_new, T, c.n_head_kv, hd, nt);
        ops::attention(ap, q, T, pos0, st.k_cache[size_t(l)].data(), st.v_cache[size_t(l)].data(), att,
                       st.attn_scratch, nt);
        st.mm.linear(L.wo, att, T, tmp);  // [T, D]
        add_into(x, tmp, T * D);

        // feed-forward block
        ops::rmsnorm(x, L.ffn_norm.data(), h, T, D, c.rms_eps, nt);
        st.mm.linear(L.w_gate, h, T, gate);
        st.mm.linear(L.w_up, h, T, up);
        ops::swiglu(gate, up, gate, T * c.n_ff, nt);
        st.mm.linear(L.w_down, gate, T, tmp);
        add_into(x, tmp, T * D);
    }

    if (!logits) return;
    // Only the rows whose logits are wanted go through the output layer.
    const int64_t first = all_logits ? 0 : T - 1;
    const int64_t rows = T - first;
    ops::rmsnorm(x + first * D, output_norm_.data(), h, rows, D, c.rms_eps, nt);
    st.mm.linear(output_, h, rows, logits);
}

} // namespace

std::shared_ptr<const model> load_llama(std::shared_ptr<const gguf::file> f, arch a, int n_threads,
                                        const load_options & opts) {
    return std::make_shared<llama_model>(std::move(f), a, n_threads, opts);
}

} // namespace frugal
