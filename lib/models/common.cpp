#include "models/common.hpp"

#include <algorithm>

#include "ops/quant.hpp"
#include "ops/rmsnorm.hpp"
#include "ops/swiglu.hpp"
#include "util/buffer.hpp"
#include "util/cpu.hpp"
#include "util/error.hpp"
#include "util/profile.hpp"

namespace frugal {

weight_reader::weight_reader(const gguf::file & f, std::string arch_prefix, repacked_weights * repacked, int n_threads)
    : f_(f), prefix_(std::move(arch_prefix)), repacked_(repacked), n_threads_(n_threads) {
    // Otherwise the first prompts fault the pages in as they touch them, and a MoE model's prompts
    // touch new experts for a long while: deepseek2-lite6's pp4-pp16 against llama.cpp (which maps
    // the whole file at load) 1.1-1.7x lazily, 1.6-1.8x prefaulted; the 1.5B F16's load 0.10 ->
    // 0.20-0.29 s (llama.cpp's 0.44). A file larger than memory is left to page as it is read.
    const uint64_t memory = physical_memory_bytes();
    prefault_ = f.mapped() && (memory == 0 || f.file_size() <= memory);
}

int64_t weight_reader::get_int(std::string_view key, int64_t lo, int64_t hi) const {
    const std::string full = prefix_ + std::string(key);
    const int64_t v = f_.get_int(full);
    if (v < lo || v > hi)
        throw_error(status::invalid_model, "loader: {}: {} = {} is out of range [{}, {}]", f_.path(), full, v, lo, hi);
    return v;
}

int64_t weight_reader::opt_int(std::string_view key, int64_t fallback, int64_t lo, int64_t hi) const {
    if (!f_.find(prefix_ + std::string(key))) return fallback;
    return get_int(key, lo, hi);
}

double weight_reader::opt_float(std::string_view key, double fallback, double lo, double hi) const {
    const std::string full = prefix_ + std::string(key);
    const double v = f_.opt_float(full).value_or(fallback);
    if (!(v >= lo && v <= hi))
        throw_error(status::invalid_model, "loader: {}: {} = {} is out of range [{}, {}]", f_.path(), full, v, lo, hi);
    return v;
}

raw_view weight_reader::tensor(const std::string & name, frugal::shape want) const {
    const raw_view v = f_.tensor(name);
    if (!(v.shape == want))
        throw_error(status::invalid_model, "loader: {}: {}: bad shape {}, want {}", f_.path(), name, v.shape.str(),
                    want.str());
    const raw_view taken = repacked_ && v.shape.rank >= 2 ? repacked_->adopt(f_, v, n_threads_) : v;
    if (prefault_ && taken.data == v.data) f_.prefault({v.data, size_t(v.n_bytes())}, n_threads_);
    return taken;
}

std::vector<float> weight_reader::vector(const std::string & name, int64_t n, bool required) const {
    if (!required && !f_.find_tensor(name)) return {};
    const raw_view v = f_.tensor(name);
    if (v.shape.numel() != n || v.shape.rank != 1)
        throw_error(status::invalid_model, "loader: {}: {}: bad shape {}, want [{}]", f_.path(), name, v.shape.str(), n);
    std::vector<float> out(static_cast<size_t>(n));
    ops::dequantize_row(v.type, v.data, out.data(), n);
    return out;
}

void swiglu_ffn(ops::matmul_context & mm, const ffn_weights & w, const float * x, int64_t m, float * out,
                ffn_scratch & s) {
    const int64_t n_ff = w.n_ff();
    float * gate = grow(s.gate, m * n_ff); // [m, n_ff], then the hidden state silu(gate) · up
    if (m < mm.gemm_from(w.gate.type)) { // decode: gate and up in one pass over the weights' rows
        float * up = grow(s.up, m * n_ff); // [m, n_ff]
        const ops::row_product gate_up[] = {{w.gate, gate}, {w.up, up}};
        mm.linear_many(gate_up, x, m);
        ops::swiglu(gate, up, gate, m * n_ff, mm.n_threads());
    } else { // prefill: gate and up a block of columns at a time (ffn_scratch::up_block_bytes
             // bounds the up scratch; by default a prompt batch takes one block)
        const int64_t bytes = m * n_ff * int64_t(sizeof(float)), most = std::max<int64_t>(s.up_block_bytes, 1);
        const int64_t blocks = (bytes + most - 1) / most;
        const int64_t cols = (n_ff / blocks + 15) / 16 * 16; // even blocks, whole q8 chunks
        float * up = grow(s.up, m * cols); // [m, cols]
        for (int64_t j0 = 0; j0 < n_ff; j0 += cols) {
            const int64_t nc = std::min(cols, n_ff - j0);
            const ops::row_product gate_up[] = {{w.gate.row_range(j0, nc), gate + j0, n_ff},
                                                {w.up.row_range(j0, nc), up, nc}}; // one conversion of x (q8)
            mm.linear_many(gate_up, x, m);
            ops::swiglu_rows(gate + j0, n_ff, up, nc, gate + j0, n_ff, m, nc, mm.n_threads());
        }
    }
    mm.linear_consuming(w.down, gate, m, out); // [m, D]
}

ffn_weights load_ffn(const weight_reader & r, const std::string & block, const std::string & suffix, int64_t n_ff,
                     int64_t n_embd) {
    return {r.matrix(block + "ffn_gate" + suffix + ".weight", n_ff, n_embd),
            r.matrix(block + "ffn_up" + suffix + ".weight", n_ff, n_embd),
            r.matrix(block + "ffn_down" + suffix + ".weight", n_embd, n_ff)};
}

void embed_tokens(const raw_view & table, const int32_t * tokens, int64_t n, float * x) {
    const profile::scope timed(profile::op::embed);
    const int64_t D = table.row_size();
    for (int64_t t = 0; t < n; ++t) ops::dequantize_row(table.type, table.row(tokens[t]), x + t * D, D);
}

lm_head lm_head::load(const weight_reader & r, model_config & c, int64_t tokenizer_vocab) {
    lm_head head;
    head.token_embd = r.file().tensor("token_embd.weight");
    const auto & s = head.token_embd.shape;
    if (s.rank != 2 || s[1] != c.n_embd)
        throw_error(status::invalid_model, "loader: {}: token_embd.weight: bad shape {}, want [n_vocab, {}]",
                    r.file().path(), s.str(), c.n_embd);
    c.n_vocab = s[0];
    if (c.n_vocab != tokenizer_vocab)
        throw_error(status::invalid_model, "loader: {}: token_embd.weight has {} rows but the vocabulary has {} tokens",
                    r.file().path(), c.n_vocab, tokenizer_vocab);
    head.output_norm = r.vector("output_norm.weight", c.n_embd);
    if (r.has_tensor("output.weight"))
        head.output = r.matrix("output.weight", c.n_vocab, c.n_embd);
    else // tied: read in full every token like any matrix, so taken as one (and maybe repacked)
        head.output = head.token_embd = r.matrix("token_embd.weight", c.n_vocab, c.n_embd);
    return head;
}

void lm_head::logits(ops::matmul_context & mm, const float * x, int64_t T, bool all_rows, float rms_eps, float * h,
                     float * out) const {
    // Only the rows whose logits are wanted go through the output layer.
    const int64_t D = token_embd.row_size();
    const int64_t first = all_rows ? 0 : T - 1;
    const int64_t rows = T - first;
    ops::rmsnorm(x + first * D, output_norm.data(), h, rows, D, rms_eps, mm.n_threads());
    mm.linear(output, h, rows, out);
}

void add_into(float * x, const float * y, int64_t n, int n_threads) {
    const profile::scope timed(profile::op::residual);
    constexpr int64_t k_parallel_from = 1 << 16; // floats
#pragma omp parallel for simd num_threads(n_threads) schedule(static) if (n >= k_parallel_from)
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

} // namespace frugal
