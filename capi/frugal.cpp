// frugal.cpp - the C ABI: argument validation, then a thin call into lib/, with every C++
// exception mapped to a status code and an frugal_error (FRUGAL_API_BEGIN / FRUGAL_API_END).
#include "frugal.h"
#include "frugal_experimental.h"

#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string>

#include "models/deepseek2.hpp"
#include "models/model.hpp"
#include "runtime/chat.hpp"
#include "runtime/session.hpp"
#include "runtime/tokenizer.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

struct frugal_error {
    frugal_status code;
    std::string message;
};

struct frugal_model {
    std::shared_ptr<const frugal::model> impl;
};

struct frugal_tokenizer {
    std::shared_ptr<const frugal::tokenizer> impl; // may share ownership of a model
};

struct frugal_session {
    frugal_session(std::shared_ptr<const frugal::model> model, int64_t n_ctx, frugal::dtype kv_type)
        : impl(std::move(model), n_ctx, kv_type) {}

    frugal::session impl;
    // The token next / next_part sampled last and what of its text the caller has not received:
    // the piece for next (its buffer was too small), the parts still to come for next_part.
    int32_t held_token = -1;
    bool held_done = false;
    std::string held_piece;
    std::vector<frugal::text_part> held_parts;
    size_t parts_given = 0;

    void drop_held() {
        held_token = -1;
        held_done = false;
        held_piece.clear();
        held_parts.clear();
        parts_given = 0;
    }
};

namespace {

static_assert(FRUGAL_OK == int32_t(frugal::status::ok) && FRUGAL_DONE == int32_t(frugal::status::done) &&
              FRUGAL_ERR_INVALID_ARGUMENT == int32_t(frugal::status::invalid_argument) &&
              FRUGAL_ERR_OUT_OF_MEMORY == int32_t(frugal::status::out_of_memory) &&
              FRUGAL_ERR_IO == int32_t(frugal::status::io) &&
              FRUGAL_ERR_UNSUPPORTED_MODEL == int32_t(frugal::status::unsupported_model) &&
              FRUGAL_ERR_CONTEXT_FULL == int32_t(frugal::status::context_full) &&
              FRUGAL_ERR_CANCELLED == int32_t(frugal::status::cancelled) &&
              FRUGAL_ERR_BUFFER_TOO_SMALL == int32_t(frugal::status::buffer_too_small) &&
              FRUGAL_ERR_STRUCT_SIZE == int32_t(frugal::status::struct_size) &&
              FRUGAL_ERR_INVALID_MODEL == int32_t(frugal::status::invalid_model) &&
              FRUGAL_ERR_INTERNAL == int32_t(frugal::status::internal),
              "capi status codes and frugal::status must agree");

frugal_status fail(frugal_error ** err, frugal_status code, std::string message) noexcept {
    if (err) {
        // If even the error cannot be allocated, the caller still gets the code.
        *err = new (std::nothrow) frugal_error{code, {}};
        if (*err) {
            try {
                (*err)->message = std::move(message);
            } catch (...) {
            }
        }
    }
    return code;
}

[[noreturn]] void invalid(const char * fmt_text, auto &&... args) {
    frugal::throw_error(frugal::status::invalid_argument, fmt::runtime(fmt_text), args...);
}

// Copies text into a caller buffer; FRUGAL_ERR_BUFFER_TOO_SMALL with the size needed otherwise.
frugal_status copy_out(const std::string & s, char * buf, size_t cap, size_t * out_len, bool nul_terminate) {
    const size_t need = s.size() + (nul_terminate ? 1 : 0);
    *out_len = need;
    if (need > cap) return FRUGAL_ERR_BUFFER_TOO_SMALL;
    if (!s.empty()) std::memcpy(buf, s.data(), s.size());
    if (nul_terminate) buf[s.size()] = '\0';
    return FRUGAL_OK;
}

} // namespace

