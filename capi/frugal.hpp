// frugal.hpp - header-only C++ RAII wrapper over the stable C ABI (frugal.h).
//
// Where it lives: capi/, next to frugal.h, and installed next to it, so an installed consumer writes
//     #include <frugal.hpp>
// exactly as it writes #include <frugal.h>. (include/frugal/ holds the internal header-only tensor
// layer, which is not installed.) This header includes frugal.h and nothing else of frugal's: no
// lib/ header, no C++ type crosses the ABI; everything here is inline.
//
// Namespace: frugal::api. The library's internal C++ runtime uses namespace frugal itself
// (frugal::model, frugal::session, frugal::tokenizer, frugal::error in lib/). A program that links
// the static runtime, or a test in this repository, sees both; one level down, every name and every
// mangled symbol stays distinct (no ODR clash between two different `frugal::model` classes), while
// the name still reads as frugal's. `namespace fr = frugal::api;` is a convenient alias.
//
// Standard: C++17 or later. std::optional and std::string_view appear in the signatures, and a
// C++11/14 version would need home-made stand-ins for both. C++20 adds nothing to the surface: no
// class is defined differently under C++17 and C++20 (no #if inside a class), so translation units
// built with either can be linked together. Ranges of token ids are taken as any contiguous
// container of int32_t (std::vector, std::array, C arrays, C++20 std::span), and the generation
// ranges satisfy std::ranges::input_range in C++20.
//
// Errors: every failing call throws frugal::api::error (a std::runtime_error) with the
// frugal_status and the library's message (which names the offending value). Buffers are grown and
// the call retried on FRUGAL_ERR_BUFFER_TOO_SMALL, so no call here ever reports that status.
//
// Ownership: model, tokenizer and session are move-only and each owns one reference to its C
// handle. The C library counts references itself: a session keeps its model's weights alive and a
// tokenizer from model::tokenizer() keeps its model alive, so objects may be destroyed in any order
// and there is no need for std::shared_ptr here (wrap one in a std::shared_ptr to share it within
// C++). A moved-from object holds NULL: it is safe to destroy or assign to; its getters give
// 0 / "" / -1 and its fallible calls throw FRUGAL_ERR_INVALID_ARGUMENT.
//
// Threads (as frugal.h): a model and a tokenizer are immutable and may be used from any number of
// threads; a session is used by one thread at a time, except session::cancel(), callable from any.
//
//     namespace fr = frugal::api;
//     fr::model m = fr::model::load("stories260K.gguf");
//     fr::session s(m);
//     s.set_temperature(0);
//     s.prompt("Once upon a time");
//     for (const auto & t : s.tokens(64)) std::cout << t.text << std::flush;
#ifndef FRUGAL_HPP
#define FRUGAL_HPP

#include "frugal.h"

