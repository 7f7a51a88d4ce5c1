//! Raw declarations of `capi/frugal.h`, written by hand (no bindgen), one to one.
//!
//! Everything here is `unsafe` to call and follows the C contract documented in `frugal.h`:
//! status codes, `frugal_error ** err` last, caller buffers with `*out_len` and
//! `FRUGAL_ERR_BUFFER_TOO_SMALL`, models shared by any thread, sessions used by one thread at a
//! time (except `frugal_session_cancel`). Use the safe wrapper in the crate root instead unless
//! you need something it does not offer.
//!
//! Mapping: `int32_t` = `i32`, `uint32_t` = `u32`, `uint64_t` = `u64`, `size_t` = `usize`,
//! `char` = `c_char`. Enums of the header are `i32` constants (the ABI never uses enum types).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_void};

/// The header version these declarations mirror (`FRUGAL_VERSION_*` of `frugal_version.h`).
pub const FRUGAL_VERSION_MAJOR: u32 = 0;
pub const FRUGAL_VERSION_MINOR: u32 = 1;
pub const FRUGAL_VERSION_PATCH: u32 = 0;
pub const FRUGAL_VERSION_NUMBER: u32 = FRUGAL_VERSION_MAJOR * 10000 + FRUGAL_VERSION_MINOR * 100 + FRUGAL_VERSION_PATCH;

pub type frugal_status = i32;
pub const FRUGAL_OK: frugal_status = 0;
pub const FRUGAL_DONE: frugal_status = 1;
pub const FRUGAL_ERR_INVALID_ARGUMENT: frugal_status = -1;
pub const FRUGAL_ERR_OUT_OF_MEMORY: frugal_status = -2;
pub const FRUGAL_ERR_IO: frugal_status = -3;
pub const FRUGAL_ERR_UNSUPPORTED_MODEL: frugal_status = -4;
pub const FRUGAL_ERR_CONTEXT_FULL: frugal_status = -5;
pub const FRUGAL_ERR_CANCELLED: frugal_status = -6;
pub const FRUGAL_ERR_BUFFER_TOO_SMALL: frugal_status = -7;
pub const FRUGAL_ERR_STRUCT_SIZE: frugal_status = -8;
pub const FRUGAL_ERR_INVALID_MODEL: frugal_status = -9;
pub const FRUGAL_ERR_INTERNAL: frugal_status = -100;

pub const FRUGAL_LOG_LEVEL_DEBUG: i32 = 0;
pub const FRUGAL_LOG_LEVEL_INFO: i32 = 1;
pub const FRUGAL_LOG_LEVEL_WARN: i32 = 2;
pub const FRUGAL_LOG_LEVEL_ERROR: i32 = 3;

pub type frugal_param = i32;
pub const FRUGAL_PARAM_TEMPERATURE: frugal_param = 1;
pub const FRUGAL_PARAM_TOP_K: frugal_param = 2;
pub const FRUGAL_PARAM_TOP_P: frugal_param = 3;
pub const FRUGAL_PARAM_SEED: frugal_param = 4;
pub const FRUGAL_PARAM_MIN_P: frugal_param = 5;
pub const FRUGAL_PARAM_REPEAT_PENALTY: frugal_param = 6;
pub const FRUGAL_PARAM_REPEAT_LAST_N: frugal_param = 7;
pub const FRUGAL_PARAM_N_THREADS: frugal_param = 8;

pub const FRUGAL_TEXT_CONTENT: i32 = 0;
pub const FRUGAL_TEXT_REASONING: i32 = 1;

pub const FRUGAL_KV_F32: i32 = 0;
pub const FRUGAL_KV_F16: i32 = 1;
pub const FRUGAL_KV_Q8_0: i32 = 8;

/// Opaque handles (zero-sized, never constructed in Rust; only pointers to them exist).
#[repr(C)]
pub struct frugal_error {
    _private: [u8; 0],
}
#[repr(C)]
pub struct frugal_model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct frugal_session {
    _private: [u8; 0],
}
#[repr(C)]
pub struct frugal_tokenizer {
    _private: [u8; 0],
}

