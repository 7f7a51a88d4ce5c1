/* frugal.h - the stable C ABI of frugal, CPU inference of DeepSeek-family models.
 *
 * C89/C99/C11 and C++11/17/20 clean: no C++ types, no exceptions, no FILE *, no bool, enum or
 * union in signatures or structs. Policy (details in docs/ABI.md, checked by CI):
 *   - Stable: everything here (frugal_*, FRUGAL_*). Experimental and unpromised: frugalx_* in
 *     frugal_experimental.h. SemVer on this ABI; the SONAME is libfrugal.so.MAJOR.MINOR while 0.x
 *     (a minor release may break, and then changes the SONAME), libfrugal.so.MAJOR from 1.0.
 *   - Signatures never change (a new frugal_foo_v2 instead; the old one is deprecated); status
 *     codes and enum values are append-only; CHANGELOG.md lists every change.
 *   - Every fallible function returns frugal_status (0 ok, FRUGAL_DONE = 1 end of stream,
 *     negative = error) and takes `frugal_error ** err` last; pass NULL to ignore the detail.
 *     On failure, out-parameters are left untouched and nothing leaks.
 *   - Getters that cannot fail return their value; destructors return void and accept NULL.
 *   - Options structs start with struct_size, are append-only and initialised by *_init.
 *   - Sampling knobs are set by key (frugal_session_set_param_*), never by struct field.
 *   - Strings are UTF-8 with explicit lengths. Strings returned by getters are owned by the
 *     handle they came from and valid until it is freed. Handles returned to the caller are freed
 *     with their *_free; out-parameters are untouched on failure.
 * Threading:
 *   - frugal_model is immutable after load and may be shared by any number of threads and
 *     sessions. It is reference counted: frugal_model_free drops the caller's reference and
 *     live sessions keep the weights alive, so handles may be freed in any order.
 *   - frugal_tokenizer is immutable and shared the same way.
 *   - frugal_session is used by one thread at a time; the library takes no lock on it.
 *     frugal_session_cancel is the exception: callable from any thread; the interrupted call
 *     returns FRUGAL_ERR_CANCELLED and the session is as before it.
 *   - The log callback may be called from worker threads.
 */
#ifndef FRUGAL_H
#define FRUGAL_H

#include <stddef.h>
#include <stdint.h>

#include "frugal_version.h"

#if defined(_WIN32) && defined(FRUGAL_BUILDING)
#  define FRUGAL_API __declspec(dllexport)
#elif defined(_WIN32) && defined(FRUGAL_SHARED)
#  define FRUGAL_API __declspec(dllimport)
#elif defined(__GNUC__)
#  define FRUGAL_API __attribute__((visibility("default")))
#else
#  define FRUGAL_API
#endif

#if defined(__GNUC__)
#  define FRUGAL_DEPRECATED(msg) __attribute__((deprecated(msg)))
#elif defined(_MSC_VER)
#  define FRUGAL_DEPRECATED(msg) __declspec(deprecated(msg))
#else
#  define FRUGAL_DEPRECATED(msg)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version ------------------------------------------------------------------------- */
#define FRUGAL_VERSION_NUMBER (FRUGAL_VERSION_MAJOR * 10000 + FRUGAL_VERSION_MINOR * 100 + FRUGAL_VERSION_PATCH)
/* The library's version as FRUGAL_VERSION_NUMBER computes it; compare at startup. */
FRUGAL_API uint32_t frugal_version_number(void);
/* "MAJOR.MINOR.PATCH", static storage. */
FRUGAL_API const char * frugal_version_string(void);

