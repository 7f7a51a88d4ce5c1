// llama.hpp - the dense decoder family: `llama` (Llama 2/3, R1-Distill-Llama, TinyStories) and
// `qwen2` (R1-Distill-Qwen), which differs only by Q/K/V biases and NeoX RoPE.
#pragma once

#include "models/model.hpp"

namespace frugal {
std::shared_ptr<const model> load_llama(std::shared_ptr<const gguf::file> f, arch a, int n_threads,
                                        const load_options & opts);
} // namespace frugal
