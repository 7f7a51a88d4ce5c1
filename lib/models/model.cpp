#include "models/model.hpp"

#include <algorithm>

#include "models/deepseek2.hpp"
#include "models/llama.hpp"
#include "util/cpu.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace frugal {

model_state::model_state(int64_t n_ctx, const model_config & c, dtype kv_type)
    : n_ctx_(n_ctx), kv_type_(kv_type), kv_bytes_per_token_(c.kv_bytes_per_token(kv_type)) {
    require_kv_type(kv_type);
    const uint64_t physical = physical_memory_bytes();
    if (physical > 0 && kv_bytes() > physical)
        throw_error(status::out_of_memory,
                    "session: a KV cache ({}) for {} positions needs {:.1f} GiB, more than this machine's {:.1f} GiB of memory",
                    dtype_name(kv_type), n_ctx, double(kv_bytes()) / double(1ull << 30),
                    double(physical) / double(1ull << 30));
}

void model::forward(model_state & state, std::span<const int32_t> tokens, bool all_logits, float * logits,
                    const std::atomic<bool> * cancel) const {
    if (tokens.empty()) throw_error(status::invalid_argument, "forward: no tokens to evaluate");
    if (int64_t(tokens.size()) > state.n_ctx() - state.n_past())
        throw_error(status::context_full, "context full: {} tokens do not fit, {} of {} positions used",
                    tokens.size(), state.n_past(), state.n_ctx());
    for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || tokens[i] >= config_.n_vocab)
            throw_error(status::invalid_argument, "forward: token id {} at index {} is outside [0, {})", tokens[i], i,
                        config_.n_vocab);
    // Long prompts go through in batches of max_batch(); a cancel mid-way rewinds to the start.
    const int64_t start = state.n_past_;
    const auto batch = size_t(max_batch());
    try {
        for (size_t off = 0; off < tokens.size(); off += batch) {
            const size_t n = std::min(tokens.size() - off, batch);
            const bool last = off + n == tokens.size();
            float * out = all_logits ? logits + off * size_t(config_.n_vocab) : (last ? logits : nullptr);
            forward_batch(state, tokens.subspan(off, n), all_logits, out, cancel);
            state.n_past_ += int64_t(n);
        }
    } catch (...) {
        state.n_past_ = start;
        throw;
    }
}

void model::report_progress(const load_options & opts, int64_t layer, int64_t n_layer) {
    if (opts.progress && !opts.progress(float(layer) / float(n_layer)))
        throw_error(status::cancelled, "loader: cancelled by the progress callback at layer {}", layer);
}

repacked_weights * model::repack_store(const load_options & opts) {
    repacked_.set_policy(opts.repack_weights);
    return &repacked_;
}

void model::finish_load(const load_options & opts) {
    bool tied_output = true;
    for (const auto & t : file_->tensors()) {
        config_.n_params += t.shape().numel();
        config_.weight_bytes += t.n_bytes;
        if (t.name == "output.weight") tied_output = false;
    }
    for (const auto & t : file_->tensors()) {
        const bool expert = t.name.find("_exps.") != std::string::npos && config_.n_expert > 0;
        uint64_t bytes = t.n_bytes;
        if (t.name == "token_embd.weight" && !tied_output) bytes /= uint64_t(std::max<int64_t>(1, t.shape().rows()));
        else if (expert) bytes = bytes * uint64_t(config_.n_expert_used) / uint64_t(config_.n_expert);
        config_.decode_bytes_per_token += bytes;
        if (t.type && t.shape().rank >= 2 && t.name != "token_embd.weight" && t.name != "output.weight")
            config_.prefill_macs_by_type[*t.type] +=
                expert ? t.shape().numel() / config_.n_expert * config_.n_expert_used : t.shape().numel();
    }
    config_.repacked_bytes = repacked_.bytes();
    config_.repack_skipped_bytes = repacked_.skipped_bytes();
    if (config_.repack_skipped_bytes > 0)
        FRUGAL_LOG_INFO("loader: {:.0f} MiB of weights left as mapped, past the repacking budget",
                        double(config_.repack_skipped_bytes) / double(1 << 20));
    if (opts.progress && !opts.progress(1.f))
        throw_error(status::cancelled, "loader: cancelled by the progress callback at the end of the load");
}

std::shared_ptr<const model> load_model(const std::string & path, const load_options & opts) {
    auto f = gguf::file::open(path, opts.use_mmap);
    // One shard of a split model (llama.cpp's gguf-split: `…-00001-of-00005.gguf`, how DeepSeek-V3
    // and R1 files are published) holds only part of the tensors: say so rather than fail later on
    // whichever tensor is missing.
    if (const auto shards = f->opt_int("split.count"); shards && *shards > 1)
        throw_error(status::unsupported_model,
                    "loader: {}: shard {} of a model split into {} files (split.count); frugal loads single "
                    "files: merge the shards first (llama.cpp's llama-gguf-split --merge)",
                    path, f->opt_int("split.no").value_or(0) + 1, *shards);
    const std::string arch_name = f->get_string("general.architecture");
    const int n_threads = opts.n_threads > 0 ? opts.n_threads : physical_cores();
    // Explicit registry: one line per family (no static self-registration).
    if (arch_name == "llama") return load_llama(std::move(f), arch::llama, n_threads, opts);
    if (arch_name == "qwen2") return load_llama(std::move(f), arch::qwen2, n_threads, opts);
    if (arch_name == "deepseek2") return load_deepseek2(std::move(f), n_threads, opts);
    throw_error(status::unsupported_model,
                "loader: {}: architecture '{}' is not supported (supported: llama, qwen2, deepseek2)",
                path, arch_name);
}

} // namespace frugal