/* ---- status and errors ----------------------------------------------------------------- */
/* Append only, never renumber. Signatures use the int32_t typedef, never the enum type. */
typedef int32_t frugal_status;
enum {
    FRUGAL_OK = 0,
    FRUGAL_DONE = 1,                    /* end of generation; not an error */
    FRUGAL_ERR_INVALID_ARGUMENT = -1,   /* a NULL handle, a value out of range, invalid UTF-8 ... */
    FRUGAL_ERR_OUT_OF_MEMORY = -2,
    FRUGAL_ERR_IO = -3,                 /* a file could not be opened/read, a download failed */
    FRUGAL_ERR_UNSUPPORTED_MODEL = -4,  /* a valid file frugal cannot run (architecture, tensor type) */
    FRUGAL_ERR_CONTEXT_FULL = -5,       /* the tokens do not fit in the session's context */
    FRUGAL_ERR_CANCELLED = -6,          /* frugal_session_cancel or a callback asked to stop */
    FRUGAL_ERR_BUFFER_TOO_SMALL = -7,   /* *out_len holds the size needed; call again */
    FRUGAL_ERR_STRUCT_SIZE = -8,        /* an options struct from a newer header with non-zero new fields */
    FRUGAL_ERR_INVALID_MODEL = -9,      /* a malformed model file */
    FRUGAL_ERR_INTERNAL = -100
};
/* Static text for a status code ("invalid argument", ...); never NULL. */
FRUGAL_API const char * frugal_status_string(frugal_status status);

typedef struct frugal_error frugal_error;     /* detail of a failure; NULL = no error */
typedef struct frugal_model frugal_model;     /* immutable after load; share across threads */
typedef struct frugal_session frugal_session; /* KV cache + sampler; one thread at a time */

/* The code and the UTF-8 message (offending values included) of an error; the message is owned
   by err. Both accept NULL (FRUGAL_OK / ""). */
FRUGAL_API frugal_status frugal_error_code(const frugal_error * err);
FRUGAL_API const char * frugal_error_message(const frugal_error * err);
FRUGAL_API void frugal_error_free(frugal_error * err); /* NULL-safe */

/* ---- logging ---------------------------------------------------------------------------- */
enum { FRUGAL_LOG_LEVEL_DEBUG = 0, FRUGAL_LOG_LEVEL_INFO = 1, FRUGAL_LOG_LEVEL_WARN = 2, FRUGAL_LOG_LEVEL_ERROR = 3 };
typedef void (*frugal_log_fn)(int32_t level, const char * message, void * user_data);
/* Routes the library's log to fn (messages at min_level and above). NULL restores the default:
   stderr at WARN and above (FRUGAL_LOG=debug|info|warn|error changes that). Thread-safe. */
FRUGAL_API void frugal_set_log_callback(frugal_log_fn fn, void * user_data, int32_t min_level);

/* ---- model -------------------------------------------------------------------------------- */
/* Callbacks return 0 to continue and non-zero to stop (the call then returns FRUGAL_ERR_CANCELLED). */
typedef int32_t (*frugal_progress_fn)(float fraction, void * user_data);

typedef struct frugal_model_options {
    uint32_t struct_size;            /* set by frugal_model_options_init; never by hand */
    int32_t n_threads;               /* 0 = the physical cores this process may use */
    int32_t use_mmap;                /* 1 = map the file, its weights' pages at load (default), 0 = read it into memory */
    int32_t reserved0;               /* keeps the pointers 8-byte aligned; must be 0 */
    frugal_progress_fn progress;     /* may be NULL */
    void * progress_user_data;
    int32_t repack_weights;          /* 1 = rewrite Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL matrices at
                                        load into a faster decode layout where this CPU decodes
                                        that faster (default; all five with AVX-512 VNNI, Q4_0,
                                        Q5_0 and IQ4_NL with AVX2; no extra memory: each mapped
                                        original is released),
                                        0 = use every weight in place as stored (e.g. so that processes
                                        mapping the same file share its pages),
                                        2 = rewrite them on any CPU (for comparisons) */
    int32_t reserved1;               /* keeps the struct a multiple of 8 bytes; must be 0 */
    /* new fields are appended here, nowhere else */
} frugal_model_options;

/* Fills *opts with defaults for a struct of struct_size bytes (use FRUGAL_MODEL_OPTIONS_INIT). */
FRUGAL_API frugal_status frugal_model_options_init(frugal_model_options * opts, uint32_t struct_size);
#define FRUGAL_MODEL_OPTIONS_INIT(p) frugal_model_options_init((p), (uint32_t)sizeof(*(p)))