#if defined(_MSVC_LANG)
#  define FRUGAL_HPP_CPLUSPLUS _MSVC_LANG
#else
#  define FRUGAL_HPP_CPLUSPLUS __cplusplus
#endif
#if FRUGAL_HPP_CPLUSPLUS < 201703L
#  error "frugal.hpp needs C++17 or later (frugal.h alone is C89/C99 and C++11 clean)"
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace frugal {
namespace api {

// ---- version and status ----------------------------------------------------------------------

// The loaded library's version; compare with FRUGAL_VERSION_NUMBER (version_matches does).
inline uint32_t version_number() noexcept { return frugal_version_number(); }
inline std::string version_string() { return frugal_version_string(); }
// True when the library loaded at run time is the version this header was compiled against.
inline bool version_matches() noexcept { return frugal_version_number() == uint32_t(FRUGAL_VERSION_NUMBER); }
// Static text for a status code ("invalid argument", ...).
inline std::string status_string(frugal_status status) { return frugal_status_string(status); }

// What every failing call throws: the C status (FRUGAL_ERR_*) and the library's message, which
// is what() (the status text when the library gave none).
class error : public std::runtime_error {
public:
    error(frugal_status code, const std::string & message)
        : std::runtime_error(message.empty() ? std::string(frugal_status_string(code)) : message), status_(code) {}
    frugal_status status() const noexcept { return status_; }
    const char * status_string() const noexcept { return frugal_status_string(status_); }

private:
    frugal_status status_;
};

namespace detail {

// Owns the frugal_error of one C call.
class error_slot {
public:
    error_slot() = default;
    error_slot(const error_slot &) = delete;
    error_slot & operator=(const error_slot &) = delete;
    ~error_slot() { frugal_error_free(err_); }
    frugal_error ** out() noexcept {
        frugal_error_free(err_);
        err_ = nullptr;
        return &err_;
    }
    [[noreturn]] void raise(frugal_status status) const { throw error(status, frugal_error_message(err_)); }

private:
    frugal_error * err_ = nullptr;
};

// Calls f(frugal_error **) and throws on a negative status; returns FRUGAL_OK or FRUGAL_DONE.
template <class F>
frugal_status check(F && f) {
    error_slot slot;
    const frugal_status st = f(slot.out());
    if (st < 0) slot.raise(st);
    return st;
}

// The capacity to retry with after FRUGAL_ERR_BUFFER_TOO_SMALL (need = the library's *out_len).
inline size_t grow(size_t cap, size_t need) noexcept { return need > cap ? (need < 64 ? 64 : need) : cap * 2 + 64; }

// Reads a string or an id list through a C call f(T * buf, size_t cap, size_t * out_len,
// frugal_error ** err), starting with `guess` elements and growing while the library answers
// FRUGAL_ERR_BUFFER_TOO_SMALL. nul: the library counts a terminating NUL in *out_len.
template <class Container, class F>
Container read_buffer(F && f, size_t guess, bool nul = false) {
    Container buf(guess, typename Container::value_type());
    for (;;) {
        error_slot slot;
        size_t len = 0;
        const frugal_status st = f(buf.empty() ? nullptr : buf.data(), buf.size(), &len, slot.out());
        if (st == FRUGAL_ERR_BUFFER_TOO_SMALL) {
            buf.resize(grow(buf.size(), len));
            continue;
        }
        if (st < 0) slot.raise(st);
        if (nul && len > 0) --len;
        buf.resize(len);
        return buf;
    }
}

inline std::string str(const char * s) { return s ? std::string(s) : std::string(); }

// Contiguous containers of token ids: std::data(r) converts to const int32_t *, std::size(r) exists.
template <class R, class = void>
struct is_id_range : std::false_type {};
template <class R>
struct is_id_range<R, std::void_t<decltype(std::data(std::declval<const R &>())),
                                  decltype(std::size(std::declval<const R &>()))>>
    : std::is_convertible<decltype(std::data(std::declval<const R &>())), const int32_t *> {};

} // namespace detail

// ---- logging ----------------------------------------------------------------------------------

// level: FRUGAL_LOG_LEVEL_*. May be called from the library's worker threads, concurrently.
using log_fn = std::function<void(int32_t level, std::string_view message)>;

namespace detail {

struct log_state {
    std::mutex mutex;
    std::shared_ptr<const log_fn> fn;
};
// Never destroyed: a worker thread may still log while static destructors run.
inline log_state & the_log_state() {
    static log_state * const state = new log_state;
    return *state;
}
inline void log_trampoline(int32_t level, const char * message, void * user_data) {
    auto * state = static_cast<log_state *>(user_data);
    std::shared_ptr<const log_fn> fn;
    {
        std::lock_guard<std::mutex> lock(state->mutex);
        fn = state->fn; // a copy: a concurrent set_log_callback cannot destroy it under us
    }
    if (!fn) return;
    try {
        (*fn)(level, message ? std::string_view(message) : std::string_view());
    } catch (...) {
        // exceptions must not unwind through the library's C frames; a failing logger is ignored
    }
}

} // namespace detail

// Routes the library's log (messages at min_level and above) to fn; an empty fn restores the
// default (stderr at WARN and above). Thread-safe; process-wide, like frugal_set_log_callback.
// Exceptions thrown by fn are swallowed.
inline void set_log_callback(log_fn fn, int32_t min_level = FRUGAL_LOG_LEVEL_INFO) {
    auto & state = detail::the_log_state();
    if (!fn) {
        frugal_set_log_callback(nullptr, nullptr, min_level);
        std::lock_guard<std::mutex> lock(state.mutex);
        state.fn.reset();
        return;
    }
    {
        std::lock_guard<std::mutex> lock(state.mutex);
        state.fn = std::make_shared<const log_fn>(std::move(fn));
    }
    frugal_set_log_callback(&detail::log_trampoline, &state, min_level);
}

// ---- model --------------------------------------------------------------------------------------

struct model_options {
    int32_t n_threads = 0; // 0 = the physical cores this process may use
    bool use_mmap = true;  // false: read the file into memory
    bool repack_weights = true; // false: use Q4_0/Q5_0 weights in place (see frugal_model_options)
    // Called during the load with the fraction done; return false to stop it (load then throws
    // error with FRUGAL_ERR_CANCELLED). An exception it throws stops the load and propagates out of
    // model::load unchanged. (true = continue, as the runtime's C++ callbacks; the C callback's
    // "non-zero = stop" is handled inside.)
    std::function<bool(float fraction)> progress;
};

class tokenizer;

// A loaded model: immutable, shareable across threads. Move-only; owns one reference.
class model {
public:
    model() noexcept = default;
    explicit model(frugal_model * owned) noexcept : handle_(owned) {} // adopts a reference
    model(model && other) noexcept : handle_(other.release()) {}
    model & operator=(model && other) noexcept {
        if (this != &other) {
            frugal_model_free(handle_);
            handle_ = other.release();
        }
        return *this;
    }
    model(const model &) = delete;
    model & operator=(const model &) = delete;
    ~model() { frugal_model_free(handle_); }

    // Loads a GGUF file; throws error (FRUGAL_ERR_IO, _INVALID_MODEL, _UNSUPPORTED_MODEL ...).
    static model load(const std::string & path, const model_options & options = model_options());

    int32_t n_vocab() const noexcept { return frugal_model_n_vocab(handle_); }
    int32_t n_ctx_train() const noexcept { return frugal_model_n_ctx_train(handle_); }
    int32_t n_embd() const noexcept { return frugal_model_n_embd(handle_); }
    int32_t n_layers() const noexcept { return frugal_model_n_layers(handle_); }
    int32_t n_heads() const noexcept { return frugal_model_n_heads(handle_); }
    int32_t n_heads_kv() const noexcept { return frugal_model_n_heads_kv(handle_); }
    uint64_t n_params() const noexcept { return frugal_model_n_params(handle_); }
    uint64_t size_bytes() const noexcept { return frugal_model_size_bytes(handle_); }
    int32_t n_experts() const noexcept { return frugal_model_n_experts(handle_); }
    int32_t n_experts_used() const noexcept { return frugal_model_n_experts_used(handle_); }
    uint64_t kv_bytes_per_token() const noexcept { return frugal_model_kv_bytes_per_token(handle_); }
    std::string architecture() const { return detail::str(frugal_model_architecture(handle_)); }
    std::string name() const { return detail::str(frugal_model_name(handle_)); }
    int32_t token_bos() const noexcept { return frugal_model_token_bos(handle_); } // -1 if none
    int32_t token_eos() const noexcept { return frugal_model_token_eos(handle_); } // -1 if none
    bool is_eog(int32_t token) const noexcept { return frugal_model_token_is_eog(handle_, token) != 0; }

    // GGUF metadata: the number of entries, entry i's key, a key's value as text.
    int32_t meta_count() const noexcept { return frugal_model_meta_count(handle_); }
    std::string meta_key(int32_t i) const {
        return detail::read_buffer<std::string>(
            [&](char * buf, size_t cap, size_t * len, frugal_error ** err) {
                return frugal_model_meta_key(handle_, i, buf, cap, len, err);
            },
            64, true);
    }
    std::string meta_value(const std::string & key) const {
        return detail::read_buffer<std::string>(
            [&](char * buf, size_t cap, size_t * len, frugal_error ** err) {
                return frugal_model_meta_value(handle_, key.c_str(), buf, cap, len, err);
            },
            64, true);
    }
    std::vector<std::pair<std::string, std::string>> metadata() const {
        std::vector<std::pair<std::string, std::string>> out;
        const int32_t n = meta_count();
        out.reserve(size_t(n > 0 ? n : 0));
        for (int32_t i = 0; i < n; ++i) {
            std::string key = meta_key(i);
            std::string value = meta_value(key);
            out.emplace_back(std::move(key), std::move(value));
        }
        return out;
    }

    // The model's tokenizer (a new reference; it keeps the model alive).
    ::frugal::api::tokenizer tokenizer() const;

    // The C handle, still owned by this object (non-const: frugal_session_create takes one).
    frugal_model * handle() const noexcept { return handle_; }
    // Gives up ownership: the caller must frugal_model_free the result.
    frugal_model * release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    frugal_model * handle_ = nullptr;
};

inline model model::load(const std::string & path, const model_options & options) {
    struct progress_state {
        const std::function<bool(float)> * fn;
        std::exception_ptr thrown;
    };
    progress_state progress{&options.progress, nullptr};
    frugal_model_options o;
    frugal_model_options_init(&o, static_cast<uint32_t>(sizeof o)); // FRUGAL_MODEL_OPTIONS_INIT without its C cast
    o.n_threads = options.n_threads;
    o.use_mmap = options.use_mmap ? 1 : 0;
    o.repack_weights = options.repack_weights ? 1 : 0;
    if (options.progress) {
        o.progress = [](float fraction, void * user_data) -> int32_t {
            auto * p = static_cast<progress_state *>(user_data);
            try {
                return (*p->fn)(fraction) ? 0 : 1;
            } catch (...) {
                if (!p->thrown) p->thrown = std::current_exception();
                return 1; // stop; rethrown once frugal_model_load has returned
            }
        };
        o.progress_user_data = &progress;
    }
    frugal_model * m = nullptr;
    detail::error_slot slot;
    const frugal_status st = frugal_model_load(path.c_str(), &o, &m, slot.out());
    if (progress.thrown) {
        frugal_model_free(m);
        std::rethrow_exception(progress.thrown);
    }
    if (st < 0) slot.raise(st);
    return model(m);
}

// ---- tokenizer ----------------------------------------------------------------------------------

// One conversation turn: role "system", "user" or "assistant"; content UTF-8.
struct message {
    std::string role;
    std::string content;
};

// A tokenizer: immutable, shareable across threads. Move-only; owns one reference.
class tokenizer {
public:
    tokenizer() noexcept = default;
    explicit tokenizer(frugal_tokenizer * owned) noexcept : handle_(owned) {} // adopts a reference
    tokenizer(tokenizer && other) noexcept : handle_(other.release()) {}
    tokenizer & operator=(tokenizer && other) noexcept {
        if (this != &other) {
            frugal_tokenizer_free(handle_);
            handle_ = other.release();
        }
        return *this;
    }
    tokenizer(const tokenizer &) = delete;
    tokenizer & operator=(const tokenizer &) = delete;
    ~tokenizer() { frugal_tokenizer_free(handle_); }

    // A GGUF file (its tokenizer only), a Hugging Face folder with tokenizer.json, or that file.
    static tokenizer load(const std::string & path) {
        frugal_tokenizer * t = nullptr;
        detail::check([&](frugal_error ** err) { return frugal_tokenizer_load(path.c_str(), &t, err); });
        return tokenizer(t);
    }

    int32_t n_vocab() const noexcept { return frugal_tokenizer_n_vocab(handle_); }
    int32_t token_bos() const noexcept { return frugal_tokenizer_token_bos(handle_); } // -1 if none
    int32_t token_eos() const noexcept { return frugal_tokenizer_token_eos(handle_); } // -1 if none
    bool is_eog(int32_t token) const noexcept { return frugal_tokenizer_token_is_eog(handle_, token) != 0; }

    // Text -> ids. add_special: BOS/EOS as the vocabulary asks; parse_special: control-token texts
    // become those tokens (the defaults are what session::prompt does). Invalid UTF-8 throws
    // FRUGAL_ERR_INVALID_ARGUMENT naming the byte offset.
    std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = true) const {
        return detail::read_buffer<std::vector<int32_t>>(
            [&](int32_t * out, size_t cap, size_t * n, frugal_error ** err) {
                return frugal_tokenizer_encode(handle_, text.data(), text.size(), add_special ? 1 : 0,
                                               parse_special ? 1 : 0, out, cap, n, err);
            },
            text.size() + 8);
    }

    // Ids -> UTF-8 text. special: render control tokens.
    std::string decode(const int32_t * ids, size_t n_ids, bool special = false) const {
        return detail::read_buffer<std::string>(
            [&](char * buf, size_t cap, size_t * len, frugal_error ** err) {
                return frugal_tokenizer_decode(handle_, ids, n_ids, special ? 1 : 0, buf, cap, len, err);
            },
            n_ids * 4 + 16);
    }
    template <class Ids, std::enable_if_t<detail::is_id_range<Ids>::value, int> = 0>
    std::string decode(const Ids & ids, bool special = false) const {
        return decode(std::data(ids), std::size(ids), special);
    }
    std::string decode(std::initializer_list<int32_t> ids, bool special = false) const {
        return decode(ids.begin(), ids.size(), special);
    }

    // The built-in chat format the tokenizer calls for: "deepseek-r1", "deepseek-v3", "chatml", ...
    // or "none".
    std::string chat_format() const { return detail::str(frugal_tokenizer_chat_format(handle_)); }

    // Renders a conversation into prompt text (byte for byte the publisher's template; without
    // tools). format: the tokenizer's own (nullopt) or one of the names chat_format() gives. An
    // unknown role or format, invalid UTF-8 or format "none" throws FRUGAL_ERR_INVALID_ARGUMENT.
    std::string apply_chat_template(const std::vector<message> & messages, bool add_generation_prompt = true,
                                    const std::optional<std::string> & format = std::nullopt) const {
        std::vector<frugal_chat_message> c;
        c.reserve(messages.size());
        size_t guess = 256;
        for (const auto & m : messages) {
            c.push_back(frugal_chat_message{m.role.c_str(), m.content.data(), m.content.size()});
            guess += m.content.size() + 32;
        }
        return detail::read_buffer<std::string>(
            [&](char * buf, size_t cap, size_t * len, frugal_error ** err) {
                return frugal_chat_apply_template(handle_, format ? format->c_str() : nullptr, c.data(), c.size(),
                                                  add_generation_prompt ? 1 : 0, buf, cap, len, err);
            },
            guess);
    }

    frugal_tokenizer * handle() const noexcept { return handle_; }
    frugal_tokenizer * release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    frugal_tokenizer * handle_ = nullptr;
};

inline tokenizer model::tokenizer() const {
    frugal_tokenizer * t = nullptr;
    detail::check([&](frugal_error ** err) { return frugal_model_get_tokenizer(handle_, &t, err); });
    return ::frugal::api::tokenizer(t);
}

// ---- session ------------------------------------------------------------------------------------

// One generated token: its id and the UTF-8 text it completes (may be empty: a character split
// across tokens comes with the token that completes it).
struct token {
    int32_t id = -1;
    std::string text;
};

enum class text_kind : int32_t { content = FRUGAL_TEXT_CONTENT, reasoning = FRUGAL_TEXT_REASONING };

// A part of generated text: reasoning (between <think> and </think>, tags removed) or content;
// id is the token that produced it (a token whose text spans a tag gives two parts).
struct part {
    text_kind kind = text_kind::content;
    std::string text;
    int32_t id = -1;
};

// Logits of the most recent evaluation: [n_vocab] floats owned by the session, valid until the
// next call on it (copy with to_vector() to keep them). Empty before any evaluation. A contiguous
// range: in C++20 it converts to std::span<const float>.
class logits_view {
public:
    logits_view() noexcept = default;
    logits_view(const float * data, size_t size) noexcept : data_(data), size_(data ? size : 0) {}
    const float * data() const noexcept { return data_; }
    size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const float * begin() const noexcept { return data_; }
    const float * end() const noexcept { return data_ + size_; }
    float operator[](size_t i) const noexcept { return data_[i]; }
    std::vector<float> to_vector() const { return std::vector<float>(begin(), end()); }

private:
    const float * data_ = nullptr;
    size_t size_ = 0;
};

class session;

// The end of a generation range (its sentinel).
struct end_of_generation {};

// A single-pass input range over what a session generates (session::tokens / session::parts).
// Each step pulls from the session: begin() pulls the first item, ++ the next one. It ends when
// the model samples an end-of-generation token (after any text that token released) or when
// max_tokens tokens have been sampled; a failing pull (context full, cancelled ...) throws error.
// The session must outlive the range and is not to be used otherwise while iterating.
template <class Item>
class generation_range {
public:
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = Item;
        using difference_type = std::ptrdiff_t;
        using pointer = const Item *;
        using reference = const Item &;

        iterator() = default;
        reference operator*() const noexcept { return item_; }
        pointer operator->() const noexcept { return &item_; }
        iterator & operator++() {
            advance();
            return *this;
        }
        // *it++ works, as an input iterator promises: the proxy holds the item before the step.
        struct postfix_proxy {
            Item item;
            const Item & operator*() const noexcept { return item; }
        };
        postfix_proxy operator++(int) {
            postfix_proxy before{std::move(item_)};
            advance();
            return before;
        }
        // All four spelled out: C++17 needs them; C++20 prefers these to the rewritten forms.
        friend bool operator==(const iterator & it, end_of_generation) noexcept { return it.session_ == nullptr; }
        friend bool operator==(end_of_generation, const iterator & it) noexcept { return it.session_ == nullptr; }
        friend bool operator!=(const iterator & it, end_of_generation) noexcept { return it.session_ != nullptr; }
        friend bool operator!=(end_of_generation, const iterator & it) noexcept { return it.session_ != nullptr; }

    private:
        friend class generation_range;
        iterator(session * s, size_t budget) : session_(s), budget_(budget) { advance(); }
        void advance();

        session * session_ = nullptr; // nullptr = past the end
        size_t budget_ = 0;           // tokens that may still be sampled
        Item item_{};
    };

    iterator begin() { return iterator(session_, budget_); }
    end_of_generation end() const noexcept { return {}; }

private:
    friend class session;
    generation_range(session & s, size_t max_tokens) noexcept : session_(&s), budget_(max_tokens) {}
    static bool pull(session & s, Item & out, bool & fresh);

    session * session_;
    size_t budget_;
};