#define FRUGAL_API_BEGIN try {
#define FRUGAL_API_END                                                                              \
    }                                                                                               \
    catch (const frugal::error & e) {                                                               \
        return fail(err, frugal_status(e.code()), e.what());                                        \
    }                                                                                               \
    catch (const std::bad_alloc &) {                                                                \
        return fail(err, FRUGAL_ERR_OUT_OF_MEMORY, "out of memory");                                \
    }                                                                                               \
    catch (const std::exception & e) {                                                              \
        return fail(err, FRUGAL_ERR_INTERNAL, std::string("internal error: ") + e.what());          \
    }                                                                                               \
    catch (...) {                                                                                   \
        return fail(err, FRUGAL_ERR_INTERNAL, "internal error: unknown exception");                 \
    }

#define FRUGAL_REQUIRE(cond, ...)     \
    do {                              \
        if (!(cond)) invalid(__VA_ARGS__); \
    } while (0)

namespace {

// The *_options_init rule for an options struct of type T whose defaults are `d`: an older
// caller's smaller struct gets the fields it knows, a newer caller's larger one zeros past ours.
template <class T>
frugal_status init_options(T * opts, uint32_t struct_size, T d) {
    if (!opts || struct_size < sizeof(uint32_t)) return FRUGAL_ERR_INVALID_ARGUMENT;
    d.struct_size = struct_size < sizeof d ? struct_size : uint32_t(sizeof d);
    std::memset(static_cast<void *>(opts), 0, struct_size);
    std::memcpy(static_cast<void *>(opts), &d, d.struct_size);
    opts->struct_size = struct_size;
    return FRUGAL_OK;
}

// The options a call runs with: the defaults, overwritten by the fields *opts covers (opts may be
// NULL). Its struct_size must reach past `min_size`; a larger struct from a newer header is
// accepted only if the fields this library does not know are zero (FRUGAL_ERR_STRUCT_SIZE).
template <class T>
T read_options(const T * opts, size_t min_size, const char * fn, frugal_status (*init)(T *, uint32_t)) {
    T o{};
    init(&o, sizeof o);
    if (!opts) return o;
    FRUGAL_REQUIRE(opts->struct_size >= min_size, "{}: options struct_size {} is too small", fn, opts->struct_size);
    const auto * bytes = reinterpret_cast<const unsigned char *>(opts);
    for (size_t i = sizeof o; i < opts->struct_size; ++i)
        if (bytes[i] != 0)
            frugal::throw_error(frugal::status::struct_size,
                                "{}: options struct_size {} has non-zero fields past byte {}", fn, opts->struct_size,
                                sizeof o);
    std::memcpy(&o, opts, std::min<size_t>(opts->struct_size, sizeof o));
    return o;
}

} // namespace