/* Loads a GGUF model. opts may be NULL (defaults). A malformed file gives FRUGAL_ERR_INVALID_MODEL,
   an architecture or tensor type frugal cannot run FRUGAL_ERR_UNSUPPORTED_MODEL. */
FRUGAL_API frugal_status frugal_model_load(const char * path_utf8, const frugal_model_options * opts,
                                           frugal_model ** out, frugal_error ** err);
FRUGAL_API void frugal_model_free(frugal_model * model); /* NULL-safe; sessions keep the model alive */

/* Getters; 0 / "" for a NULL model (the token ids: -1, "none"). Strings are owned by the model. */
FRUGAL_API int32_t frugal_model_n_vocab(const frugal_model * model);
FRUGAL_API int32_t frugal_model_n_ctx_train(const frugal_model * model);
FRUGAL_API int32_t frugal_model_n_embd(const frugal_model * model);
FRUGAL_API int32_t frugal_model_n_layers(const frugal_model * model);
FRUGAL_API int32_t frugal_model_n_heads(const frugal_model * model);
FRUGAL_API int32_t frugal_model_n_heads_kv(const frugal_model * model);
FRUGAL_API uint64_t frugal_model_n_params(const frugal_model * model);
FRUGAL_API uint64_t frugal_model_size_bytes(const frugal_model * model);   /* weight bytes as stored */
/* Routed experts and experts used per token (0 for a dense model). */
FRUGAL_API int32_t frugal_model_n_experts(const frugal_model * model);
FRUGAL_API int32_t frugal_model_n_experts_used(const frugal_model * model);
/* KV cache bytes one context position costs, all layers (deepseek2: the MLA latent cache), in the
   default cache type (FRUGAL_KV_F16); an F32 cache costs twice that. */
FRUGAL_API uint64_t frugal_model_kv_bytes_per_token(const frugal_model * model);
FRUGAL_API const char * frugal_model_architecture(const frugal_model * model); /* "llama", "qwen2", "deepseek2" */
FRUGAL_API const char * frugal_model_name(const frugal_model * model);         /* general.name or "" */
FRUGAL_API int32_t frugal_model_token_bos(const frugal_model * model);  /* -1 if none */
FRUGAL_API int32_t frugal_model_token_eos(const frugal_model * model);  /* -1 if none */
/* 1 if the token ends generation (EOS, EOT and similar), else 0. */
FRUGAL_API int32_t frugal_model_token_is_eog(const frugal_model * model, int32_t token);
/* Number of GGUF metadata entries, and entry i's key and value rendered as text (arrays
   summarised). Strings are copied into buf (NUL-terminated); FRUGAL_ERR_BUFFER_TOO_SMALL sets
   *out_len to the size needed including the NUL. */
FRUGAL_API int32_t frugal_model_meta_count(const frugal_model * model);
FRUGAL_API frugal_status frugal_model_meta_key(const frugal_model * model, int32_t i, char * buf, size_t cap,
                                               size_t * out_len, frugal_error ** err);
FRUGAL_API frugal_status frugal_model_meta_value(const frugal_model * model, const char * key, char * buf,
                                                 size_t cap, size_t * out_len, frugal_error ** err);

/* ---- tokenizer ------------------------------------------------------------------------------ */
/* Text -> token ids. add_special: BOS/EOS as the vocabulary asks; parse_special: control-token
   texts in the text become those tokens. Writes up to cap ids; FRUGAL_ERR_BUFFER_TOO_SMALL sets
   *out_n to the count needed. Invalid UTF-8 is FRUGAL_ERR_INVALID_ARGUMENT with the byte offset.
   Same as frugal_tokenizer_encode on the model's tokenizer. */
FRUGAL_API frugal_status frugal_tokenize(const frugal_model * model, const char * text, size_t text_len,
                                         int32_t add_special, int32_t parse_special, int32_t * out, size_t cap,
                                         size_t * out_n, frugal_error ** err);