using token_range = generation_range<token>;
using part_range = generation_range<part>;

// The KV cache's element type (frugal_session_options.kv_type).
enum class kv_cache_type : int32_t { f32 = FRUGAL_KV_F32, f16 = FRUGAL_KV_F16, q8_0 = FRUGAL_KV_Q8_0 };

struct session_options {
    int32_t n_ctx = 0;                 // positions; 0 = min(training context, 4096)
    kv_cache_type kv_type = kv_cache_type::f16; // f16: half the memory (default); q8_0: about a quarter; f32: values as computed
};

// A conversation: KV cache + sampler over a model. Move-only; used by one thread at a time
// (cancel() excepted). It keeps its model's weights alive.
class session {
public:
    session() noexcept = default;
    // A session with a KV cache for n_ctx positions (0 = min(training context, 4096)).
    explicit session(const model & m, int32_t n_ctx = 0) : session(m, session_options{n_ctx, kv_cache_type::f16}) {}
    session(const model & m, const session_options & options) {
        frugal_session_options o;
        // FRUGAL_SESSION_OPTIONS_INIT without its C cast
        frugal_session_options_init(&o, static_cast<uint32_t>(sizeof o));
        o.n_ctx = options.n_ctx;
        o.kv_type = static_cast<int32_t>(options.kv_type);
        detail::check([&](frugal_error ** err) { return frugal_session_create_v2(m.handle(), &o, &handle_, err); });
    }
    explicit session(frugal_session * owned) noexcept : handle_(owned) {} // adopts the handle
    session(session && other) noexcept
        : handle_(other.release()), piece_(std::move(other.piece_)), sampled_(other.sampled_),
          end_pending_(other.end_pending_), done_(other.done_) {}
    session & operator=(session && other) noexcept {
        if (this != &other) {
            frugal_session_free(handle_);
            handle_ = other.release();
            piece_ = std::move(other.piece_);
            sampled_ = other.sampled_;
            end_pending_ = other.end_pending_;
            done_ = other.done_;
        }
        return *this;
    }
    session(const session &) = delete;
    session & operator=(const session &) = delete;
    ~session() { frugal_session_free(handle_); }

