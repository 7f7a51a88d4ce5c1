#include "models/deepseek2.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "models/common.hpp"
#include "ops/attention.hpp"
#include "ops/matmul.hpp"
#include "ops/moe_router.hpp"
#include "ops/rmsnorm.hpp"
#include "ops/rope.hpp"
#include "ops/swiglu.hpp"
#include "util/buffer.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal {
namespace {

// Largest decompressed K+V the straightforward form builds at a time: it decompresses as many
// heads at once as fit (at least one; at V3's 128 heads and 4096 positions, 43 of them).
constexpr uint64_t k_max_decompressed_bytes = uint64_t(256) << 20;

struct mla_dims {
    int64_t n_head = 0;
    int64_t q_lora = 0;  // 0: plain attn_q (V2-Lite)
    int64_t kv_lora = 0; // latent width (512)
    int64_t nope = 0;    // per-head query/key part without RoPE (128)
    int64_t rope = 0;    // per-head RoPE part, shared by all heads in K (64)
    int64_t v = 0;       // per-head value width (128)
    int64_t qk() const { return nope + rope; }
    int64_t latent() const { return kv_lora + rope; } // a cache row: [c_kv | k_pe]
};

// One head's block of an MLA up-projection, in whichever orientation the file stores it.
struct head_matrix {
    raw_view w;
    bool stored_transposed = false; // w holds [in, out] rows: multiplied with linear_t
    // y[m, ldy] (first `out` columns) = x[m, in] · matrixᵀ
    void apply(ops::matmul_context & mm, const float * x, int64_t m, float * y, int64_t ldy) const {
        if (stored_transposed) mm.linear_t(w, x, m, y, ldy);
        else mm.linear(w, x, m, y, ldy);
    }
};

// A decode step's per-head products y_h = x_h · W^h (rows = 1, h < H, W^h as head_matrix::apply
// takes it) in one parallel region per ops::k_max_row_products heads instead of one per head (16
// heads a layer on V2-Lite, 128 on V3). Blocks stored as [out, in] go through linear_many: each
// head's results are those of its own apply(). Blocks stored [in, out] go through
// linear_t_one_row, which sums in row order where apply()'s linear_t used a GEMM. Returns false,
// having done nothing, for more rows.
template <class Head, class Input, class Output>
bool one_token_heads(ops::matmul_context & mm, int64_t rows, int64_t H, Head head, Input x_of, Output y_of) {
    if (rows != 1 || H <= 0) return false;
    const bool transposed = head(0).stored_transposed; // one orientation for every head
    std::array<ops::row_product, ops::k_max_row_products> p;
    for (int64_t h0 = 0; h0 < H; h0 += int64_t(p.size())) {
        const int64_t n = std::min(int64_t(p.size()), H - h0);
        for (int64_t i = 0; i < n; ++i) p[size_t(i)] = {head(h0 + i).w, y_of(h0 + i), 0, x_of(h0 + i)};
        const std::span group(p.data(), size_t(n));
        if (transposed) mm.linear_t_one_row(group);
        else mm.linear_many(group, nullptr, 1);
    }
    return true;
}

struct moe_weights {
    raw_view router;                    // [E, D] (F32 in converted files)
    std::vector<float> selection_bias;  // [E] exp_probs_b (V3), or empty
    raw_view gate_exps, up_exps;        // [E, ff, D] each, or
    raw_view gate_up_exps;              // [E, 2ff, D]: gate rows then up rows (newer converters)
    raw_view down_exps;                 // [E, D, ff]
    ffn_weights shared;                 // [ff * n_shared] wide; gate.data == nullptr when absent

    ffn_weights expert(int64_t e, int64_t ff) const {
        if (gate_up_exps.data) {
            const raw_view both = gate_up_exps.slice(e);
            return {both.row_range(0, ff), both.row_range(ff, ff), down_exps.slice(e)};
        }
        return {gate_exps.slice(e), up_exps.slice(e), down_exps.slice(e)};
    }
};

struct layer_weights {
    std::vector<float> attn_norm, q_a_norm, kv_a_norm, ffn_norm;
    raw_view wq;          // [H*qk, D] without q_lora, else
    raw_view wq_a, wq_b;  // [q_lora, D], [H*qk, q_lora]
    raw_view wkv_a;       // [kv_lora + rope, D]
    raw_view wk_b, wv_b;  // split files: [H, kv_lora, nope], [H, v, kv_lora]
    raw_view wkv_b;       // legacy files: [H*(nope + v), kv_lora], per head K rows then V rows
    raw_view wo;          // [D, H*v]
    bool is_moe = false;
    ffn_weights dense;
    moe_weights moe;
};

class deepseek2_state final : public model_state {
public:
    deepseek2_state(const mla_dims & d, const model_config & config, int64_t n_ctx, dtype kv_type, int threads)
        : model_state(n_ctx, config, kv_type), mm(threads) {
        for (int64_t l = 0; l < config.n_layer; ++l) latent.emplace_back(kv_type, n_ctx, d.latent());
    }
    ops::matmul_context & matmul() override { return mm; }