/* Token ids -> UTF-8 text (not NUL-terminated; *out_len = bytes). special: render control tokens. */
FRUGAL_API frugal_status frugal_detokenize(const frugal_model * model, const int32_t * tokens, size_t n_tokens,
                                           int32_t special, char * buf, size_t cap, size_t * out_len,
                                           frugal_error ** err);

/* A tokenizer on its own: immutable, shared by any number of threads, reference counted. */
typedef struct frugal_tokenizer frugal_tokenizer;
/* Loads a tokenizer without weights: a GGUF file (its tokenizer.* keys; tensors are not read), or
   a Hugging Face byte-level BPE tokenizer: a folder with tokenizer.json (and tokenizer_config.json)
   or a tokenizer.json file. Both sources of one vocabulary encode identically. An unsupported
   tokenizer (another model type, an unknown pre-tokenizer) is FRUGAL_ERR_UNSUPPORTED_MODEL. */
FRUGAL_API frugal_status frugal_tokenizer_load(const char * path_utf8, frugal_tokenizer ** out, frugal_error ** err);
/* A new reference to a model's tokenizer; it keeps the model alive until freed. */
FRUGAL_API frugal_status frugal_model_get_tokenizer(frugal_model * model, frugal_tokenizer ** out,
                                                    frugal_error ** err);
FRUGAL_API void frugal_tokenizer_free(frugal_tokenizer * tokenizer); /* NULL-safe */
/* Getters; 0 / -1 / "none" for a NULL tokenizer. */
FRUGAL_API int32_t frugal_tokenizer_n_vocab(const frugal_tokenizer * tokenizer);
FRUGAL_API int32_t frugal_tokenizer_token_bos(const frugal_tokenizer * tokenizer); /* -1 if none */
FRUGAL_API int32_t frugal_tokenizer_token_eos(const frugal_tokenizer * tokenizer); /* -1 if none */
FRUGAL_API int32_t frugal_tokenizer_token_is_eog(const frugal_tokenizer * tokenizer, int32_t token);
/* As frugal_tokenize / frugal_detokenize. */
FRUGAL_API frugal_status frugal_tokenizer_encode(const frugal_tokenizer * tokenizer, const char * text,
                                                 size_t text_len, int32_t add_special, int32_t parse_special,
                                                 int32_t * out, size_t cap, size_t * out_n, frugal_error ** err);
FRUGAL_API frugal_status frugal_tokenizer_decode(const frugal_tokenizer * tokenizer, const int32_t * tokens,
                                                 size_t n_tokens, int32_t special, char * buf, size_t cap,
                                                 size_t * out_len, frugal_error ** err);

/* ---- chat templates -------------------------------------------------------------------------- */
/* One conversation turn. role: "system", "user" or "assistant" (NUL-terminated); content: UTF-8,
   content_len bytes. An assistant turn may hold earlier reasoning (<think>...</think>): the R1
   format drops it, as DeepSeek's template does. */
typedef struct frugal_chat_message {
    const char * role;
    const char * content;
    size_t content_len;
} frugal_chat_message;

/* The built-in chat format the tokenizer's template (tokenizer.chat_template / tokenizer_config.json),
   or without one its special tokens, call for: "deepseek-r1" (R1 and the R1 distills),
   "deepseek-v3", "deepseek-v2", "chatml" (Qwen2), "llama3", "llama3.1", or "none". Static storage. */
FRUGAL_API const char * frugal_tokenizer_chat_format(const frugal_tokenizer * tokenizer);
/* Renders messages into prompt text, byte for byte what the publisher's template gives (without
   tools); with add_generation_prompt it ends with the assistant's opening (R1: the Assistant
   token, then "<think>" and a newline).
   format: NULL for the tokenizer's own, or a name above to force one. The text starts with the BOS
   text where the template writes it; frugal_session_prompt then adds no second BOS. Not
   NUL-terminated; FRUGAL_ERR_BUFFER_TOO_SMALL sets *out_len to the size needed. An unknown role or
   format, invalid UTF-8 in a content, or format "none" is FRUGAL_ERR_INVALID_ARGUMENT. */