    int32_t n_ctx() const noexcept { return frugal_session_n_ctx(handle_); }
    int32_t n_past() const noexcept { return frugal_session_n_past(handle_); } // positions used
    uint64_t kv_bytes() const noexcept { return frugal_session_kv_bytes(handle_); }
    kv_cache_type kv_type() const noexcept { return static_cast<kv_cache_type>(frugal_session_kv_type(handle_)); }

    // Sampling and run knobs, by key (FRUGAL_PARAM_*); out-of-range values throw
    // FRUGAL_ERR_INVALID_ARGUMENT naming the knob and the value. Chainable.
    session & set_param_f32(frugal_param key, float value) {
        detail::check([&](frugal_error ** err) { return frugal_session_set_param_f32(handle_, key, value, err); });
        return *this;
    }
    session & set_param_i64(frugal_param key, int64_t value) {
        detail::check([&](frugal_error ** err) { return frugal_session_set_param_i64(handle_, key, value, err); });
        return *this;
    }
    session & set_temperature(float t) { return set_param_f32(FRUGAL_PARAM_TEMPERATURE, t); } // <= 0: greedy
    session & set_top_k(int64_t k) { return set_param_i64(FRUGAL_PARAM_TOP_K, k); }           // 0 = off
    session & set_top_p(float p) { return set_param_f32(FRUGAL_PARAM_TOP_P, p); }             // (0, 1]
    session & set_min_p(float p) { return set_param_f32(FRUGAL_PARAM_MIN_P, p); }             // [0, 1]
    session & set_seed(int64_t seed) { return set_param_i64(FRUGAL_PARAM_SEED, seed); }
    session & set_repeat_penalty(float p) { return set_param_f32(FRUGAL_PARAM_REPEAT_PENALTY, p); } // 1 = off
    session & set_repeat_last_n(int64_t n) { return set_param_i64(FRUGAL_PARAM_REPEAT_LAST_N, n); }
    session & set_n_threads(int64_t n) { return set_param_i64(FRUGAL_PARAM_N_THREADS, n); }