pub type frugal_log_fn = Option<unsafe extern "C" fn(level: i32, message: *const c_char, user_data: *mut c_void)>;
/// Returns 0 to continue, non-zero to stop.
pub type frugal_progress_fn = Option<unsafe extern "C" fn(fraction: f32, user_data: *mut c_void) -> i32>;

/// Always initialise with `frugal_model_options_init(&mut o, size_of::<frugal_model_options>())`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct frugal_model_options {
    pub struct_size: u32,
    pub n_threads: i32,
    pub use_mmap: i32,
    pub reserved0: i32,
    pub progress: frugal_progress_fn,
    pub progress_user_data: *mut c_void,
    pub repack_weights: i32,
    pub reserved1: i32,
}

/// Always initialise with `frugal_session_options_init(&mut o, size_of::<frugal_session_options>())`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct frugal_session_options {
    pub struct_size: u32,
    pub n_ctx: i32,
    pub kv_type: i32,
    pub reserved0: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct frugal_chat_message {
    /// NUL-terminated: "system", "user" or "assistant".
    pub role: *const c_char,
    /// UTF-8, `content_len` bytes, not NUL-terminated.
    pub content: *const c_char,
    pub content_len: usize,
}

extern "C" {
    // ---- version
    pub fn frugal_version_number() -> u32;
    pub fn frugal_version_string() -> *const c_char;

    // ---- status and errors
    pub fn frugal_status_string(status: frugal_status) -> *const c_char;
    pub fn frugal_error_code(err: *const frugal_error) -> frugal_status;
    pub fn frugal_error_message(err: *const frugal_error) -> *const c_char;
    pub fn frugal_error_free(err: *mut frugal_error);

    // ---- logging
    pub fn frugal_set_log_callback(f: frugal_log_fn, user_data: *mut c_void, min_level: i32);

    // ---- model
    pub fn frugal_model_options_init(opts: *mut frugal_model_options, struct_size: u32) -> frugal_status;
    pub fn frugal_model_load(
        path_utf8: *const c_char,
        opts: *const frugal_model_options,
        out: *mut *mut frugal_model,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_model_free(model: *mut frugal_model);
    pub fn frugal_model_n_vocab(model: *const frugal_model) -> i32;
    pub fn frugal_model_n_ctx_train(model: *const frugal_model) -> i32;
    pub fn frugal_model_n_embd(model: *const frugal_model) -> i32;
    pub fn frugal_model_n_layers(model: *const frugal_model) -> i32;
    pub fn frugal_model_n_heads(model: *const frugal_model) -> i32;
    pub fn frugal_model_n_heads_kv(model: *const frugal_model) -> i32;
    pub fn frugal_model_n_params(model: *const frugal_model) -> u64;
    pub fn frugal_model_size_bytes(model: *const frugal_model) -> u64;
    pub fn frugal_model_n_experts(model: *const frugal_model) -> i32;
    pub fn frugal_model_n_experts_used(model: *const frugal_model) -> i32;
    pub fn frugal_model_kv_bytes_per_token(model: *const frugal_model) -> u64;
    pub fn frugal_model_architecture(model: *const frugal_model) -> *const c_char;
    pub fn frugal_model_name(model: *const frugal_model) -> *const c_char;
    pub fn frugal_model_token_bos(model: *const frugal_model) -> i32;
    pub fn frugal_model_token_eos(model: *const frugal_model) -> i32;
    pub fn frugal_model_token_is_eog(model: *const frugal_model, token: i32) -> i32;
    pub fn frugal_model_meta_count(model: *const frugal_model) -> i32;
    pub fn frugal_model_meta_key(
        model: *const frugal_model,
        i: i32,
        buf: *mut c_char,
        cap: usize,
        out_len: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_model_meta_value(
        model: *const frugal_model,
        key: *const c_char,
        buf: *mut c_char,
        cap: usize,
        out_len: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;

    // ---- tokenizer
    pub fn frugal_tokenize(
        model: *const frugal_model,
        text: *const c_char,
        text_len: usize,
        add_special: i32,
        parse_special: i32,
        out: *mut i32,
        cap: usize,
        out_n: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_detokenize(
        model: *const frugal_model,
        tokens: *const i32,
        n_tokens: usize,
        special: i32,
        buf: *mut c_char,
        cap: usize,
        out_len: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_tokenizer_load(
        path_utf8: *const c_char,
        out: *mut *mut frugal_tokenizer,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_model_get_tokenizer(
        model: *mut frugal_model,
        out: *mut *mut frugal_tokenizer,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_tokenizer_free(tokenizer: *mut frugal_tokenizer);
    pub fn frugal_tokenizer_n_vocab(tokenizer: *const frugal_tokenizer) -> i32;
    pub fn frugal_tokenizer_token_bos(tokenizer: *const frugal_tokenizer) -> i32;
    pub fn frugal_tokenizer_token_eos(tokenizer: *const frugal_tokenizer) -> i32;
    pub fn frugal_tokenizer_token_is_eog(tokenizer: *const frugal_tokenizer, token: i32) -> i32;
    pub fn frugal_tokenizer_encode(
        tokenizer: *const frugal_tokenizer,
        text: *const c_char,
        text_len: usize,
        add_special: i32,
        parse_special: i32,
        out: *mut i32,
        cap: usize,
        out_n: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_tokenizer_decode(
        tokenizer: *const frugal_tokenizer,
        tokens: *const i32,
        n_tokens: usize,
        special: i32,
        buf: *mut c_char,
        cap: usize,
        out_len: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;

    // ---- chat templates
    pub fn frugal_tokenizer_chat_format(tokenizer: *const frugal_tokenizer) -> *const c_char;
    pub fn frugal_chat_apply_template(
        tokenizer: *const frugal_tokenizer,
        format: *const c_char,
        messages: *const frugal_chat_message,
        n_messages: usize,
        add_generation_prompt: i32,
        buf: *mut c_char,
        cap: usize,
        out_len: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;

    // ---- session
    pub fn frugal_session_options_init(opts: *mut frugal_session_options, struct_size: u32) -> frugal_status;
    pub fn frugal_session_create_v2(
        model: *mut frugal_model,
        opts: *const frugal_session_options,
        out: *mut *mut frugal_session,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_create(
        model: *mut frugal_model,
        n_ctx: i32,
        out: *mut *mut frugal_session,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_free(session: *mut frugal_session);
    pub fn frugal_session_n_ctx(session: *const frugal_session) -> i32;
    pub fn frugal_session_n_past(session: *const frugal_session) -> i32;
    pub fn frugal_session_kv_bytes(session: *const frugal_session) -> u64;
    pub fn frugal_session_kv_type(session: *const frugal_session) -> i32;
    pub fn frugal_session_reset(session: *mut frugal_session, err: *mut *mut frugal_error) -> frugal_status;
    pub fn frugal_session_set_param_f32(
        session: *mut frugal_session,
        key: frugal_param,
        value: f32,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_set_param_i64(
        session: *mut frugal_session,
        key: frugal_param,
        value: i64,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_prompt(
        session: *mut frugal_session,
        text: *const c_char,
        text_len: usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_prompt_tokens(
        session: *mut frugal_session,
        tokens: *const i32,
        n_tokens: usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_next(
        session: *mut frugal_session,
        out_token: *mut i32,
        buf: *mut c_char,
        cap: usize,
        out_len: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_next_part(
        session: *mut frugal_session,
        out_token: *mut i32,
        out_kind: *mut i32,
        buf: *mut c_char,
        cap: usize,
        out_len: *mut usize,
        err: *mut *mut frugal_error,
    ) -> frugal_status;
    pub fn frugal_session_logits(session: *const frugal_session, out_n_vocab: *mut i32) -> *const f32;
    pub fn frugal_session_cancel(session: *mut frugal_session);
}