FRUGAL_API frugal_status frugal_chat_apply_template(const frugal_tokenizer * tokenizer, const char * format,
                                                    const frugal_chat_message * messages, size_t n_messages,
                                                    int32_t add_generation_prompt, char * buf, size_t cap,
                                                    size_t * out_len, frugal_error ** err);

/* ---- session -------------------------------------------------------------------------------- */
/* Element types of a session's KV cache (frugal_session_options.kv_type); the numbers are GGUF's
   tensor type ids. F16 halves the cache's memory and the bytes each token reads from it, as
   llama.cpp's default cache does; Q8_0 (llama.cpp's -ctk q8_0 -ctv q8_0: blocks of 32 values
   with one F16 scale) takes 17/32 of F16's, for models whose attention heads are a multiple of 32
   values wide (all DeepSeek, Qwen2 and Llama models; FRUGAL_ERR_INVALID_ARGUMENT otherwise);
   F32 keeps keys and values exactly as computed. */
enum { FRUGAL_KV_F32 = 0, FRUGAL_KV_F16 = 1, FRUGAL_KV_Q8_0 = 8 };

typedef struct frugal_session_options {
    uint32_t struct_size;  /* set by frugal_session_options_init; never by hand */
    int32_t n_ctx;         /* positions the KV cache holds; 0 = min(training context, 4096) */
    int32_t kv_type;       /* FRUGAL_KV_F16 (default), FRUGAL_KV_Q8_0 or FRUGAL_KV_F32 */
    int32_t reserved0;     /* keeps the struct a multiple of 8 bytes; must be 0 */
    /* new fields are appended here, nowhere else */
} frugal_session_options;

/* Fills *opts with defaults for a struct of struct_size bytes (use FRUGAL_SESSION_OPTIONS_INIT). */
FRUGAL_API frugal_status frugal_session_options_init(frugal_session_options * opts, uint32_t struct_size);
#define FRUGAL_SESSION_OPTIONS_INIT(p) frugal_session_options_init((p), (uint32_t)sizeof(*(p)))

/* A session with the given options (NULL = defaults). An unknown kv_type is
   FRUGAL_ERR_INVALID_ARGUMENT; a cache larger than the machine's memory FRUGAL_ERR_OUT_OF_MEMORY. */
FRUGAL_API frugal_status frugal_session_create_v2(frugal_model * model, const frugal_session_options * opts,
                                                  frugal_session ** out, frugal_error ** err);
/* A session with default options and a KV cache for n_ctx positions (0 = min(training context,
   4096)): frugal_session_create_v2 with only n_ctx set. */
FRUGAL_API frugal_status frugal_session_create(frugal_model * model, int32_t n_ctx, frugal_session ** out,
                                               frugal_error ** err);
FRUGAL_API void frugal_session_free(frugal_session * session); /* NULL-safe */
FRUGAL_API int32_t frugal_session_n_ctx(const frugal_session * session);
FRUGAL_API int32_t frugal_session_n_past(const frugal_session * session);   /* positions used */
FRUGAL_API uint64_t frugal_session_kv_bytes(const frugal_session * session); /* n_ctx x per-token bytes */
FRUGAL_API int32_t frugal_session_kv_type(const frugal_session * session);   /* FRUGAL_KV_*; -1 for NULL */
/* Forgets the conversation (the KV cache is kept allocated) and reseeds the sampler. */
FRUGAL_API frugal_status frugal_session_reset(frugal_session * session, frugal_error ** err);

/* Sampling and run knobs, by key. Out-of-range values are FRUGAL_ERR_INVALID_ARGUMENT; a key of
   the other type too. Defaults in brackets. */