    // Evaluates prompt text (BOS added at the start of the context when the model asks for it;
    // special-token texts recognised) or token ids: any contiguous container of int32_t
    // (std::vector, std::array, std::span, a C array), a braced list, or pointer + count.
    // FRUGAL_ERR_CONTEXT_FULL when it does not fit (nothing evaluated).
    void prompt(std::string_view text) {
        clear_state();
        detail::check([&](frugal_error ** err) { return frugal_session_prompt(handle_, text.data(), text.size(), err); });
    }
    void prompt_tokens(const int32_t * ids, size_t n_ids) {
        clear_state();
        detail::check([&](frugal_error ** err) { return frugal_session_prompt_tokens(handle_, ids, n_ids, err); });
    }
    template <class Ids, std::enable_if_t<detail::is_id_range<Ids>::value, int> = 0>
    void prompt_tokens(const Ids & ids) {
        prompt_tokens(std::data(ids), std::size(ids));
    }
    void prompt_tokens(std::initializer_list<int32_t> ids) { prompt_tokens(ids.begin(), ids.size()); }

    // Pulls one token. std::nullopt when the model ended the generation (sampled an
    // end-of-generation token; done() is then true). That token itself is not returned, except
    // when it released text held back until then (an incomplete character at the very end): that
    // text comes as one last token with the end-of-generation id, and the following call gives
    // std::nullopt. Pulling again afterwards asks the model for more (a new prompt is usual).
    std::optional<token> next() {
        token t;
        bool fresh = false;
        if (!pull(t, fresh)) return std::nullopt;
        return t;
    }
    // Like next(), with the text split into reasoning and content (frugal_session_next_part): a
    // token whose text spans a tag gives two parts with its id, one per call; held text comes out
    // at the end. Use either next() or next_part() for one generation, not both.
    std::optional<part> next_part() {
        part p;
        bool fresh = false;
        if (!pull(p, fresh)) return std::nullopt;
        return p;
    }