    ops::matmul_context mm;
    std::vector<kv_rows> latent; // per layer [n_ctx, kv_lora + rope]: RMS-normed c_kv | roped k_pe
    mla_form form = mla_form::automatic;
    uint64_t max_decompressed_bytes = k_max_decompressed_bytes;
    mla_attention attention_arithmetic = mla_attention::automatic;
    bool bf16_attention() const {
        return attention_arithmetic == mla_attention::bf16 && ops::bf16_products_available();
    }
    // scratch, grown on demand and reused across calls
    std::vector<float> x, h, q, q_a, att, tmp, gather, c, k_pe, fresh, q_abs, o_lat, attn_scratch;
    std::vector<float> router_logits, expert_weights, expert_x, expert_y;
    // A layer's attention decompresses K and V into it, then its MoE writes the experts' slot
    // outputs there or its dense FFN its hidden state (dense_ffn()): one buffer for all three,
    // whose lives never overlap. At V3's shapes, pp512: 84 MB of K and V, 117 MB of slot outputs,
    // 38 MB of hidden state.
    std::vector<float> kv_or_slots;
    std::vector<int32_t> positions, expert_ids, by_expert, expert_start, expert_cursor;
    ffn_scratch ffn;
    ops::rope_table rope;
};

// Columns [col0, col0 + n) of x[rows, ld] as a contiguous [rows, n] block (x itself for one row).
const float * columns(const float * x, int64_t rows, int64_t ld, int64_t col0, int64_t n, std::vector<float> & buf) {
    if (rows == 1) return x + col0;
    float * out = grow(buf, rows * n);
    for (int64_t r = 0; r < rows; ++r) std::copy_n(x + r * ld + col0, n, out + r * n);
    return out;
}

class deepseek2_model final : public model {
public:
    deepseek2_model(std::shared_ptr<const gguf::file> f, int n_threads, const load_options & opts);
    std::unique_ptr<model_state> create_state(int64_t n_ctx, dtype kv_type) const override {
        return std::make_unique<deepseek2_state>(dims_, config_, n_ctx, kv_type, n_threads_);
    }

protected:
    void forward_batch(model_state & state, std::span<const int32_t> tokens, bool all_logits, float * logits,
                       const std::atomic<bool> * cancel) const override;

private:
    void read_rope(const weight_reader & r);
    void attention(const layer_weights & L, deepseek2_state & st, int64_t layer, const float * h, int64_t T,
                   int64_t n_out, float * out) const;
    void moe(const moe_weights & M, deepseek2_state & st, const float * h, int64_t T, float * out) const;
    void dense_ffn(const ffn_weights & w, deepseek2_state & st, const float * h, int64_t T, float * out) const;
    bool moe_one_token(const moe_weights & M, deepseek2_state & st, const float * h, const int32_t * ids,
                       const float * w, float * out) const;
    bool use_absorbed(const deepseek2_state & st, int64_t T, int64_t n_kv) const;
    void decompress(const layer_weights & L, deepseek2_state & st, const float * c, const float * k_pe, int64_t n_kv,
                    int64_t h0, int64_t n_heads, float * K, float * V) const;

    // Per-head blocks of the up-projections W_UK^h (latent -> k_nope) and W_UV^h (latent -> v).
    head_matrix k_up(const layer_weights & L, int64_t h) const;   // c_kv [kv_lora] -> k_nope [nope]
    head_matrix k_up_t(const layer_weights & L, int64_t h) const; // q_nope [nope] -> (W_UK^h)ᵀ q_nope [kv_lora]
    head_matrix v_up(const layer_weights & L, int64_t h) const;   // latent [kv_lora] -> v [v]