typedef int32_t frugal_param;
enum {
    FRUGAL_PARAM_TEMPERATURE = 1,     /* f32 [0.8; 0.6 for DeepSeek-R1-family models]; <= 0 = greedy */
    FRUGAL_PARAM_TOP_K = 2,           /* i64 [40]; 0 = off */
    FRUGAL_PARAM_TOP_P = 3,           /* f32 [0.95]; in (0, 1] */
    FRUGAL_PARAM_SEED = 4,            /* i64 [0xF00D]; resets the sampler's random stream */
    FRUGAL_PARAM_MIN_P = 5,           /* f32 [0.05]; in [0, 1] */
    FRUGAL_PARAM_REPEAT_PENALTY = 6,  /* f32 [1.0 = off]; > 0 */
    FRUGAL_PARAM_REPEAT_LAST_N = 7,   /* i64 [64]; tokens looked back for the penalty */
    FRUGAL_PARAM_N_THREADS = 8        /* i64 [model's]; threads for this session's evaluations */
};
FRUGAL_API frugal_status frugal_session_set_param_f32(frugal_session * session, frugal_param key, float value,
                                                      frugal_error ** err);
FRUGAL_API frugal_status frugal_session_set_param_i64(frugal_session * session, frugal_param key, int64_t value,
                                                      frugal_error ** err);

/* Evaluates prompt text (BOS added at the start of the context when the model asks for it;
   special-token texts recognised) or token ids. Afterwards frugal_session_logits is the
   next-token distribution. FRUGAL_ERR_CONTEXT_FULL when it does not fit (nothing evaluated);
   FRUGAL_ERR_CANCELLED when cancelled (the session is as before the call). */
FRUGAL_API frugal_status frugal_session_prompt(frugal_session * session, const char * text, size_t text_len,
                                               frugal_error ** err);
FRUGAL_API frugal_status frugal_session_prompt_tokens(frugal_session * session, const int32_t * tokens,
                                                      size_t n_tokens, frugal_error ** err);

/* Pulls one token: samples it and returns its id and the UTF-8 text it completes. A character
   split across tokens is held back until it is whole, so buf always receives valid UTF-8 (and
   may receive nothing). Not NUL-terminated. If cap is too small, returns
   FRUGAL_ERR_BUFFER_TOO_SMALL with *out_len = the size needed; the same token is delivered by
   the next call (even if a prompt call comes in between: the token is already part of the
   conversation). Returns FRUGAL_DONE when an end-of-generation token is sampled (*out_token =
   that token; buf gets any held-back text). */
FRUGAL_API frugal_status frugal_session_next(frugal_session * session, int32_t * out_token, char * buf, size_t cap,
                                             size_t * out_len, frugal_error ** err);

/* What a part of generated text is (frugal_session_next_part). */
enum { FRUGAL_TEXT_CONTENT = 0, FRUGAL_TEXT_REASONING = 1 };
/* Like frugal_session_next, with the text split into reasoning (between <think> and </think>, tags
   removed, also when the prompt opened the reasoning) and content; *out_kind = FRUGAL_TEXT_*.
   A call returns text of one kind (possibly none, when a token's text is held back): when a token
   completes text of both, the next call returns the rest without sampling (same *out_token). Whitespace right after either tag and right before
   </think> is dropped; a partial tag is held until decided. When an end-of-generation token is
   sampled, what was held comes out, the last part with FRUGAL_DONE (possibly empty). Use either
   this or frugal_session_next for one generation, not both. */
FRUGAL_API frugal_status frugal_session_next_part(frugal_session * session, int32_t * out_token, int32_t * out_kind,
                                                  char * buf, size_t cap, size_t * out_len, frugal_error ** err);

/* Logits of the most recent evaluation, [n_vocab] floats owned by the session, valid until the
   next call on it; NULL before any evaluation. After frugal_session_next returned token t they
   are the logits t was drawn from (t itself is evaluated by the next call). Custom samplers
   evaluate their choice with frugal_session_prompt_tokens. */
FRUGAL_API const float * frugal_session_logits(const frugal_session * session, int32_t * out_n_vocab);

/* Asks a running prompt/next call on this session to stop (it returns FRUGAL_ERR_CANCELLED and
   the session stays usable). Safe from any thread; a no-op when nothing runs. */
FRUGAL_API void frugal_session_cancel(frugal_session * session);

#ifdef __cplusplus
}
#endif
#endif /* FRUGAL_H */