    // Range-for over generated tokens (or parts): at most max_tokens tokens are sampled; the range
    // ends early at the end of generation. A part range counts tokens, not parts: the rest of the
    // last token's text (its second part, when it spans </think>) then stays for the next pull.
    //     for (const auto & t : s.tokens(64)) std::cout << t.text;
    token_range tokens(size_t max_tokens);
    part_range parts(size_t max_tokens);

    // True once a pull met the end of generation (until the next prompt, reset or pull).
    bool done() const noexcept { return done_; }

    // Forgets the conversation (the KV cache stays allocated) and reseeds the sampler.
    void reset() {
        clear_state();
        detail::check([&](frugal_error ** err) { return frugal_session_reset(handle_, err); });
    }

    // Logits of the most recent evaluation (see logits_view).
    logits_view logits() const noexcept {
        int32_t n = 0;
        const float * p = frugal_session_logits(handle_, &n);
        return logits_view(p, p && n > 0 ? size_t(n) : 0);
    }

    // Asks a running prompt / pull on this session to stop: it throws error with
    // FRUGAL_ERR_CANCELLED and the session stays usable. Safe from any thread; a no-op when idle.
    void cancel() const noexcept { frugal_session_cancel(handle_); }

    frugal_session * handle() const noexcept { return handle_; }
    frugal_session * release() noexcept {
        clear_state();
        return std::exchange(handle_, nullptr);
    }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    template <class>
    friend class generation_range;