extern "C" {

uint32_t frugal_version_number(void) { return FRUGAL_VERSION_NUMBER; }
const char * frugal_version_string(void) { return FRUGAL_VERSION_STRING; }

const char * frugal_status_string(frugal_status s) {
    switch (s) {
    case FRUGAL_OK: return "ok";
    case FRUGAL_DONE: return "done";
    case FRUGAL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case FRUGAL_ERR_OUT_OF_MEMORY: return "out of memory";
    case FRUGAL_ERR_IO: return "i/o error";
    case FRUGAL_ERR_UNSUPPORTED_MODEL: return "unsupported model";
    case FRUGAL_ERR_CONTEXT_FULL: return "context full";
    case FRUGAL_ERR_CANCELLED: return "cancelled";
    case FRUGAL_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case FRUGAL_ERR_STRUCT_SIZE: return "unknown fields in options struct";
    case FRUGAL_ERR_INVALID_MODEL: return "invalid model file";
    case FRUGAL_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

frugal_status frugal_error_code(const frugal_error * err) { return err ? err->code : FRUGAL_OK; }
const char * frugal_error_message(const frugal_error * err) { return err ? err->message.c_str() : ""; }
void frugal_error_free(frugal_error * err) { delete err; }

void frugal_set_log_callback(frugal_log_fn fn, void * user_data, int32_t min_level) {
    frugal::log::set_sink(fn, user_data, frugal::log::level(min_level < 0 ? 0 : (min_level > 3 ? 3 : min_level)));
}

frugal_status frugal_model_options_init(frugal_model_options * opts, uint32_t struct_size) {
    frugal_model_options d{};
    d.n_threads = 0;
    d.use_mmap = 1;
    d.repack_weights = 1;
    return init_options(opts, struct_size, d);
}

frugal_status frugal_model_load(const char * path_utf8, const frugal_model_options * opts, frugal_model ** out,
                                frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(path_utf8, "frugal_model_load: path is NULL");
    FRUGAL_REQUIRE(out, "frugal_model_load: out is NULL");
    const frugal_model_options o = read_options(opts, offsetof(frugal_model_options, progress), "frugal_model_load",
                                                &frugal_model_options_init);
    FRUGAL_REQUIRE(o.n_threads >= 0 && o.n_threads <= 1024, "frugal_model_load: n_threads {} is out of range [0, 1024]",
                   o.n_threads);
    FRUGAL_REQUIRE(o.use_mmap == 0 || o.use_mmap == 1, "frugal_model_load: use_mmap {} is not 0 or 1", o.use_mmap);
    FRUGAL_REQUIRE(o.reserved0 == 0, "frugal_model_load: reserved0 is {}, must be 0", o.reserved0);
    FRUGAL_REQUIRE(o.repack_weights >= 0 && o.repack_weights <= 2, "frugal_model_load: repack_weights {} is not 0, 1 or 2",
                   o.repack_weights);
    FRUGAL_REQUIRE(o.reserved1 == 0, "frugal_model_load: reserved1 is {}, must be 0", o.reserved1);
    frugal::load_options lo;
    lo.n_threads = o.n_threads;
    lo.use_mmap = o.use_mmap != 0;
    constexpr frugal::repack k_repack[] = {frugal::repack::never, frugal::repack::where_faster, frugal::repack::always};
    lo.repack_weights = k_repack[o.repack_weights];
    if (o.progress) {
        lo.progress = [fn = o.progress, ud = o.progress_user_data](float f) { return fn(f, ud) == 0; };
    }
    auto m = std::make_unique<frugal_model>();
    m->impl = frugal::load_model(path_utf8, lo);
    *out = m.release();
    return FRUGAL_OK;
    FRUGAL_API_END
}

void frugal_model_free(frugal_model * model) { delete model; }

#define FRUGAL_MODEL_GETTER(type, name, expr, fallback)                  \
    type frugal_model_##name(const frugal_model * model) {               \
        if (!model) return fallback;                                     \
        const auto & c = model->impl->config();                          \
        (void)c;                                                         \
        return expr;                                                     \
    }
FRUGAL_MODEL_GETTER(int32_t, n_vocab, int32_t(c.n_vocab), 0)
FRUGAL_MODEL_GETTER(int32_t, n_ctx_train, int32_t(std::min<int64_t>(c.n_ctx_train, INT32_MAX)), 0)
FRUGAL_MODEL_GETTER(int32_t, n_embd, int32_t(c.n_embd), 0)
FRUGAL_MODEL_GETTER(int32_t, n_layers, int32_t(c.n_layer), 0)
FRUGAL_MODEL_GETTER(int32_t, n_heads, int32_t(c.n_head), 0)
FRUGAL_MODEL_GETTER(int32_t, n_heads_kv, int32_t(c.n_head_kv), 0)
FRUGAL_MODEL_GETTER(uint64_t, n_params, uint64_t(c.n_params), 0)
FRUGAL_MODEL_GETTER(uint64_t, size_bytes, c.weight_bytes, 0)
FRUGAL_MODEL_GETTER(int32_t, n_experts, int32_t(c.n_expert), 0)
FRUGAL_MODEL_GETTER(int32_t, n_experts_used, int32_t(c.n_expert_used), 0)
FRUGAL_MODEL_GETTER(uint64_t, kv_bytes_per_token, c.kv_bytes_per_token(), 0)
FRUGAL_MODEL_GETTER(const char *, architecture, c.arch_name.c_str(), "")
FRUGAL_MODEL_GETTER(const char *, name, c.name.c_str(), "")
FRUGAL_MODEL_GETTER(int32_t, token_bos, model->impl->tokenizer().get_vocab().bos, -1)
FRUGAL_MODEL_GETTER(int32_t, token_eos, model->impl->tokenizer().get_vocab().eos, -1)
FRUGAL_MODEL_GETTER(int32_t, meta_count, int32_t(model->impl->file().metadata().size()), 0)
#undef FRUGAL_MODEL_GETTER

int32_t frugal_model_token_is_eog(const frugal_model * model, int32_t token) {
    if (!model || token < 0 || token >= model->impl->config().n_vocab) return 0;
    return model->impl->tokenizer().is_eog(token) ? 1 : 0;
}

frugal_status frugal_model_meta_key(const frugal_model * model, int32_t i, char * buf, size_t cap, size_t * out_len,
                                    frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(model && out_len && (buf || cap == 0), "frugal_model_meta_key: NULL model, buf or out_len");
    const auto & md = model->impl->file().metadata();
    FRUGAL_REQUIRE(i >= 0 && size_t(i) < md.size(), "frugal_model_meta_key: index {} is outside [0, {})", i, md.size());
    return copy_out(md[size_t(i)].first, buf, cap, out_len, true);
    FRUGAL_API_END
}

frugal_status frugal_model_meta_value(const frugal_model * model, const char * key, char * buf, size_t cap,
                                      size_t * out_len, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(model && key && out_len && (buf || cap == 0), "frugal_model_meta_value: NULL argument");
    const auto * v = model->impl->file().find(key);
    FRUGAL_REQUIRE(v, "frugal_model_meta_value: no metadata key '{}'", key);
    // Strings are returned whole; other values as their display text.
    const auto * s = std::get_if<std::string>(&v->v);
    return copy_out(s ? *s : v->to_display(), buf, cap, out_len, true);
    FRUGAL_API_END
}

} // extern "C"

namespace {

frugal_status encode_into(const frugal::tokenizer & tok, const char * text, size_t text_len, int32_t add_special,
                          int32_t parse_special, int32_t * out, size_t cap, size_t * out_n) {
    const auto ids = tok.encode(std::string_view(text ? text : "", text_len), add_special != 0, parse_special != 0);
    *out_n = ids.size();
    if (ids.size() > cap) return FRUGAL_ERR_BUFFER_TOO_SMALL;
    std::copy(ids.begin(), ids.end(), out);
    return FRUGAL_OK;
}

frugal::chat_role chat_role_of(const char * role, size_t index) {
    const std::string_view r = role ? role : "(null)";
    if (r == "system") return frugal::chat_role::system;
    if (r == "user") return frugal::chat_role::user;
    if (r == "assistant") return frugal::chat_role::assistant;
    invalid("frugal_chat_apply_template: messages[{}].role '{}' is not system, user or assistant", index, r);
}

} // namespace

extern "C" {

frugal_status frugal_tokenize(const frugal_model * model, const char * text, size_t text_len, int32_t add_special,
                              int32_t parse_special, int32_t * out, size_t cap, size_t * out_n, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(model && out_n && (text || text_len == 0) && (out || cap == 0), "frugal_tokenize: NULL argument");
    return encode_into(model->impl->tokenizer(), text, text_len, add_special, parse_special, out, cap, out_n);
    FRUGAL_API_END
}

frugal_status frugal_detokenize(const frugal_model * model, const int32_t * tokens, size_t n_tokens, int32_t special,
                                char * buf, size_t cap, size_t * out_len, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(model && out_len && (tokens || n_tokens == 0) && (buf || cap == 0),
                   "frugal_detokenize: NULL argument");
    const auto text = model->impl->tokenizer().decode(std::span(tokens, n_tokens), special != 0);
    return copy_out(text, buf, cap, out_len, false);
    FRUGAL_API_END
}

frugal_status frugal_tokenizer_load(const char * path, frugal_tokenizer ** out, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(path && out, "frugal_tokenizer_load: NULL path or out");
    auto tok = std::make_shared<const frugal::tokenizer>(frugal::vocab::load(std::filesystem::u8path(path)));
    *out = new frugal_tokenizer{std::move(tok)};
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugal_model_get_tokenizer(frugal_model * model, frugal_tokenizer ** out, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(model && out, "frugal_model_get_tokenizer: NULL model or out");
    // shares the model's ownership: the tokenizer lives inside it
    *out = new frugal_tokenizer{std::shared_ptr<const frugal::tokenizer>(model->impl, &model->impl->tokenizer())};
    return FRUGAL_OK;
    FRUGAL_API_END
}

void frugal_tokenizer_free(frugal_tokenizer * tokenizer) { delete tokenizer; }

int32_t frugal_tokenizer_n_vocab(const frugal_tokenizer * t) { return t ? t->impl->n_vocab() : 0; }
int32_t frugal_tokenizer_token_bos(const frugal_tokenizer * t) { return t ? t->impl->get_vocab().bos : -1; }
int32_t frugal_tokenizer_token_eos(const frugal_tokenizer * t) { return t ? t->impl->get_vocab().eos : -1; }
int32_t frugal_tokenizer_token_is_eog(const frugal_tokenizer * t, int32_t token) {
    return t && t->impl->is_eog(token) ? 1 : 0;
}

frugal_status frugal_tokenizer_encode(const frugal_tokenizer * t, const char * text, size_t text_len,
                                      int32_t add_special, int32_t parse_special, int32_t * out, size_t cap,
                                      size_t * out_n, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(t && out_n && (text || text_len == 0) && (out || cap == 0), "frugal_tokenizer_encode: NULL argument");
    return encode_into(*t->impl, text, text_len, add_special, parse_special, out, cap, out_n);
    FRUGAL_API_END
}

frugal_status frugal_tokenizer_decode(const frugal_tokenizer * t, const int32_t * tokens, size_t n_tokens,
                                      int32_t special, char * buf, size_t cap, size_t * out_len, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(t && out_len && (tokens || n_tokens == 0) && (buf || cap == 0),
                   "frugal_tokenizer_decode: NULL argument");
    return copy_out(t->impl->decode(std::span(tokens, n_tokens), special != 0), buf, cap, out_len, false);
    FRUGAL_API_END
}

const char * frugal_tokenizer_chat_format(const frugal_tokenizer * t) {
    // chat_format_name views string literals: NUL-terminated, static
    return frugal::chat_format_name(t ? t->impl->chat_format() : frugal::chat_format::none).data();
}

frugal_status frugal_chat_apply_template(const frugal_tokenizer * t, const char * format,
                                         const frugal_chat_message * messages, size_t n_messages,
                                         int32_t add_generation_prompt, char * buf, size_t cap, size_t * out_len,
                                         frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(t && out_len && (messages || n_messages == 0) && (buf || cap == 0),
                   "frugal_chat_apply_template: NULL argument");
    frugal::chat_format chosen = t->impl->chat_format();
    if (format) {
        const auto named = frugal::chat_format_from_name(format);
        FRUGAL_REQUIRE(named, "frugal_chat_apply_template: unknown chat format '{}'", format);
        chosen = *named;
    }
    std::vector<frugal::chat_message> turns;
    turns.reserve(n_messages);
    for (size_t i = 0; i < n_messages; ++i) {
        const frugal_chat_message & m = messages[i];
        FRUGAL_REQUIRE(m.content || m.content_len == 0, "frugal_chat_apply_template: messages[{}].content is NULL", i);
        const std::string_view content(m.content ? m.content : "", m.content_len);
        size_t bad = 0;
        FRUGAL_REQUIRE(frugal::is_valid_utf8(content, &bad),
                       "frugal_chat_apply_template: messages[{}].content has invalid utf-8 at byte offset {}", i, bad);
        turns.push_back({chat_role_of(m.role, i), std::string(content)});
    }
    return copy_out(t->impl->apply_chat_template(chosen, turns, add_generation_prompt != 0), buf, cap, out_len, false);
    FRUGAL_API_END
}

static_assert(FRUGAL_KV_F32 == int32_t(frugal::dtype::f32) && FRUGAL_KV_F16 == int32_t(frugal::dtype::f16) &&
              FRUGAL_KV_Q8_0 == int32_t(frugal::dtype::q8_0));

frugal_status frugal_session_options_init(frugal_session_options * opts, uint32_t struct_size) {
    frugal_session_options d{};
    d.n_ctx = 0;
    d.kv_type = int32_t(frugal::k_default_kv_type);
    return init_options(opts, struct_size, d);
}

frugal_status frugal_session_create_v2(frugal_model * model, const frugal_session_options * opts,
                                       frugal_session ** out, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(model && out, "frugal_session_create_v2: NULL model or out");
    const frugal_session_options o = read_options(opts, offsetof(frugal_session_options, reserved0),
                                                  "frugal_session_create_v2", &frugal_session_options_init);
    FRUGAL_REQUIRE(o.n_ctx >= 0, "frugal_session_create_v2: n_ctx {} is negative", o.n_ctx);
    FRUGAL_REQUIRE(o.kv_type == FRUGAL_KV_F32 || o.kv_type == FRUGAL_KV_F16 || o.kv_type == FRUGAL_KV_Q8_0,
                   "frugal_session_create_v2: kv_type {} is not FRUGAL_KV_F32 (0), FRUGAL_KV_F16 (1) or FRUGAL_KV_Q8_0 (8)",
                   o.kv_type);
    FRUGAL_REQUIRE(o.reserved0 == 0, "frugal_session_create_v2: reserved0 is {}, must be 0", o.reserved0);
    *out = new frugal_session(model->impl, o.n_ctx, frugal::dtype(o.kv_type));
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugal_session_create(frugal_model * model, int32_t n_ctx, frugal_session ** out, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(model && out, "frugal_session_create: NULL model or out");
    FRUGAL_REQUIRE(n_ctx >= 0, "frugal_session_create: n_ctx {} is negative", n_ctx);
    *out = new frugal_session(model->impl, n_ctx, frugal::k_default_kv_type);
    return FRUGAL_OK;
    FRUGAL_API_END
}

void frugal_session_free(frugal_session * session) { delete session; }

int32_t frugal_session_n_ctx(const frugal_session * s) { return s ? int32_t(s->impl.n_ctx()) : 0; }
int32_t frugal_session_n_past(const frugal_session * s) { return s ? int32_t(s->impl.n_past()) : 0; }
uint64_t frugal_session_kv_bytes(const frugal_session * s) { return s ? s->impl.kv_bytes() : 0; }
int32_t frugal_session_kv_type(const frugal_session * s) { return s ? int32_t(s->impl.kv_type()) : -1; }

frugal_status frugal_session_reset(frugal_session * s, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s, "frugal_session_reset: session is NULL");
    s->impl.reset();
    s->drop_held();
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugal_session_set_param_f32(frugal_session * s, frugal_param key, float value, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s, "frugal_session_set_param_f32: session is NULL");
    auto p = s->impl.sampling();
    switch (key) {
    case FRUGAL_PARAM_TEMPERATURE: p.temperature = value; break;
    case FRUGAL_PARAM_TOP_P: p.top_p = value; break;
    case FRUGAL_PARAM_MIN_P: p.min_p = value; break;
    case FRUGAL_PARAM_REPEAT_PENALTY: p.repeat_penalty = value; break;
    default: invalid("frugal_session_set_param_f32: key {} is not a float parameter", key);
    }
    s->impl.set_sampling(p); // validates; throws with the parameter's name and value
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugal_session_set_param_i64(frugal_session * s, frugal_param key, int64_t value, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s, "frugal_session_set_param_i64: session is NULL");
    auto p = s->impl.sampling();
    switch (key) {
    case FRUGAL_PARAM_TOP_K:
        FRUGAL_REQUIRE(value >= 0 && value <= INT32_MAX, "top_k {} is out of range [0, {}]", value, INT32_MAX);
        p.top_k = int32_t(value);
        break;
    case FRUGAL_PARAM_SEED: p.seed = uint64_t(value); break;
    case FRUGAL_PARAM_REPEAT_LAST_N:
        FRUGAL_REQUIRE(value >= 0 && value <= INT32_MAX, "repeat_last_n {} is out of range [0, {}]", value, INT32_MAX);
        p.repeat_last_n = int32_t(value);
        break;
    case FRUGAL_PARAM_N_THREADS:
        FRUGAL_REQUIRE(value >= 1 && value <= 1024, "n_threads {} is out of range [1, 1024]", value);
        s->impl.set_n_threads(int(value));
        return FRUGAL_OK;
    default: invalid("frugal_session_set_param_i64: key {} is not an integer parameter", key);
    }
    s->impl.set_sampling(p);
    if (key == FRUGAL_PARAM_SEED) s->impl.reseed();
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugal_session_prompt(frugal_session * s, const char * text, size_t text_len, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s && (text || text_len == 0), "frugal_session_prompt: NULL session or text");
    s->impl.prompt_text(std::string_view(text ? text : "", text_len));
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugal_session_prompt_tokens(frugal_session * s, const int32_t * tokens, size_t n_tokens,
                                           frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s && (tokens || n_tokens == 0), "frugal_session_prompt_tokens: NULL session or tokens");
    s->impl.prompt_tokens(std::span(tokens, n_tokens));
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugal_session_next(frugal_session * s, int32_t * out_token, char * buf, size_t cap, size_t * out_len,
                                  frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s && out_len && (buf || cap == 0), "frugal_session_next: NULL session, buf or out_len");
    if (s->held_token < 0) {
        auto r = s->impl.next();
        s->held_token = r.token;
        s->held_piece = std::move(r.piece);
        s->held_done = r.done;
    }
    const frugal_status st = copy_out(s->held_piece, buf, cap, out_len, false);
    if (st != FRUGAL_OK) return st; // keep the token for the next call
    if (out_token) *out_token = s->held_token;
    const frugal_status result = s->held_done ? FRUGAL_DONE : FRUGAL_OK;
    s->drop_held();
    return result;
    FRUGAL_API_END
}

frugal_status frugal_session_next_part(frugal_session * s, int32_t * out_token, int32_t * out_kind, char * buf,
                                       size_t cap, size_t * out_len, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s && out_len && (buf || cap == 0), "frugal_session_next_part: NULL session, buf or out_len");
    if (s->held_token < 0) {
        auto r = s->impl.next(); // its text may be all held back: then one empty part
        s->held_token = r.token;
        s->held_done = r.done;
        s->held_parts = std::move(r.parts);
        s->parts_given = 0;
    }
    const bool last = s->parts_given + 1 >= s->held_parts.size();
    const frugal::text_part empty{s->impl.in_reasoning() ? frugal::text_kind::reasoning : frugal::text_kind::content, {}};
    const frugal::text_part & part = s->held_parts.empty() ? empty : s->held_parts[s->parts_given];
    const frugal_status st = copy_out(part.text, buf, cap, out_len, false);
    if (st != FRUGAL_OK) return st; // the same part again on the next call
    if (out_token) *out_token = s->held_token;
    if (out_kind) *out_kind = part.kind == frugal::text_kind::reasoning ? FRUGAL_TEXT_REASONING : FRUGAL_TEXT_CONTENT;
    if (!last) {
        ++s->parts_given;
        return FRUGAL_OK;
    }
    const frugal_status result = s->held_done ? FRUGAL_DONE : FRUGAL_OK;
    s->drop_held();
    return result;
    FRUGAL_API_END
}

frugal_status frugalx_session_set_mla_form(frugal_session * s, int32_t form, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s, "frugalx_session_set_mla_form: session is NULL");
    FRUGAL_REQUIRE(form >= FRUGALX_MLA_AUTO && form <= FRUGALX_MLA_ABSORBED,
                   "frugalx_session_set_mla_form: form {} is not one of FRUGALX_MLA_* (0..2)", form);
    static_assert(int(frugal::mla_form::automatic) == FRUGALX_MLA_AUTO &&
                  int(frugal::mla_form::straightforward) == FRUGALX_MLA_STRAIGHTFORWARD &&
                  int(frugal::mla_form::absorbed) == FRUGALX_MLA_ABSORBED);
    frugal::set_mla_form(s->impl.state(), frugal::mla_form(form));
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugalx_session_set_mla_attention(frugal_session * s, int32_t arithmetic, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s, "frugalx_session_set_mla_attention: session is NULL");
    FRUGAL_REQUIRE(arithmetic >= FRUGALX_MLA_ATTENTION_AUTO && arithmetic <= FRUGALX_MLA_ATTENTION_BF16,
                   "frugalx_session_set_mla_attention: arithmetic {} is not one of FRUGALX_MLA_ATTENTION_* (0..2)",
                   arithmetic);
    static_assert(int(frugal::mla_attention::automatic) == FRUGALX_MLA_ATTENTION_AUTO &&
                  int(frugal::mla_attention::f32) == FRUGALX_MLA_ATTENTION_F32 &&
                  int(frugal::mla_attention::bf16) == FRUGALX_MLA_ATTENTION_BF16);
    frugal::set_mla_attention(s->impl.state(), frugal::mla_attention(arithmetic));
    return FRUGAL_OK;
    FRUGAL_API_END
}

frugal_status frugalx_session_set_prefill_gemm(frugal_session * s, int32_t gemm, frugal_error ** err) {
    FRUGAL_API_BEGIN
    FRUGAL_REQUIRE(s, "frugalx_session_set_prefill_gemm: session is NULL");
    FRUGAL_REQUIRE(gemm >= FRUGALX_PREFILL_AUTO && gemm <= FRUGALX_PREFILL_Q8,
                   "frugalx_session_set_prefill_gemm: gemm {} is not one of FRUGALX_PREFILL_* (0..4)", gemm);
    using frugal::ops::prefill_gemm;
    constexpr prefill_gemm by_value[] = {prefill_gemm::f32 /* unused: AUTO */, prefill_gemm::f32, prefill_gemm::bf16,
                                         prefill_gemm::int8, prefill_gemm::q8};
    s->impl.set_prefill_gemm(gemm == FRUGALX_PREFILL_AUTO ? frugal::ops::default_prefill_gemm() : by_value[gemm]);
    return FRUGAL_OK;
    FRUGAL_API_END
}

const float * frugal_session_logits(const frugal_session * s, int32_t * out_n_vocab) {
    if (!s) return nullptr;
    const auto l = s->impl.logits();
    if (out_n_vocab) *out_n_vocab = int32_t(l.size());
    return l.empty() ? nullptr : l.data();
}

void frugal_session_cancel(frugal_session * s) {
    if (s) s->impl.cancel();
}

} // extern "C"
