// frugal - command-line tool: `run` (generate text), `info` (inspect a GGUF file), `tokenize`
// (text <-> ids), `bench`, `logits`, `pull` (download a model into the cache). Errors go to stderr with a non-zero exit code.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <map>
#include <sstream>
#include <random>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "models/deepseek2.hpp"
#include "ops/amx_gemm.hpp"
#include "models/model.hpp"
#include "runtime/chat.hpp"
#include "runtime/gguf.hpp"
#include "runtime/session.hpp"
#include "util/error.hpp"
#include "util/profile.hpp"
#ifdef FRUGAL_HAVE_DOWNLOAD
#  include "runtime/download.hpp"
#endif

namespace {

std::atomic<frugal::session *> g_active_session{nullptr};

extern "C" void on_sigint(int) {
    // Only an atomic store: cancel() is async-signal-safe. A second Ctrl-C kills as usual.
    if (auto * s = g_active_session.load()) s->cancel();
    std::signal(SIGINT, SIG_DFL);
}

// The sum of the fields of /proc/self/<file> named by keys (counted in kB there), in bytes; 0
// where none is found.
uint64_t proc_self_bytes(const char * file, std::initializer_list<const char *> keys) {
    std::ifstream f(std::string("/proc/self/") + file);
    std::string line;
    uint64_t bytes = 0;
    while (std::getline(f, line))
        for (const char * key : keys)
            if (line.rfind(key, 0) == 0) bytes += std::stoull(line.substr(std::strlen(key))) * 1024;
    return bytes;
}

// VmHWM (peak resident set) and VmRSS of this process, in bytes.
std::pair<uint64_t, uint64_t> memory_usage() {
    return {proc_self_bytes("status", {"VmHWM:"}), proc_self_bytes("status", {"VmRSS:"})};
}

// Memory read bandwidth in GB/s with n_threads threads streaming through a buffer 16x the size of
// a big L3 (best of a few passes, software prefetch on): what a decode step, which reads every
// weight once, is bound by.
// Measured in a forked child so its buffer never counts in this process's peak RSS, with
// std::thread because an OpenMP runtime already started does not survive fork. 0 on failure.
double read_bandwidth_gbs(int n_threads) {
    int fds[2];
    if (pipe(fds) != 0) return 0;
    const pid_t child = fork();
    if (child < 0) return 0;
    if (child == 0) {
        constexpr size_t bytes = size_t(512) << 20;
        const size_t words = bytes / sizeof(uint64_t), per_thread = words / size_t(n_threads);
        std::vector<uint64_t> buf(words, 1);
        std::vector<uint64_t> sums(size_t(n_threads) * 8);
        double best = 0;
        for (int pass = 0; pass < 4; ++pass) {
            const auto t0 = std::chrono::steady_clock::now();
            std::vector<std::thread> threads;
            for (int i = 0; i < n_threads; ++i)
                threads.emplace_back([&, i] {
                    // Four independent 16-byte sums (GCC vector extension: SSE2 on x86-64): the
                    // loads, not the adds, limit. A scalar loop (eight 8-byte loads per line)
                    // was itself the limit on a Zen 5: 34 GB/s against 47-51 for this one, which
                    // is what the decode kernels reach.
                    using u64x2 = uint64_t __attribute__((vector_size(16)));
                    const auto * p = reinterpret_cast<const u64x2 *>(buf.data() + size_t(i) * per_thread);
                    u64x2 acc[4] = {};
                    // One cache line per step, asking for the line 2 KiB ahead as the decode kernels
                    // do: the hardware prefetcher alone reached only 70-75 % of this here.
                    for (size_t j = 0; j + 4 <= per_thread / 2; j += 4) {
                        __builtin_prefetch(p + j + 128);
                        for (int u = 0; u < 4; ++u) acc[u] += p[j + size_t(u)];
                    }
                    const u64x2 total = acc[0] + acc[1] + acc[2] + acc[3];
                    sums[size_t(i) * 8] = total[0] + total[1];
                });
            for (auto & t : threads) t.join();
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (pass > 0) best = std::max(best, double(per_thread * size_t(n_threads) * sizeof(uint64_t)) / s / 1e9);
        }
        const bool ok = sums[0] == per_thread && write(fds[1], &best, sizeof best) == sizeof best;
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    double gbs = 0;
    if (read(fds[0], &gbs, sizeof gbs) != sizeof gbs) gbs = 0;
    close(fds[0]);
    waitpid(child, nullptr, 0);
    return gbs;
}

constexpr const char * k_prefill_gemm_help =
    "how prompts multiply non-F32 weights: auto (q8 on CPUs with AVX-512 VNNI or AVX2 for the types it takes; "
    "others bf16 where the CPU has native BF16, else f32; bf16 for batches of 96 rows or more, 128 for K-quants, on AMX), f32 (exact), bf16, int8 (4- and 5-bit weights: ~1.9x "
    "f32's speed on AVX2, 2-3% higher KL divergence), q8 (f32's arithmetic with integer block sums: Q4_0, Q4_1, "
    "Q5_0, Q5_1, Q2_K to Q6_K, and Q8_0, IQ4_NL and IQ4_XS on AVX-512 VNNI or AVX-VNNI; f32 where the CPU's kernel "
    "does not take the type)";

// --prefill-gemm's values; "auto" is the library's default.
std::map<std::string, frugal::ops::prefill_gemm> prefill_gemm_names() {
    using frugal::ops::prefill_gemm;
    return {{"auto", frugal::ops::default_prefill_gemm()}, {"f32", prefill_gemm::f32}, {"bf16", prefill_gemm::bf16},
            {"int8", prefill_gemm::int8}, {"q8", prefill_gemm::q8}};
}

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", double(bytes) / (1024.0 * 1024.0)); }

std::vector<int32_t> parse_ids(const std::string & s) {
    std::vector<int32_t> ids;
    const char * p = s.data();
    const char * end = p + s.size();
    while (p < end) {
        if (*p == ',' || *p == ' ') {
            ++p;
            continue;
        }
        int32_t v = 0;
        const auto r = std::from_chars(p, end, v);
        if (r.ec != std::errc())
            frugal::throw_error(frugal::status::invalid_argument, "bad token id list '{}' at '{}'", s, std::string(p, end));
        ids.push_back(v);
        p = r.ptr;
    }
    return ids;
}

#ifdef FRUGAL_HAVE_DOWNLOAD
// Downloads into dest (empty: the cache) with a progress bar on stderr.
frugal::download::result pull_model(const std::string & url, const std::string & dest, const std::string & sha256) {
    frugal::download::options o;
    o.url = url;
    o.dest = dest;
    o.sha256 = sha256;
    const auto t0 = std::chrono::steady_clock::now();
    o.progress = [&](uint64_t done, uint64_t total) {
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "\r%s", frugal::download::format_progress(done, total, sec).c_str());
        return true;
    };
    auto r = frugal::download::fetch(o);
    std::fprintf(stderr, "\n");
    return r;
}
#endif

// A model argument is a local path, or a URL / hf:// reference that is pulled into the cache first.
std::string resolve_model(const std::string & m) {
    const bool remote = m.starts_with("http://") || m.starts_with("https://") || m.starts_with("hf://");
    if (!remote) return m;
#ifdef FRUGAL_HAVE_DOWNLOAD
    return pull_model(m, "", "").path.string();
#else
    frugal::throw_error(frugal::status::invalid_argument, "this build has no downloader (FRUGAL_DOWNLOAD=OFF): {}", m);
#endif
}

// What the commands that load a model let the user choose.
struct load_choice {
    int threads = 0;
    bool use_mmap = true;
    frugal::repack repack = frugal::repack::where_faster;
};

std::map<std::string, frugal::dtype> kv_type_names() {
    return {{"f16", frugal::dtype::f16}, {"q8_0", frugal::dtype::q8_0}, {"f32", frugal::dtype::f32}};
}
constexpr const char * k_kv_type_help =
    "KV cache type: f16 (default; half the memory), q8_0 (about a quarter, as llama.cpp's -ctk/-ctv q8_0) or f32 (values as computed)";

std::map<std::string, frugal::mla_attention> mla_attention_names() {
    return {{"auto", frugal::mla_attention::automatic},
            {"f32", frugal::mla_attention::f32},
            {"bf16", frugal::mla_attention::bf16}};
}
constexpr const char * k_mla_attention_help =
    "deepseek2: the arithmetic of attention (prompts; decode steps of many heads, as V3's): f32 (auto: exact) or "
    "bf16 (about twice as fast where the CPU has AVX-512 BF16, as DeepSeek's own inference; moves the logits more)";

// A deepseek2 session's MLA attention arithmetic; automatic leaves any model as it is.
void set_mla_attention(frugal::session & s, frugal::mla_attention arithmetic) {
    if (arithmetic != frugal::mla_attention::automatic) frugal::set_mla_attention(s.state(), arithmetic);
}

std::map<std::string, frugal::repack> repack_names() {
    return {{"auto", frugal::repack::where_faster}, {"always", frugal::repack::always}, {"never", frugal::repack::never}};
}
constexpr const char * k_repack_help =
    "Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL weights rewritten at load into the repacked decode layout: auto (default: "
    "where this CPU decodes that faster: all five with AVX-512 VNNI, Q4_0, Q5_0 and IQ4_NL with AVX2), always, never (used in "
    "place as stored)";

// --repack, and --no-repack for --repack never.
void add_repack_options(CLI::App * cmd, frugal::repack & repack) {
    cmd->add_option("--repack", repack, k_repack_help)->transform(CLI::CheckedTransformer(repack_names()));
    cmd->add_flag_callback("--no-repack", [&repack] { repack = frugal::repack::never; }, "= --repack never");
}

// Loads a model given as a path, URL or hf:// reference; *load_seconds gets the load time.
std::shared_ptr<const frugal::model> open_model(const std::string & model, const load_choice & choice,
                                               double * load_seconds = nullptr) {
    frugal::load_options lo;
    lo.n_threads = choice.threads;
    lo.use_mmap = choice.use_mmap;
    lo.repack_weights = choice.repack;
    const std::string path = resolve_model(model);
    const auto t0 = std::chrono::steady_clock::now();
    auto m = frugal::load_model(path, lo);
    if (load_seconds) *load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return m;
}

struct run_args {
    std::string model, prompt, prompt_ids, system, chat_format;
    int n_predict = 128, threads = 0, ctx = 0;
    frugal::dtype kv_type = frugal::k_default_kv_type;
    bool no_mmap = false, show_prompt = false, chat = false, hide_reasoning = false;
    frugal::sampling_params sampling;
    std::function<bool(const char *)> given; // whether an option was on the command line
};

// The sampling the session starts with (the model's recommendation, e.g. R1's), with the options
// the user gave on top.
frugal::sampling_params chosen_sampling(const run_args & a, frugal::sampling_params p) {
    if (a.given("--temp")) p.temperature = a.sampling.temperature;
    if (a.given("--top-k")) p.top_k = a.sampling.top_k;
    if (a.given("--top-p")) p.top_p = a.sampling.top_p;
    if (a.given("--min-p")) p.min_p = a.sampling.min_p;
    if (a.given("--repeat-penalty")) p.repeat_penalty = a.sampling.repeat_penalty;
    if (a.given("--repeat-last-n")) p.repeat_last_n = a.sampling.repeat_last_n;
    if (a.given("--seed")) p.seed = a.sampling.seed;
    return p;
}

// -p as one user turn (after --system) in the model's chat format, or the one --chat-format names.
std::string chat_prompt(const run_args & a, const frugal::tokenizer & tok) {
    frugal::chat_format format = tok.chat_format();
    if (!a.chat_format.empty()) {
        const auto named = frugal::chat_format_from_name(a.chat_format);
        if (!named) frugal::throw_error(frugal::status::invalid_argument, "run: unknown chat format '{}'", a.chat_format);
        format = *named;
    }
    if (format == frugal::chat_format::none)
        frugal::throw_error(frugal::status::invalid_argument,
                            "run: the model has no chat template frugal knows; pass --chat-format or drop --chat");
    std::vector<frugal::chat_message> turns;
    if (!a.system.empty()) turns.push_back({frugal::chat_role::system, a.system});
    turns.push_back({frugal::chat_role::user, a.prompt});
    return tok.apply_chat_template(format, turns, true);
}

int cmd_run(const run_args & a) {
    double load_s = 0;
    const auto model = open_model(a.model, {a.threads, !a.no_mmap}, &load_s);

    frugal::session s(model, a.ctx, a.kv_type);
    s.set_sampling(chosen_sampling(a, s.sampling()));
    g_active_session.store(&s);
    std::signal(SIGINT, on_sigint);

    const auto & tok = model->tokenizer();
    if (!a.prompt_ids.empty()) {
        const auto ids = parse_ids(a.prompt_ids);
        if (a.show_prompt) std::fputs(tok.decode(ids).c_str(), stdout);
        s.prompt_tokens(ids);
    } else if (a.chat) {
        const std::string prompt = chat_prompt(a, tok);
        if (a.show_prompt) std::fputs(prompt.c_str(), stdout);
        s.prompt_text(prompt);
    } else {
        if (a.show_prompt) std::fputs(a.prompt.c_str(), stdout);
        if (a.prompt.empty()) {
            // Generation from BOS alone, as llama2.c's sample does.
            const int32_t bos = tok.get_vocab().bos;
            if (bos < 0) frugal::throw_error(frugal::status::invalid_argument, "run: empty prompt and the model has no BOS token");
            s.prompt_tokens(std::span(&bos, 1));
        } else {
            s.prompt_text(a.prompt);
        }
    }
    std::fflush(stdout);

    // Reasoning (<think>...</think>) is dimmed on a terminal, hidden with --hide-reasoning; a pipe
    // gets the text as generated, tags included.
    const bool split = a.hide_reasoning || isatty(fileno(stdout));
    auto print = [](std::string_view text) { std::fwrite(text.data(), 1, text.size(), stdout); };
    int n_gen = 0;
    std::string stop_reason = "length";
    try {
        for (; n_gen < a.n_predict; ++n_gen) {
            auto r = s.next();
            if (!split) print(r.piece);
            for (size_t i = 0; split && i < r.parts.size(); ++i) {
                const bool reasoning = r.parts[i].kind == frugal::text_kind::reasoning;
                if (reasoning && a.hide_reasoning) continue;
                if (reasoning) print("\x1b[2m");
                print(r.parts[i].text);
                if (reasoning) print("\x1b[0m");
            }
            std::fflush(stdout);
            if (r.done) {
                stop_reason = "end of generation";
                break;
            }
        }
    } catch (const frugal::error & e) {
        if (e.code() != frugal::status::cancelled && e.code() != frugal::status::context_full) throw;
        stop_reason = e.code() == frugal::status::cancelled ? "interrupted" : "context full";
    }
    g_active_session.store(nullptr);
    std::fputc('\n', stdout);
    std::fflush(stdout);

    const auto & st = s.stats();
    const auto [peak, rss] = memory_usage();
    const auto & c = model->config();
    const std::string experts =
        c.n_expert ? fmt::format(", {} experts ({} per token)", c.n_expert, c.n_expert_used) : std::string();
    std::fprintf(stderr,
                 "\n[%s] %s, %lld layers%s, %s of weights; load %.2f s\n"
                 "prompt: %lld tokens in %.2f s (%.1f tokens/s)\n"
                 "decode: %d tokens generated, %lld evaluated in %.2f s (%.1f tokens/s); stop: %s\n"
                 "memory: peak RSS %s, RSS %s, KV cache %s (%lld positions x %.1f KiB), model file %s\n",
                 c.arch_name.c_str(), c.name.empty() ? "unnamed" : c.name.c_str(), (long long)c.n_layer,
                 experts.c_str(), mib(c.weight_bytes).c_str(), load_s, (long long)st.n_prompt, st.prompt_seconds,
                 st.prompt_seconds > 0 ? double(st.n_prompt) / st.prompt_seconds : 0.0, n_gen,
                 (long long)st.n_decode, st.decode_seconds,
                 st.decode_seconds > 0 ? double(st.n_decode) / st.decode_seconds : 0.0, stop_reason.c_str(),
                 mib(peak).c_str(), mib(rss).c_str(), mib(s.kv_bytes()).c_str(), (long long)s.n_ctx(),
                 double(c.kv_bytes_per_token(s.kv_type())) / 1024.0, mib(model->file().file_size()).c_str());
    return 0;
}

// Raw logits of every position of a token sequence, in the "frugal-logits-v1" binary format that
// ../shared/tools/llamacpp-logits writes (one JSON header line padded to 64 bytes, then f32 rows),
// so compare-logits.py can put the two engines side by side.
int cmd_logits(const std::string & model_path, const std::string & ids_text, const std::string & out, int threads,
               frugal::ops::prefill_gemm prefill, frugal::repack repack, frugal::dtype kv_type,
               frugal::mla_attention mla) {
    const auto model = open_model(model_path, {threads, true, repack});
    const auto ids = parse_ids(ids_text);
    frugal::session s(model, int64_t(ids.size()), kv_type);
    s.set_prefill_gemm(prefill);
    set_mla_attention(s, mla);
    const auto logits = s.evaluate_all(ids);
    const int64_t V = model->config().n_vocab;
    std::string header = fmt::format(R"({{"model": "{}", "engine": "frugal {}", "format": "frugal-logits-v1", "dtype": "<f4", "shape": [{}, {}]}})",
                                     model_path, FRUGAL_VERSION_TEXT, ids.size(), V);
    header.resize((header.size() + 1 + 63) / 64 * 64 - 1, ' ');
    header += '\n';
    std::ofstream f(out, std::ios::binary);
    f.write(header.data(), std::streamsize(header.size()));
    f.write(reinterpret_cast<const char *>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
    if (!f) frugal::throw_error(frugal::status::io, "logits: cannot write {}", out);
    std::fprintf(stderr, "wrote %s: %zu x %lld logits\n", out.c_str(), ids.size(), (long long)V);
    return 0;
}

struct bench_args {
    std::string model;
    int n_prompt = 512, n_gen = 128, reps = 3, threads = 0, depth = 0, gemm_from = 0;
    frugal::dtype kv_type = frugal::k_default_kv_type;
    bool profile = false;
    frugal::ops::prefill_gemm prefill = frugal::ops::default_prefill_gemm();
    frugal::repack repack = frugal::repack::where_faster;
    frugal::mla_attention mla = frugal::mla_attention::automatic;
};

// One JSON line per kind of op: time, calls and share of the timed run (util/profile.hpp); what
// no op claims (sampling, scratch, glue) is "other".
void print_profile(const std::string & test, double total_seconds, const frugal::profile::totals & t) {
    std::string ops;
    double covered = 0;
    for (size_t i = 0; i < t.seconds.size(); ++i) {
        if (t.calls[i] == 0) continue;
        covered += t.seconds[i];
        ops += fmt::format(R"({}"{}": {{"ms": {:.3f}, "calls": {}, "share": {:.4f}}})", ops.empty() ? "" : ", ",
                           frugal::profile::name(frugal::profile::op(i)), t.seconds[i] * 1e3, t.calls[i],
                           t.seconds[i] / total_seconds);
    }
    ops += fmt::format(R"(, "other": {{"ms": {:.3f}, "share": {:.4f}}})", (total_seconds - covered) * 1e3,
                       (total_seconds - covered) / total_seconds);
    std::printf(R"({"profile": "%s", "total_ms": %.3f, "ops": {%s}})"
                "\n",
                test.c_str(), total_seconds * 1e3, ops.c_str());
    std::fflush(stdout);
}

// llama-bench-like speed test, JSON lines on stdout (same shape as ../shared/tools/llamacpp-bench):
// ppN = one evaluation of N random tokens; tgN = N single-token evaluations; each on an empty
// context, or with -d D after D random tokens ("pp512@d4096"). One warm-up of each first.
// --profile adds a per-op breakdown of one more run of each.
int cmd_bench(const bench_args & a) {
    double load_s = 0;
    const auto model = open_model(a.model, {a.threads, true, a.repack}, &load_s);
    const auto & c = model->config();
    // The share of a prompt token's multiply-adds each GEMM takes on this CPU (prefill_gemm_for) in
    // a batch of the prompt's rows (a MoE expert sees fewer of them, and may take another).
    std::map<std::string, double> paths;
    int64_t macs = 0;
    const int64_t batch_rows = std::min<int64_t>(a.n_prompt, model->max_batch());
    for (const auto & [type, n] : c.prefill_macs_by_type) macs += n;
    for (const auto & [type, n] : c.prefill_macs_by_type)
        paths[frugal::ops::prefill_gemm_name(frugal::ops::prefill_gemm_for(a.prefill, type, batch_rows))] +=
            double(n) / double(std::max<int64_t>(macs, 1));
    std::string shares;
    for (const auto & [path, share] : paths)
        shares += fmt::format(R"({}"{}": {:.3f})", shares.empty() ? "" : ", ", path, share);
    // Whether the f32 and bf16 paths' GEMMs run on oneDNN's brgemm panels here (ops/gemm_pack.hpp),
    // and bf16's on frugal's AMX kernel (ops/amx_gemm.hpp; "prefill_amx").
    const bool panels = frugal::ops::matmul_context(1).panels_available(frugal::dtype::f32);
    frugal::session s(model, a.depth + std::max(a.n_prompt, a.n_gen) + 1, a.kv_type);
    s.set_prefill_gemm(a.prefill);
    s.state().matmul().gemm_from_rows = a.gemm_from;
    set_mla_attention(s, a.mla);
    std::printf(R"({"model": "%s", "engine": "frugal %s", "arch": "%s", "threads": %d, "n_vocab": %lld, "n_params": %lld, "model_bytes": %llu, "decode_bytes_per_token": %llu, "repacked_bytes": %llu, "prefill_gemm": "%s", "prefill_gemm_native": %s, "prefill_paths": {%s}, "prefill_panels": %s, "prefill_amx": %s, "cpu_isa": "%s", "kv_type": "%s", "mla_attention": "%s", "max_batch": %lld, "load_s": %.3f})"
                "\n",
                a.model.c_str(), FRUGAL_VERSION_TEXT, c.arch_name.c_str(), model->n_threads(), (long long)c.n_vocab,
                (long long)c.n_params, (unsigned long long)c.weight_bytes, (unsigned long long)c.decode_bytes_per_token,
                (unsigned long long)c.repacked_bytes, frugal::ops::prefill_gemm_name(a.prefill),
                frugal::ops::prefill_gemm_native(a.prefill) ? "true" : "false", shares.c_str(),
                panels ? "true" : "false", frugal::ops::amx::bf16_available() ? "true" : "false",
                frugal::ops::detail::kernel_isa_name(),
                std::string(frugal::dtype_name(a.kv_type)).c_str(),
                c.arch == frugal::arch::deepseek2 ? (frugal::mla_attention_bf16(s.state()) ? "bf16" : "f32") : "none",
                (long long)model->max_batch(), load_s);
    std::fflush(stdout);
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> pick(0, int32_t(c.n_vocab - 1));
    auto timed = [&](auto && fn) {
        const auto t = std::chrono::steady_clock::now();
        fn();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    };
    // Each repetition starts from a context holding `depth` random tokens (not timed).
    std::vector<int32_t> context(size_t(a.depth));
    auto fill_context = [&] {
        s.reset();
        for (auto & t : context) t = pick(rng);
        if (!context.empty()) s.prompt_tokens(context);
    };
    const std::string at_depth = a.depth > 0 ? fmt::format("@d{}", a.depth) : std::string();
    // `extra`: more JSON fields, each starting with ", ".
    auto report = [&](const std::string & test, int n, const std::vector<double> & secs, const std::string & extra = {}) {
        std::vector<double> tps;
        for (double x : secs) tps.push_back(n / x);
        double mean = 0, sd = 0;
        for (double x : tps) mean += x / double(tps.size());
        for (double x : tps) sd += (x - mean) * (x - mean) / double(std::max<size_t>(1, tps.size() - 1));
        std::string list;
        for (double x : tps) list += fmt::format("{}{:.3f}", list.empty() ? "" : ", ", x);
        std::printf(R"({"test": "%s", "threads": %d, "tps_mean": %.3f, "tps_sd": %.3f, "tps_min": %.3f, "tps_max": %.3f, "reps": %zu, "tps": [%s]%s})"
                    "\n",
                    test.c_str(), model->n_threads(), mean, std::sqrt(sd), *std::min_element(tps.begin(), tps.end()),
                    *std::max_element(tps.begin(), tps.end()), tps.size(), list.c_str(), extra.c_str());
        std::fflush(stdout);
    };
    if (a.n_prompt > 0) {
        std::vector<int32_t> prompt(size_t(a.n_prompt));
        std::vector<double> secs;
        for (int r = 0; r <= a.reps; ++r) {
            fill_context();
            for (auto & t : prompt) t = pick(rng);
            const double dt = timed([&] { s.prompt_tokens(prompt); });
            if (r > 0) secs.push_back(dt); // the first run warms up
        }
        report(fmt::format("pp{}{}", a.n_prompt, at_depth), a.n_prompt, secs);
        if (a.profile) { // one more prefill, timed per op
            fill_context();
            for (auto & t : prompt) t = pick(rng);
            frugal::profile::take();
            frugal::profile::enable(true);
            const double dt = timed([&] { s.prompt_tokens(prompt); });
            frugal::profile::enable(false);
            print_profile(fmt::format("pp{}{}", a.n_prompt, at_depth), dt, frugal::profile::take());
        }
    }
    if (a.n_gen > 0) {
        std::vector<double> secs;
        auto decode = [&] {
            for (int i = 0; i < a.n_gen; ++i) {
                const int32_t t = pick(rng);
                s.prompt_tokens(std::span(&t, 1));
            }
        };
        for (int r = 0; r <= a.reps; ++r) {
            fill_context();
            const double dt = timed(decode);
            if (r > 0) secs.push_back(dt);
        }
        // The decode speed limit on this machine right now: bandwidth / weight bytes per token.
        const double gbs = read_bandwidth_gbs(model->n_threads());
        const double bound = c.decode_bytes_per_token ? gbs * 1e9 / double(c.decode_bytes_per_token) : 0;
        double mean = 0;
        for (double x : secs) mean += a.n_gen / x / double(secs.size());
        report(fmt::format("tg{}{}", a.n_gen, at_depth), a.n_gen, secs,
               fmt::format(R"(, "read_gbs": {:.2f}, "bound_tps": {:.3f}, "roofline": {:.3f})", gbs, bound,
                           bound > 0 ? mean / bound : 0.0));
        if (a.profile) { // one more decode run, timed per op
            fill_context();
            frugal::profile::take();
            frugal::profile::enable(true);
            const double dt = timed(decode);
            frugal::profile::enable(false);
            print_profile(fmt::format("tg{}{}", a.n_gen, at_depth), dt, frugal::profile::take());
        }
    }
    const auto [peak, rss] = memory_usage();
    // Of the resident set, what is mapped in huge pages: repacked copies (anonymous) and the
    // file's 2 MiB folios (docs/PERF.md, "Zen 5 (2026-12-02 05:14-)").
    const uint64_t huge = proc_self_bytes("smaps_rollup", {"AnonHugePages:", "FilePmdMapped:"});
    std::printf(R"({"peak_rss_kib": %llu, "rss_kib": %llu, "huge_pages_kib": %llu, "kv_type": "%s", "kv_bytes": %llu, "kv_bytes_per_token": %llu})"
                "\n",
                (unsigned long long)(peak / 1024), (unsigned long long)(rss / 1024), (unsigned long long)(huge / 1024),
                std::string(frugal::dtype_name(s.kv_type())).c_str(), (unsigned long long)s.kv_bytes(),
                (unsigned long long)c.kv_bytes_per_token(s.kv_type()));
    return 0;
}

// A tensor's type as `info` shows it: frugal's name, or ggml's (upper case) for a type frugal does
// not read, or "ggml#ID" for an id ggml never had.
std::string tensor_type_label(const frugal::gguf::tensor_info & t) {
    if (t.type) return std::string(frugal::dtype_name(*t.type));
    const std::string_view ggml = frugal::gguf::ggml_type_name(t.ggml_type);
    return ggml.empty() ? fmt::format("ggml#{}", t.ggml_type) : std::string(ggml);
}

int cmd_info(const std::string & path, bool all_tensors) {
    const auto f = frugal::gguf::file::open(path);
    std::printf("file: %s\nformat: GGUF v%u, %llu bytes, alignment %llu, data at offset %llu\n", path.c_str(),
                f->version(), (unsigned long long)f->file_size(), (unsigned long long)f->alignment(),
                (unsigned long long)f->data_offset());
    std::printf("\nmetadata (%zu keys):\n", f->metadata().size());
    for (const auto & [key, v] : f->metadata())
        std::printf("  %-48s %-6s %s\n", key.c_str(), std::string(frugal::gguf::value_type_name(v.type)).c_str(),
                    v.to_display().c_str());

    struct type_total {
        size_t count = 0;
        uint64_t bytes = 0, params = 0;
    };
    std::map<std::string, type_total> by_type;
    uint64_t params = 0;
    for (const auto & t : f->tensors()) {
        const std::string type = tensor_type_label(t);
        auto & tt = by_type[type];
        ++tt.count;
        tt.bytes += t.n_bytes;
        tt.params += uint64_t(t.shape().numel());
        params += uint64_t(t.shape().numel());
    }
    std::printf("\ntensors: %zu, %.3f B parameters\n", f->tensors().size(), double(params) / 1e9);
    for (const auto & [type, tt] : by_type)
        std::printf("  %-8s %5zu tensors  %14llu params  %s\n", type.c_str(), tt.count, (unsigned long long)tt.params,
                    tt.bytes ? mib(tt.bytes).c_str() : "(type not supported by frugal)");
    const size_t shown = all_tensors ? f->tensors().size() : std::min<size_t>(f->tensors().size(), 12);
    std::printf("\n%s:\n", all_tensors ? "all tensors" : "first tensors (--tensors lists all)");
    for (size_t i = 0; i < shown; ++i) {
        const auto & t = f->tensors()[i];
        std::printf("  %-40s %-6s %-24s offset %llu\n", t.name.c_str(), tensor_type_label(t).c_str(),
                    t.shape().str().c_str(), (unsigned long long)t.offset);
    }
    return 0;
}

struct tokenize_args {
    std::string tokenizer, text, file, decode_ids;
    bool no_special = false, no_parse_special = false, pieces = false, special = false;
    int bench_reps = 0;
};

// Text -> ids (stdout: a JSON list, or one "id<TAB>piece" line per token with --pieces), or ids ->
// text with --decode. The tokenizer comes from a GGUF file (weights are not loaded) or a Hugging
// Face tokenizer folder. --bench N times N encodings of the text and reports MB/s on stderr.
int cmd_tokenize(const tokenize_args & a) {
    const frugal::tokenizer tok(frugal::vocab::load(a.tokenizer));
    if (!a.decode_ids.empty()) {
        const std::string text = tok.decode(parse_ids(a.decode_ids), a.special);
        std::fwrite(text.data(), 1, text.size(), stdout);
        return 0;
    }
    std::string text = a.text;
    if (!a.file.empty() || a.text.empty()) {
        std::ifstream file;
        if (!a.file.empty()) {
            file.open(a.file, std::ios::binary);
            if (!file) frugal::throw_error(frugal::status::io, "tokenize: cannot open {}", a.file);
        }
        std::ostringstream all;
        all << (a.file.empty() ? std::cin.rdbuf() : file.rdbuf());
        text = all.str();
    }
    const auto encode = [&] { return tok.encode(text, !a.no_special, !a.no_parse_special); };
    const auto ids = encode();
    if (a.pieces) {
        for (const int32_t id : ids) {
            const std::string piece = tok.token_to_piece(id, true);
            std::printf("%d\t%s\n", id, nlohmann::json(piece).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        }
    } else {
        std::string list;
        for (const int32_t id : ids) list += fmt::format("{}{}", list.empty() ? "" : ", ", id);
        std::printf("[%s]\n", list.c_str());
    }
    if (a.bench_reps > 0) {
        std::vector<double> secs;
        for (int r = 0; r < a.bench_reps; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            const auto again = encode();
            secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            if (again != ids) frugal::throw_error(frugal::status::internal, "tokenize: run {} gave other ids", r);
        }
        std::sort(secs.begin(), secs.end());
        const double median = secs[secs.size() / 2];
        std::fprintf(stderr, "tokenize: %zu bytes -> %zu tokens; median of %d runs %.2f ms, %.2f MB/s\n", text.size(),
                     ids.size(), a.bench_reps, median * 1e3, double(text.size()) / median / 1e6);
    }
    return 0;
}

} // namespace

int main(int argc, char ** argv) {
    CLI::App app{"frugal: run DeepSeek-family models on a CPU"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "frugal " FRUGAL_VERSION_TEXT);

    run_args ra;
    auto * run = app.add_subcommand("run", "generate text from a model");
    run->add_option("-m,--model", ra.model, "GGUF file, https:// URL or hf://OWNER/REPO/FILE.gguf")->required();
    run->add_option("-p,--prompt", ra.prompt, "prompt text (empty: start from BOS)");
    run->add_option("--prompt-ids", ra.prompt_ids, "prompt as token ids, e.g. 1,2,3 (instead of -p)");
    run->add_option("-n,--n-predict", ra.n_predict, "tokens to generate")->check(CLI::Range(0, 1 << 30));
    run->add_option("-t,--threads", ra.threads, "threads (0 = physical cores)")->check(CLI::Range(0, 1024));
    run->add_option("-c,--ctx", ra.ctx, "context size (0 = min(training context, 4096))")->check(CLI::NonNegativeNumber);
    run->add_option("--kv-type", ra.kv_type, k_kv_type_help)->transform(CLI::CheckedTransformer(kv_type_names()));
    run->add_option("--temp", ra.sampling.temperature, "temperature (0 = greedy; default 0.8, R1 models 0.6)");
    run->add_option("--top-k", ra.sampling.top_k, "top-k (0 = off)");
    run->add_option("--top-p", ra.sampling.top_p, "top-p");
    run->add_option("--min-p", ra.sampling.min_p, "min-p");
    run->add_option("--repeat-penalty", ra.sampling.repeat_penalty, "repetition penalty (1 = off)");
    run->add_option("--repeat-last-n", ra.sampling.repeat_last_n, "tokens considered by the penalty");
    run->add_option("-s,--seed", ra.sampling.seed, "random seed");
    run->add_flag("--no-mmap", ra.no_mmap, "read the model into memory instead of mapping it");
    run->add_flag("--show-prompt", ra.show_prompt, "echo the prompt before the generated text");
    run->add_flag("--chat", ra.chat, "-p is a user message: render it with the model's chat template");
    run->add_option("--system", ra.system, "with --chat: a system message first");
    run->add_option("--chat-format", ra.chat_format,
                    "with --chat: deepseek-r1, deepseek-v3, deepseek-v2, chatml, llama3 or llama3.1 "
                    "(default: from the model)");
    run->add_flag("--hide-reasoning", ra.hide_reasoning, "do not print the reasoning between <think> and </think>");
    ra.given = [run](const char * option) { return run->count(option) > 0; };

    std::string info_path;
    bool info_all = false;
    auto * info = app.add_subcommand("info", "print a GGUF file's metadata and tensor summary");
    info->add_option("model", info_path, "GGUF file")->required();
    info->add_flag("--tensors", info_all, "list every tensor");

    std::string logits_model, logits_ids, logits_out;
    int logits_threads = 0;
    auto logits_repack = frugal::repack::where_faster;
    auto logits_prefill = frugal::ops::default_prefill_gemm();
    auto * logits = app.add_subcommand("logits", "write the raw logits of every position of a token sequence");
    logits->add_option("-m,--model", logits_model, "GGUF file")->required();
    logits->add_option("--tokens", logits_ids, "token ids, e.g. 1,2,3")->required();
    logits->add_option("-o,--out", logits_out, "output file (frugal-logits-v1 binary)")->required();
    logits->add_option("-t,--threads", logits_threads, "threads (0 = physical cores)")->check(CLI::Range(0, 1024));
    logits->add_option("--prefill-gemm", logits_prefill, k_prefill_gemm_help)
        ->transform(CLI::CheckedTransformer(prefill_gemm_names()));
    add_repack_options(logits, logits_repack);
    auto logits_kv_type = frugal::k_default_kv_type;
    logits->add_option("--kv-type", logits_kv_type, k_kv_type_help)->transform(CLI::CheckedTransformer(kv_type_names()));
    auto logits_mla = frugal::mla_attention::automatic;
    logits->add_option("--mla-attention", logits_mla, k_mla_attention_help)
        ->transform(CLI::CheckedTransformer(mla_attention_names()));

    bench_args ba;
    auto * bench = app.add_subcommand("bench", "prefill and decode speed (JSON lines, like llama-bench)");
    bench->add_option("-m,--model", ba.model, "GGUF file")->required();
    bench->add_option("-p,--n-prompt", ba.n_prompt, "prompt tokens (0 = skip)")->check(CLI::Range(0, 1 << 16));
    bench->add_option("-n,--n-gen", ba.n_gen, "generated tokens (0 = skip)")->check(CLI::Range(0, 1 << 16));
    bench->add_option("-r,--reps", ba.reps, "repetitions")->check(CLI::Range(1, 1000));
    bench->add_option("-t,--threads", ba.threads, "threads (0 = physical cores)")->check(CLI::Range(0, 1024));
    bench->add_option("-d,--depth", ba.depth, "context tokens already in the cache before each run")
        ->check(CLI::Range(0, 1 << 20));
    bench->add_flag("--profile", ba.profile, "then one more run of each test, timed per kind of op");
    bench->add_option("--prefill-gemm", ba.prefill, k_prefill_gemm_help)
        ->transform(CLI::CheckedTransformer(prefill_gemm_names()));
    add_repack_options(bench, ba.repack);
    bench->add_option("--gemm-from", ba.gemm_from,
                      "prompt rows from which every weight takes its GEMM instead of the row loops, in place of the "
                      "crossovers measured for this CPU (0 = those; for measuring them, docs/PERF.md)")
        ->check(CLI::Range(0, 1 << 16));
    bench->add_option("--kv-type", ba.kv_type, k_kv_type_help)->transform(CLI::CheckedTransformer(kv_type_names()));
    bench->add_option("--mla-attention", ba.mla, k_mla_attention_help)
        ->transform(CLI::CheckedTransformer(mla_attention_names()));

    tokenize_args ta;
    auto * tokenize = app.add_subcommand("tokenize", "text to token ids (or --decode ids to text)");
    tokenize->add_option("-m,--model", ta.tokenizer, "GGUF file, or a Hugging Face tokenizer folder / tokenizer.json")
        ->required();
    tokenize->add_option("-p,--prompt", ta.text, "text (default: read stdin)");
    tokenize->add_option("-f,--file", ta.file, "read the text from a file");
    tokenize->add_flag("--no-bos", ta.no_special, "do not add BOS/EOS even if the vocabulary asks for them");
    tokenize->add_flag("--no-parse-special", ta.no_parse_special, "control-token texts stay text");
    tokenize->add_flag("--pieces", ta.pieces, "one line per token: id and its text");
    tokenize->add_option("--decode", ta.decode_ids, "token ids to turn back into text, e.g. 1,2,3");
    tokenize->add_flag("--special", ta.special, "with --decode: render control tokens");
    tokenize->add_option("--bench", ta.bench_reps, "time N encodings, print MB/s on stderr")->check(CLI::Range(0, 100000));

    std::string pull_url, pull_out, pull_sha;
    auto * pull = app.add_subcommand("pull", "download a GGUF model into the cache (resumable)");
    pull->add_option("url", pull_url, "https:// URL or hf://OWNER/REPO/FILE.gguf[@REVISION]")->required();
    pull->add_option("-o,--output", pull_out, "destination file (default: the cache folder)");
    pull->add_option("--sha256", pull_sha, "expected SHA-256 (hex)");

    CLI11_PARSE(app, argc, argv);
    try {
        if (*run) return cmd_run(ra);
        if (*info) return cmd_info(info_path, info_all);
        if (*bench) return cmd_bench(ba);
        if (*tokenize) return cmd_tokenize(ta);
        if (*logits) return cmd_logits(logits_model, logits_ids, logits_out, logits_threads, logits_prefill, logits_repack,
                                         logits_kv_type, logits_mla);
        if (*pull) {
#ifdef FRUGAL_HAVE_DOWNLOAD
            const auto r = pull_model(pull_url, pull_out, pull_sha);
            std::printf("%s\nsha256 %s  %llu bytes%s%s\n", r.path.c_str(), r.sha256.c_str(), (unsigned long long)r.bytes,
                        r.verified ? ", verified" : ", not verified (no checksum known)",
                        r.already_present ? " (already present)" : (r.resumed ? " (resumed)" : ""));
            return 0;
#else
            std::fprintf(stderr, "frugal: this build has no downloader (FRUGAL_DOWNLOAD=OFF)\n");
            return 2;
#endif
        }
    } catch (const frugal::error & e) {
        std::fprintf(stderr, "\nfrugal: error: %s\n", e.what());
        return 1;
    } catch (const std::exception & e) {
        std::fprintf(stderr, "\nfrugal: internal error: %s\n", e.what());
        return 1;
    }
    return 0;
}