    void clear_state() noexcept {
        sampled_ = false;
        end_pending_ = false;
        done_ = false;
    }

    // Calls frugal_session_next or _next_part (f(buf, cap, out_len, err)) with the piece buffer,
    // growing it while the library answers FRUGAL_ERR_BUFFER_TOO_SMALL (it keeps the token then).
    template <class F>
    frugal_status pull_piece(F && f, size_t & len) {
        for (;;) {
            detail::error_slot slot;
            const frugal_status st = f(piece_.empty() ? nullptr : &piece_[0], piece_.size(), &len, slot.out());
            if (st == FRUGAL_ERR_BUFFER_TOO_SMALL) {
                piece_.resize(detail::grow(piece_.size(), len));
                continue;
            }
            if (st < 0) slot.raise(st);
            return st;
        }
    }

    // One pull. Returns false at the end of generation. fresh: the pull sampled a new token (for
    // the ranges' budgets; a part can continue the previous token without sampling).
    bool pull(token & out, bool & fresh) {
        fresh = false;
        if (end_pending_) {
            end_pending_ = false;
            return false;
        }
        int32_t id = -1;
        size_t len = 0;
        const frugal_status st = pull_piece(
            [&](char * buf, size_t cap, size_t * out_len, frugal_error ** err) {
                return frugal_session_next(handle_, &id, buf, cap, out_len, err);
            },
            len);
        fresh = true; // every frugal_session_next call samples
        if (!after_pull(st, len)) return false;
        out.id = id;
        out.text.assign(piece_.data(), len);
        return true;
    }
    bool pull(part & out, bool & fresh) {
        fresh = false;
        if (end_pending_) {
            end_pending_ = false;
            return false;
        }
        // A pull samples when nothing was sampled since the prompt (or the end of generation), or
        // when it evaluated the pending token first (n_past moves); else it continues a token.
        const bool had_pending = sampled_;
        const int32_t n_past_before = frugal_session_n_past(handle_);
        int32_t id = -1, kind = FRUGAL_TEXT_CONTENT;
        size_t len = 0;
        const frugal_status st = pull_piece(
            [&](char * buf, size_t cap, size_t * out_len, frugal_error ** err) {
                return frugal_session_next_part(handle_, &id, &kind, buf, cap, out_len, err);
            },
            len);
        fresh = !had_pending || frugal_session_n_past(handle_) != n_past_before;
        if (!after_pull(st, len)) return false;
        out.kind = kind == FRUGAL_TEXT_REASONING ? text_kind::reasoning : text_kind::content;
        out.id = id;
        out.text.assign(piece_.data(), len);
        return true;
    }
    // Bookkeeping after a pull that succeeded; false when there is nothing to deliver (the end).
    bool after_pull(frugal_status st, size_t len) noexcept {
        done_ = st == FRUGAL_DONE;
        sampled_ = !done_;              // the end-of-generation token is not part of the conversation
        end_pending_ = done_ && len > 0; // text released at the end: deliver it, then report the end
        return !(done_ && len == 0);
    }

    frugal_session * handle_ = nullptr;
    std::string piece_;        // reused buffer for pieces; grows on demand
    bool sampled_ = false;     // a token was sampled since the last prompt / reset / end
    bool end_pending_ = false; // the next pull reports the end of generation
    bool done_ = false;        // the last pull met the end of generation
};

inline token_range session::tokens(size_t max_tokens) { return token_range(*this, max_tokens); }
inline part_range session::parts(size_t max_tokens) { return part_range(*this, max_tokens); }

template <class Item>
bool generation_range<Item>::pull(session & s, Item & out, bool & fresh) {
    return s.pull(out, fresh);
}

template <class Item>
void generation_range<Item>::iterator::advance() {
    if (session_ == nullptr) return;
    if (budget_ == 0) {
        session_ = nullptr;
        return;
    }
    bool fresh = false;
    bool got = false;
    try {
        got = generation_range::pull(*session_, item_, fresh);
    } catch (...) {
        session_ = nullptr;
        throw;
    }
    if (!got) {
        session_ = nullptr;
        return;
    }
    if (fresh) --budget_;
}

} // namespace api
} // namespace frugal

#undef FRUGAL_HPP_CPLUSPLUS
#endif // FRUGAL_HPP