    mla_dims dims_;
    bool split_style_ = false; // attn_k_b/attn_v_b (current converter) rather than attn_kv_b
    int64_t n_dense_lead_ = 0;
    int64_t n_ff_exp_ = 0;
    int64_t moe_ffn_width_ = 0; // the widest FFN of a MoE layer (the shared experts'), 0 without MoE layers
    ops::router_config router_;
    ops::rope_params rope_;
    float kq_scale_ = 1.f;
    lm_head head_;
    std::vector<layer_weights> layers_;
};

head_matrix deepseek2_model::k_up(const layer_weights & L, int64_t h) const {
    if (split_style_) return {L.wk_b.slice(h), true};
    return {L.wkv_b.row_range(h * (dims_.nope + dims_.v), dims_.nope), false};
}

head_matrix deepseek2_model::k_up_t(const layer_weights & L, int64_t h) const {
    if (split_style_) return {L.wk_b.slice(h), false};
    return {L.wkv_b.row_range(h * (dims_.nope + dims_.v), dims_.nope), true};
}

head_matrix deepseek2_model::v_up(const layer_weights & L, int64_t h) const {
    if (split_style_) return {L.wv_b.slice(h), false};
    return {L.wkv_b.row_range(h * (dims_.nope + dims_.v) + dims_.nope, dims_.v), false};
}

deepseek2_model::deepseek2_model(std::shared_ptr<const gguf::file> f, int n_threads, const load_options & opts) {
    file_ = std::move(f);
    n_threads_ = n_threads;
    auto & c = config_;
    c.arch = arch::deepseek2;
    c.arch_name = "deepseek2";
    c.name = file_->opt_string("general.name").value_or("");
    const weight_reader r(*file_, "deepseek2.", repack_store(opts), n_threads);
    const std::string & path = file_->path();

    c.n_embd = r.get_int("embedding_length", 1, 1 << 20);
    const int64_t n_blocks = r.get_int("block_count", 1, 4096);
    // MTP (multi-token prediction) blocks come last and are only for speculative decoding: the
    // main model is the first block_count - nextn_predict_layers blocks; the rest is not read.
    const int64_t n_nextn = r.opt_int("nextn_predict_layers", 0, 0, n_blocks - 1);
    c.n_layer = n_blocks - n_nextn;
    c.n_ctx_train = r.opt_int("context_length", 4096, 1, int64_t(1) << 32);
    c.rms_eps = float(r.opt_float("attention.layer_norm_rms_epsilon", 1e-6, 1e-12, 1.0));
    auto & d = dims_;
    d.n_head = r.get_int("attention.head_count", 1, 1 << 14);
    d.kv_lora = r.get_int("attention.kv_lora_rank", 1, 1 << 16);
    d.rope = r.get_int("rope.dimension_count", 2, 1 << 12);
    if (d.rope % 2) throw_error(status::invalid_model, "loader: {}: deepseek2.rope.dimension_count = {} must be even", path, d.rope);

    // File style: the current converter splits kv_b into attn_k_b/attn_v_b and writes the MHA
    // head sizes in *_mla keys (key_length is then the latent row, kv_lora + rope); older files
    // keep HF's kv_b_proj as attn_kv_b with the head sizes in key_length/value_length.
    split_style_ = r.has_tensor("blk.0.attn_k_b.weight");
    if (!split_style_ && !r.has_tensor("blk.0.attn_kv_b.weight"))
        throw_error(status::invalid_model, "loader: {}: blk.0 has neither attn_kv_b nor attn_k_b/attn_v_b", path);
    const bool mla_keys = file_->find("deepseek2.attention.key_length_mla") != nullptr;
    const int64_t qk = mla_keys ? r.get_int("attention.key_length_mla", d.rope + 1, 1 << 14)
                                : r.get_int("attention.key_length", d.rope + 1, 1 << 14);
    d.v = mla_keys ? r.get_int("attention.value_length_mla", 1, 1 << 14) : r.get_int("attention.value_length", 1, 1 << 14);
    d.nope = qk - d.rope;
    if (mla_keys) {
        const int64_t row = r.opt_int("attention.key_length", d.latent(), 1, 1 << 16);
        if (row != d.latent())
            throw_error(status::invalid_model, "loader: {}: deepseek2.attention.key_length = {} but kv_lora_rank + rope = {}",
                        path, row, d.latent());
    }
    // Presence of attn_q means no query compression (V2-Lite); q_lora_rank is then ignored.
    d.q_lora = r.has_tensor("blk.0.attn_q.weight") ? 0 : r.get_int("attention.q_lora_rank", 1, 1 << 16);
    c.n_head = d.n_head;
    c.n_head_kv = 1; // the latent cache is one row per position shared by all heads
    c.head_dim = qk;
    c.n_ff = r.get_int("feed_forward_length", 1, 1 << 22);

    // DeepSeekMoE. Defaults are llama.cpp's for keys older files lack: no leading dense blocks,
    // softmax gating (V2 files predate the key), scale 1, no normalisation, no expert groups.
    n_dense_lead_ = r.opt_int("leading_dense_block_count", 0, 0, c.n_layer);
    if (n_dense_lead_ < c.n_layer) {
        router_.n_expert = r.get_int("expert_count", 1, 1 << 16);
        router_.n_used = r.get_int("expert_used_count", 1, router_.n_expert);
        n_ff_exp_ = r.get_int("expert_feed_forward_length", 1, 1 << 22);
        router_.n_group = r.opt_int("expert_group_count", 1, 0, router_.n_expert);
        router_.n_group_used = r.opt_int("expert_group_used_count", router_.n_group, 0, router_.n_expert);
        if (router_.n_group <= 1) router_.n_group = router_.n_group_used = 1; // 0 means "no groups" too
        const int64_t gating = r.opt_int("expert_gating_func", 0, 0, 2);
        // Where the key is missing, a selection bias marks a V3-style (sigmoid) router: V3 only
        // has exp_probs_b with sigmoid scores (llama.cpp would fall back to softmax there).
        const bool has_bias = r.has_tensor(fmt::format("blk.{}.exp_probs_b.bias", n_dense_lead_));
        router_.gating = gating == 2 || (gating == 0 && has_bias) ? ops::gating_func::sigmoid : ops::gating_func::softmax;
        router_.norm_topk = file_->opt_bool("deepseek2.expert_weights_norm").value_or(false);
        const double scale = r.opt_float("expert_weights_scale", 0.0, 0.0, 1e6);
        router_.scale = scale == 0.0 ? 1.f : float(scale); // llama.cpp: 0 (absent) means unscaled
        try {
            ops::validate(router_);
        } catch (const error & e) {
            throw_error(status::invalid_model, "loader: {}: bad expert routing keys: {}", path, e.what());
        }
        c.n_expert = router_.n_expert;
        c.n_expert_used = router_.n_used;
    }

    read_rope(r);
    tokenizer_ = std::make_unique<frugal::tokenizer>(vocab::from_gguf(*file_));
    head_ = lm_head::load(r, c, tokenizer_->n_vocab());

    const int64_t D = c.n_embd, H = d.n_head;
    const int64_t n_shared = n_dense_lead_ < c.n_layer ? r.get_int("expert_shared_count", 0, 1 << 10) : 0;
    if (n_dense_lead_ < c.n_layer) moe_ffn_width_ = n_ff_exp_ * std::max<int64_t>(n_shared, 1);
    layers_.resize(size_t(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        report_progress(opts, l, c.n_layer);
        auto & L = layers_[size_t(l)];
        const std::string b = fmt::format("blk.{}.", l);
        L.attn_norm = r.vector(b + "attn_norm.weight", D);
        L.ffn_norm = r.vector(b + "ffn_norm.weight", D);
        if (d.q_lora) {
            L.wq_a = r.matrix(b + "attn_q_a.weight", d.q_lora, D);
            L.q_a_norm = r.vector(b + "attn_q_a_norm.weight", d.q_lora);
            L.wq_b = r.matrix(b + "attn_q_b.weight", H * d.qk(), d.q_lora);
        } else {
            L.wq = r.matrix(b + "attn_q.weight", H * d.qk(), D);
        }
        L.wkv_a = r.matrix(b + "attn_kv_a_mqa.weight", d.latent(), D);
        L.kv_a_norm = r.vector(b + "attn_kv_a_norm.weight", d.kv_lora);
        if (split_style_) {
            L.wk_b = r.tensor(b + "attn_k_b.weight", {H, d.kv_lora, d.nope});
            L.wv_b = r.tensor(b + "attn_v_b.weight", {H, d.v, d.kv_lora});
        } else {
            L.wkv_b = r.matrix(b + "attn_kv_b.weight", H * (d.nope + d.v), d.kv_lora);
        }
        L.wo = r.matrix(b + "attn_output.weight", D, H * d.v);
        L.is_moe = l >= n_dense_lead_;
        if (!L.is_moe) {
            L.dense = load_ffn(r, b, "", c.n_ff, D);
            continue;
        }
        auto & M = L.moe;
        const int64_t E = router_.n_expert, ff = n_ff_exp_;
        M.router = r.matrix(b + "ffn_gate_inp.weight", E, D);
        M.selection_bias = r.vector(b + "exp_probs_b.bias", E, false);
        if (r.has_tensor(b + "ffn_gate_up_exps.weight")) {
            M.gate_up_exps = r.tensor(b + "ffn_gate_up_exps.weight", {E, 2 * ff, D});
        } else {
            M.gate_exps = r.tensor(b + "ffn_gate_exps.weight", {E, ff, D});
            M.up_exps = r.tensor(b + "ffn_up_exps.weight", {E, ff, D});
        }
        M.down_exps = r.tensor(b + "ffn_down_exps.weight", {E, D, ff});
        if (n_shared > 0) M.shared = load_ffn(r, b, "_shexp", ff * n_shared, D);
    }
    c.kv_values_per_token = c.n_layer * d.latent();
    finish_load(opts);
    FRUGAL_LOG_INFO("loader: {} (deepseek2, {} MLA tensors): {} layers ({} dense), embd {}, heads {}, q_lora {}, "
                    "kv_lora {}, head k {} + {} / v {}, experts {} (used {}, shared {}, ff {}), vocab {}{}",
                    path, split_style_ ? "split" : "legacy", c.n_layer, n_dense_lead_, D, H, d.q_lora, d.kv_lora,
                    d.nope, d.rope, d.v, router_.n_expert, router_.n_used, n_shared, n_ff_exp_, c.n_vocab,
                    n_nextn ? fmt::format(", {} MTP block(s) skipped", n_nextn) : "");
}

// RoPE on the 64-d part, adjacent pairs (llama.cpp's ROPE_TYPE_NORM for deepseek2), with YaRN as
// llama.cpp sets it up (llama-context.cpp and models/deepseek2.cpp), MODEL-SPEC.md §1.4-1.5.
void deepseek2_model::read_rope(const weight_reader & r) {
    const std::string & path = file_->path();
    rope_.n_rot = dims_.rope;
    rope_.mode = ops::rope_mode::normal;
    rope_.freq_base = float(r.opt_float("rope.freq_base", 10000.0, 1.0, 1e12));
    const float rope_attn_factor = float(r.opt_float("rope.scaling.attn_factor", 1.0, 1e-6, 1e6));
    // GGUF stores yarn_log_multiplier as 0.1 * mscale_all_dim; 0 when absent.
    const float log_mul = float(r.opt_float("rope.scaling.yarn_log_multiplier", 0.0, -10.0, 10.0)) / 0.1f;
    const auto scaling = file_->opt_string("deepseek2.rope.scaling.type").value_or("none");
    rope_.attn_factor = rope_attn_factor;
    if (scaling == "yarn") {
        const double factor = r.opt_float("rope.scaling.factor", 1.0, 1.0, 1e6);
        rope_.freq_scale = float(1.0 / factor);
        rope_.ext_factor = 1.f;
        rope_.n_ctx_orig = r.opt_int("rope.scaling.original_context_length", config_.n_ctx_train, 1, int64_t(1) << 32);
        rope_.beta_fast = float(r.opt_float("rope.scaling.yarn_beta_fast", 32.0, 1e-6, 1e6));
        rope_.beta_slow = float(r.opt_float("rope.scaling.yarn_beta_slow", 1.0, 1e-6, 1e6));
        // cos/sin magnitude: DeepSeek's mscale / mscale_all_dim ratio is 1 (llama.cpp takes
        // mscale = mscale_all_dim for deepseek2); without a log multiplier it is YaRN's usual
        // 1 + 0.1 ln(factor). ggml multiplies by 1 + 0.1 ln(factor) itself, hence the division.
        const float f = float(factor);
        const float ratio = log_mul != 0.f ? 1.f : 1.f + 0.1f * std::log(f);
        rope_.attn_factor = ratio / (1.f + 0.1f * std::log(f)) * rope_attn_factor;
    } else if (scaling != "none") {
        throw_error(status::unsupported_model, "loader: {}: deepseek2.rope.scaling.type '{}' is not supported (yarn, none)",
                    path, scaling);
    }
    // Softmax scale: mscale² / sqrt(qk head size), mscale = 1 + 0.1 mscale_all_dim ln(factor),
    // times the rope attn_factor before ggml's adjustment (llama.cpp's kq_scale).
    const float ln_inv_scale = std::log(1.f / rope_.freq_scale);
    const float attn_factor_org = rope_.attn_factor * (1.f + 0.1f * ln_inv_scale);
    const float mscale = attn_factor_org * (1.f + 0.1f * log_mul * ln_inv_scale);
    kq_scale_ = mscale * mscale / std::sqrt(float(dims_.qk()));
}

bool deepseek2_model::use_absorbed(const deepseek2_state & st, int64_t T, int64_t n_kv) const {
    if (st.form != mla_form::automatic) return st.form == mla_form::absorbed;
    const auto & d = dims_;
    // Multiply-adds of each form: decompressing every position vs. projecting every query and
    // output through the up-projections, plus attention over 192+128 vs 576+512 wide rows.
    const double H = double(d.n_head), R = double(d.kv_lora);
    const double straightforward = double(n_kv) * H * double(d.nope + d.v) * R +
                                   double(T) * double(n_kv) * H * double(d.qk() + d.v);
    const double absorbed = double(T) * H * double(d.nope + d.v) * R + double(T) * double(n_kv) * H * (double(d.latent()) + R);
    return absorbed <= straightforward;
}

// K [n_heads, n_kv, qk] and V [n_heads, n_kv, v], head-major, of heads [h0, h0 + n_heads):
// K_h = [c · (W_UK^h)ᵀ | k_pe], V_h = c · (W_UV^h)ᵀ for the latent rows c [n_kv, R] and the roped
// key k_pe [n_kv, rope] that every head shares. The K blocks and the V blocks go in batches of
// up to k_max_row_products, each of one weight type and orientation: those stored [out, in]
// through linear_many (the q8 path quantizes c once a batch), split files' W_UK^h, stored [in,
// out], through linear_t_many (c rounded to BF16 once a batch where it takes BF16).
void deepseek2_model::decompress(const layer_weights & L, deepseek2_state & st, const float * c, const float * k_pe,
                                 int64_t n_kv, int64_t h0, int64_t n_heads, float * K, float * V) const {
    const auto & d = dims_;
    const int64_t qk = d.qk();
    struct batch {
        std::array<ops::row_product, ops::k_max_row_products> products;
        size_t n = 0;
        bool transposed = false; // stored [in, out]: one orientation for every head
    };
    batch keys, values;
    keys.transposed = k_up(L, h0).stored_transposed;
    values.transposed = v_up(L, h0).stored_transposed;
    const auto flush = [&](batch & b) {
        const std::span products(b.products.data(), b.n);
        if (b.transposed) st.mm.linear_t_many(products, c, n_kv);
        else st.mm.linear_many(products, c, n_kv);
        b.n = 0;
    };
    const auto add = [&](batch & b, const head_matrix & m, float * y, int64_t ldy) {
        b.products[b.n++] = {m.w, y, ldy};
        if (b.n == b.products.size()) flush(b);
    };
    for (int64_t i = 0; i < n_heads; ++i) {
        add(keys, k_up(L, h0 + i), K + i * n_kv * qk, qk);
        add(values, v_up(L, h0 + i), V + i * n_kv * d.v, d.v);
    }
    flush(keys);
    flush(values);
#pragma omp parallel for num_threads(st.mm.n_threads()) schedule(static) if (n_heads * n_kv >= 4096)
    for (int64_t i = 0; i < n_heads; ++i)
        for (int64_t j = 0; j < n_kv; ++j) std::copy_n(k_pe + j * d.rope, d.rope, K + (i * n_kv + j) * qk + d.nope);
}

// Writes the T new latent cache rows, and out[n_out, H*v] = the attention output of every head
// (before attn_output) for the last n_out of the T rows (model::output_rows).
void deepseek2_model::attention(const layer_weights & L, deepseek2_state & st, int64_t layer, const float * h,
                                int64_t T, int64_t n_out, float * out) const {
    const auto & d = dims_;
    const int64_t H = d.n_head, qk = d.qk(), R = d.kv_lora, lat = d.latent();
    const int64_t pos0 = st.n_past(), n_kv = pos0 + T;
    const int64_t o = T - n_out; // first query row attended
    const int nt = st.mm.n_threads();
    auto & mm = st.mm;

    // Queries [T, H, qk], each head [q_nope | q_pe]; RoPE on the q_pe part of every head.
    float * q = grow(st.q, T * H * qk);
    if (d.q_lora) {
        float * qa = grow(st.q_a, T * d.q_lora); // [T, q_lora]
        mm.linear(L.wq_a, h, T, qa);
        ops::rmsnorm(qa, L.q_a_norm.data(), qa, T, d.q_lora, config_.rms_eps, nt);
        mm.linear(L.wq_b, qa, T, q);
    } else {
        mm.linear(L.wq, h, T, q);
    }
    ops::rope_apply(rope_, st.rope, q + d.nope, T, H, qk, nt);

    // The new cache rows [T, R + rope]: RMS-normed latent c_kv, then the roped key part k_pe.
    auto & cache = st.latent[size_t(layer)];
    float * fresh = grow(st.fresh, T * lat);
    mm.linear(L.wkv_a, h, T, fresh);
    for (int64_t t = 0; t < T; ++t) ops::rmsnorm(fresh + t * lat, L.kv_a_norm.data(), fresh + t * lat, 1, R, config_.rms_eps, 1);
    ops::rope_apply(rope_, st.rope, fresh + R, T, 1, lat, nt);
    cache.write(pos0, fresh, T);
    if (n_out == 0) return;
    const float * qo = q + o * H * qk; // [n_out, H, qk]

    if (!use_absorbed(st, n_out, n_kv)) {
        // Straightforward: plain attention over each head's decompressed K and V (decompress()),
        // for as many heads at a time as st.max_decompressed_bytes holds.
        float * c = grow(st.c, n_kv * R); // [n_kv, R]
        cache.read(0, n_kv, 0, R, c);
        float * k_pe = grow(st.k_pe, n_kv * d.rope); // [n_kv, rope]
        cache.read(0, n_kv, R, d.rope, k_pe);
        const uint64_t head_bytes = uint64_t(n_kv) * uint64_t(qk + d.v) * sizeof(float);
        const int64_t fit = int64_t(std::clamp<uint64_t>(st.max_decompressed_bytes / head_bytes, 1, uint64_t(H)));
        const int64_t n_groups = (H + fit - 1) / fit, group = (H + n_groups - 1) / n_groups; // balanced
        float * K = grow(st.kv_or_slots, group * n_kv * (qk + d.v)); // [group, n_kv, qk]
        float * V = K + group * n_kv * qk;                             // [group, n_kv, v]
        for (int64_t h0 = 0; h0 < H; h0 += group) {
            const int64_t n_heads = std::min(group, H - h0);
            decompress(L, st, c, k_pe, n_kv, h0, n_heads, K, V);
            const ops::attention_params p{.n_head = n_heads, .n_head_kv = n_heads, .head_dim = qk, .v_dim = d.v,
                                          .scale = kq_scale_, .k_stride = qk, .v_stride = d.v,
                                          .k_head_stride = n_kv * qk, .v_head_stride = n_kv * d.v,
                                          .q_stride = H * qk, .out_stride = H * d.v,
                                          .bf16_products = st.bf16_attention()};
            ops::attention(p, qo + h0 * qk, n_out, pos0 + o, K, V, out + h0 * d.v, st.attn_scratch, nt);
        }
        return;
    }
    // Absorbed: per head the query becomes [(W_UK^h)ᵀ q_nope | q_pe] [R + rope] and attends
    // over the cache rows as one shared KV head whose value is the latent part; the latent
    // output [R] then goes through W_UV^h.
    float * qa = grow(st.q_abs, n_out * H * lat); // [n_out, H, R + rope]
    const auto k_up_head = [&](int64_t hd) { return k_up_t(L, hd); };
    if (!one_token_heads(mm, n_out, H, k_up_head, [&](int64_t hd) { return qo + hd * qk; },
                         [&](int64_t hd) { return qa + hd * lat; }))
        for (int64_t hd = 0; hd < H; ++hd) {
            const float * q_nope = columns(qo, n_out, H * qk, hd * qk, d.nope, st.gather); // [n_out, nope]
            k_up_t(L, hd).apply(mm, q_nope, n_out, qa + hd * lat, H * lat);
        }
    for (int64_t hd = 0; hd < H; ++hd)
        for (int64_t t = 0; t < n_out; ++t)
            std::copy_n(qo + (t * H + hd) * qk + d.nope, d.rope, qa + (t * H + hd) * lat + R);
    float * o_lat = grow(st.o_lat, n_out * H * R); // [n_out, H, R]
    const ops::attention_params p{.n_head = H, .n_head_kv = 1, .head_dim = lat, .v_dim = R, .scale = kq_scale_,
                                  .k_stride = lat, .v_stride = lat, .kv_type = cache.type(),
                                  .bf16_products = st.bf16_attention()};
    ops::attention(p, qa, n_out, pos0 + o, cache.data(), cache.data(), o_lat, st.attn_scratch, nt);
    const auto v_up_head = [&](int64_t hd) { return v_up(L, hd); };
    if (!one_token_heads(mm, n_out, H, v_up_head, [&](int64_t hd) { return o_lat + hd * R; },
                         [&](int64_t hd) { return out + hd * d.v; }))
        for (int64_t hd = 0; hd < H; ++hd) {
            const float * o_h = columns(o_lat, n_out, H * R, hd * R, R, st.gather); // [n_out, R]
            v_up(L, hd).apply(mm, o_h, n_out, out + hd * d.v, H * d.v);
        }
}

// out[T, D] = Σ_k w_k Expert_k(h) + SharedExperts(h).
namespace {
// out[D] = a token's k weighted expert outputs slots[k, D], summed in slot order.
void sum_slots(const float * slots, int64_t k, int64_t D, float * out) {
    std::copy_n(slots, D, out);
    for (int64_t s = 1; s < k; ++s) add_into(out, slots + s * D, D);
}
} // namespace

void deepseek2_model::moe(const moe_weights & M, deepseek2_state & st, const float * h, int64_t T, float * out) const {
    const int64_t D = config_.n_embd, E = router_.n_expert, k = router_.n_used;
    auto & mm = st.mm;

    float * logits = grow(st.router_logits, T * E); // [T, E]
    mm.linear(M.router, h, T, logits);
    int32_t * ids = grow(st.expert_ids, T * k);      // [T, k]
    float * w = grow(st.expert_weights, T * k);      // [T, k]
    ops::route(router_, logits, M.selection_bias.empty() ? nullptr : M.selection_bias.data(), T, ids, w);
    if (T == 1 && moe_one_token(M, st, h, ids, w, out)) return;

    // Group the (token, slot) pairs by expert so each expert's weights are read once per batch.
    int32_t * start = grow(st.expert_start, E + 1);
    int32_t * order = grow(st.by_expert, T * k);     // slot indices t*k + s, grouped by expert
    std::fill(start, start + E + 1, 0);
    for (int64_t i = 0; i < T * k; ++i) ++start[ids[i] + 1];
    for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
    int32_t * cursor = grow(st.expert_cursor, E);
    std::copy_n(start, E, cursor);
    for (int64_t i = 0; i < T * k; ++i) order[cursor[ids[i]]++] = int32_t(i);

    // Each expert's weighted output goes to its (token, slot) row, so a token's sum below runs in
    // slot order whatever order the experts ran in (llama.cpp sums in slot order too).
    float * slot_out = grow(st.kv_or_slots, T * k * D); // [T, k, D]
    for (int64_t e = 0; e < E; ++e) {
        const int64_t n = start[e + 1] - start[e];
        if (n == 0) continue;
        const int32_t * slots = order + start[e];
        float * xe = grow(st.expert_x, n * D); // [n, D] the tokens routed to e
        for (int64_t i = 0; i < n; ++i) std::copy_n(h + (slots[i] / k) * D, D, xe + i * D);
        float * ye = grow(st.expert_y, n * D);
        swiglu_ffn(mm, M.expert(e, n_ff_exp_), xe, n, ye, st.ffn);
        for (int64_t i = 0; i < n; ++i) {
            const float wi = w[slots[i]];
            float * dst = slot_out + int64_t(slots[i]) * D;
            for (int64_t j = 0; j < D; ++j) dst[j] = ye[i * D + j] * wi;
        }
    }
    for (int64_t t = 0; t < T; ++t) sum_slots(slot_out + t * k * D, k, D, out + t * D);
    if (M.shared.gate.data) {
        float * shared = grow(st.expert_y, T * D);
        swiglu_ffn(mm, M.shared, h, T, shared, st.ffn);
        add_into(out, shared, T * D, mm.n_threads());
    }
}

// moe() for one token (a decode step): the gate and up products of its k routed experts and of
// the shared experts in one parallel region, their down products in a second (ops::
// matmul_rows_many), where an FFN per expert took 2k + 2 (14 a layer on V2-Lite). Each product,
// SwiGLU and the sums in slot order are moe()'s own, so the results are bit for bit the same.
// Returns false, having done nothing, when the products exceed one call's limit.
bool deepseek2_model::moe_one_token(const moe_weights & M, deepseek2_state & st, const float * h,
                                    const int32_t * ids, const float * w, float * out) const {
    const int64_t D = config_.n_embd, k = router_.n_used, ff = n_ff_exp_;
    const bool shared = M.shared.gate.data != nullptr;
    const int64_t n_ffn = k + (shared ? 1 : 0); // slot s < k: expert ids[s]; slot k: the shared ones
    if (2 * n_ffn > int64_t(ops::k_max_row_products)) return false;
    const auto ffn_of = [&](int64_t s) { return s < k ? M.expert(ids[s], ff) : M.shared; };
    const int64_t hidden = k * ff + (shared ? M.shared.n_ff() : 0);
    float * gate = grow(st.ffn.gate, hidden); // slot s's hidden state at s * ff, then silu(gate) · up
    float * up = grow(st.ffn.up, hidden);
    float * slot_out = grow(st.kv_or_slots, n_ffn * D); // [n_ffn, D]
    std::array<ops::row_product, ops::k_max_row_products> p;
    for (int64_t s = 0; s < n_ffn; ++s) {
        const ffn_weights f = ffn_of(s);
        p[size_t(2 * s)] = {f.gate, gate + s * ff};
        p[size_t(2 * s + 1)] = {f.up, up + s * ff};
    }
    st.mm.linear_many(std::span(p.data(), size_t(2 * n_ffn)), h, 1);
    for (int64_t s = 0; s < n_ffn; ++s) {
        const ffn_weights f = ffn_of(s);
        ops::swiglu(gate + s * ff, up + s * ff, gate + s * ff, f.n_ff(), st.mm.n_threads());
        p[size_t(s)] = {f.down, slot_out + s * D, 0, gate + s * ff};
    }
    st.mm.linear_many(std::span(p.data(), size_t(n_ffn)), nullptr, 1);
    for (int64_t s = 0; s < k; ++s)
        for (int64_t j = 0; j < D; ++j) slot_out[s * D + j] *= w[s];
    sum_slots(slot_out, k, D, out);
    if (shared) add_into(out, slot_out + k * D, D);
    return true;
}

// A dense lead layer's FFN within the memory the MoE layers take anyway: its hidden state
// [T, n_ff] in kv_or_slots, free between the layer's attention and its FFN, and its up
// projection in column blocks no wider than the shared experts' [T, n_ff_shexp]. V2-Lite, pp512:
// 45 MB of [T, 10944] gate and up scratch no longer beside the 25 MB of slot outputs.
void deepseek2_model::dense_ffn(const ffn_weights & w, deepseek2_state & st, const float * h, int64_t T,
                                float * out) const {
    if (moe_ffn_width_ == 0) return swiglu_ffn(st.mm, w, h, T, out, st.ffn);
    st.ffn.up_block_bytes = T * moe_ffn_width_ * int64_t(sizeof(float));
    std::swap(st.ffn.gate, st.kv_or_slots);
    swiglu_ffn(st.mm, w, h, T, out, st.ffn);
    std::swap(st.ffn.gate, st.kv_or_slots);
}

void deepseek2_model::forward_batch(model_state & base, std::span<const int32_t> tokens, bool all_logits,
                                    float * logits, const std::atomic<bool> * cancel) const {
    auto & st = static_cast<deepseek2_state &>(base);
    const auto & c = config_;
    const int64_t T = int64_t(tokens.size());
    const int64_t D = c.n_embd;
    const int nt = st.mm.n_threads();

    float * x = grow(st.x, T * D);                         // [T, D] residual stream
    float * h = grow(st.h, T * D);                         // [T, D] normed input of a sub-block
    float * att = grow(st.att, T * dims_.n_head * dims_.v); // [T, H, v]
    float * tmp = grow(st.tmp, T * D);
    embed_tokens(head_.token_embd, tokens.data(), T, x);

    int32_t * pos = grow(st.positions, T);
    for (int64_t t = 0; t < T; ++t) pos[t] = int32_t(st.n_past() + t);
    st.rope.build(rope_, pos, T);

    for (int64_t l = 0; l < c.n_layer; ++l) {
        if (cancel && cancel->load(std::memory_order_relaxed))
            throw_error(status::cancelled, "forward: cancelled at layer {}", l);
        const auto & L = layers_[size_t(l)];
        // Rows [o, T) go on; all T before the last layer (model::output_rows).
        const int64_t o = l + 1 == c.n_layer ? T - output_rows(T, all_logits, logits) : 0, To = T - o;
        ops::rmsnorm(x, L.attn_norm.data(), h, T, D, c.rms_eps, nt);
        attention(L, st, l, h, T, To, att); // att [To, H*v]
        if (To == 0) break; // the cache rows are written: nothing reads this layer's output
        float * xo = x + o * D;  // [To, D]
        st.mm.linear(L.wo, att, To, tmp);
        add_into(xo, tmp, To * D, nt);

        ops::rmsnorm(xo, L.ffn_norm.data(), h, To, D, c.rms_eps, nt);
        if (L.is_moe) moe(L.moe, st, h, To, tmp);
        else dense_ffn(L.dense, st, h, To, tmp);
        add_into(xo, tmp, To * D, nt);
    }
    // After the last layer x holds its output rows at the end: T of them, or the last one.
    if (logits) {
        const int64_t rows = output_rows(T, all_logits, logits);
        head_.logits(st.mm, x + (T - rows) * D, rows, all_logits, c.rms_eps, h, logits);
    }
}

} // namespace

std::shared_ptr<const model> load_deepseek2(std::shared_ptr<const gguf::file> f, int n_threads,
                                            const load_options & opts) {
    return std::make_shared<deepseek2_model>(std::move(f), n_threads, opts);
}

namespace {
// The deepseek2 state behind a session's state; `setter` names the caller in the error for a
// state of another architecture.
deepseek2_state & mla_state(model_state & state, const char * setter) {
    auto * st = dynamic_cast<deepseek2_state *>(&state);
    if (!st) throw_error(status::invalid_argument, "{}: the session's model is not deepseek2", setter);
    return *st;
}
} // namespace

void set_mla_form(model_state & state, mla_form form) { mla_state(state, "set_mla_form").form = form; }

void set_mla_attention(model_state & state, mla_attention arithmetic) {
    mla_state(state, "set_mla_attention").attention_arithmetic = arithmetic;
}

bool mla_attention_bf16(const model_state & state) {
    const auto * st = dynamic_cast<const deepseek2_state *>(&state);
    return st && st->bf16_attention();
}

void set_mla_decompressed_bytes(model_state & state, uint64_t bytes) {
    mla_state(state, "set_mla_decompressed_bytes").max_decompressed_bytes = bytes;
}

} // namespace frugal
