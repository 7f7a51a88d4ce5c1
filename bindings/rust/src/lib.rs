//! Safe Rust bindings to **frugal**, CPU inference of DeepSeek-family models (DeepSeek-R1/V3,
//! V2/V2-Lite, the R1 distills) from GGUF files, through its stable C ABI (`libfrugal.so`).
//!
//! ```no_run
//! # fn main() -> frugal::Result<()> {
//! let model = frugal::Model::load("stories260K.gguf")?;
//! let mut session = model.session(0)?; // 0 = the default context
//! session.set_temperature(0.0)?; // greedy
//! session.prompt("Once upon a time")?;
//! for token in session.tokens(64) {
//!     print!("{}", token?.text);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Threading, as the C contract has it:
//! - [`Model`] and [`Tokenizer`] are immutable and reference counted: `Send + Sync`, and `Clone`
//!   is a cheap reference copy. Share one model between any number of threads and sessions.
//! - [`Session`] (KV cache + sampler) is used by one thread at a time: `Send` (move it to a
//!   worker) but not `Sync`. Every call that changes it takes `&mut self`.
//! - [`CancelHandle`] (from [`Session::cancel_handle`]) is `Send + Sync + Clone` and stops a
//!   running call of its session from any thread; that call returns [`Status::Cancelled`] and
//!   the session stays usable. It holds a weak reference, so it never keeps a session alive and
//!   is harmless after the session is gone.
//! - Handles may be dropped in any order: a session keeps its model's weights alive.
//!
//! Every fallible call returns [`Result`]; an [`Error`] carries the [`Status`] and the library's
//! message (which names the offending value). The raw declarations are in [`sys`].

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_void};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex, Weak};

pub mod sys;

// ---- status and errors ------------------------------------------------------------------------

/// A status code of the C ABI. Values are append-only upstream, hence `#[non_exhaustive]` and
/// [`Status::Other`] for codes newer than these bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    Ok,
    /// End of generation; not an error.
    Done,
    InvalidArgument,
    OutOfMemory,
    /// A file could not be opened or read.
    Io,
    /// A valid file frugal cannot run (architecture, tensor type).
    UnsupportedModel,
    /// The tokens do not fit in the session's context.
    ContextFull,
    /// [`CancelHandle::cancel`] or a callback asked to stop.
    Cancelled,
    BufferTooSmall,
    StructSize,
    /// A malformed model file.
    InvalidModel,
    Internal,
    /// A code these bindings do not know (from a newer library).
    Other(i32),
}

impl Status {
    pub fn from_code(code: i32) -> Status {
        match code {
            sys::FRUGAL_OK => Status::Ok,
            sys::FRUGAL_DONE => Status::Done,
            sys::FRUGAL_ERR_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::FRUGAL_ERR_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::FRUGAL_ERR_IO => Status::Io,
            sys::FRUGAL_ERR_UNSUPPORTED_MODEL => Status::UnsupportedModel,
            sys::FRUGAL_ERR_CONTEXT_FULL => Status::ContextFull,
            sys::FRUGAL_ERR_CANCELLED => Status::Cancelled,
            sys::FRUGAL_ERR_BUFFER_TOO_SMALL => Status::BufferTooSmall,
            sys::FRUGAL_ERR_STRUCT_SIZE => Status::StructSize,
            sys::FRUGAL_ERR_INVALID_MODEL => Status::InvalidModel,
            sys::FRUGAL_ERR_INTERNAL => Status::Internal,
            other => Status::Other(other),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Status::Ok => sys::FRUGAL_OK,
            Status::Done => sys::FRUGAL_DONE,
            Status::InvalidArgument => sys::FRUGAL_ERR_INVALID_ARGUMENT,
            Status::OutOfMemory => sys::FRUGAL_ERR_OUT_OF_MEMORY,
            Status::Io => sys::FRUGAL_ERR_IO,
            Status::UnsupportedModel => sys::FRUGAL_ERR_UNSUPPORTED_MODEL,
            Status::ContextFull => sys::FRUGAL_ERR_CONTEXT_FULL,
            Status::Cancelled => sys::FRUGAL_ERR_CANCELLED,
            Status::BufferTooSmall => sys::FRUGAL_ERR_BUFFER_TOO_SMALL,
            Status::StructSize => sys::FRUGAL_ERR_STRUCT_SIZE,
            Status::InvalidModel => sys::FRUGAL_ERR_INVALID_MODEL,
            Status::Internal => sys::FRUGAL_ERR_INTERNAL,
            Status::Other(c) => c,
        }
    }

    /// The library's static text for the code ("context full", ...).
    pub fn description(self) -> String {
        unsafe { string_from_static(sys::frugal_status_string(self.code())) }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

/// A failure: the status code and the library's message (offending values included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Takes ownership of `err` (may be NULL) and frees it.
    unsafe fn from_c(status: sys::frugal_status, err: *mut sys::frugal_error) -> Error {
        let mut message = String::new();
        if !err.is_null() {
            message = string_from_static(sys::frugal_error_message(err));
            sys::frugal_error_free(err);
        }
        let status = Status::from_code(status);
        if message.is_empty() {
            message = status.description();
        }
        Error { status, message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let desc = self.status.description();
        if self.message == desc {
            write!(f, "frugal: {}", desc)
        } else {
            write!(f, "frugal: {} ({})", self.message, desc)
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Maps a C status to `Ok(status)` (OK or DONE) or an error, freeing the error object.
unsafe fn check(status: sys::frugal_status, err: *mut sys::frugal_error) -> Result<sys::frugal_status> {
    if status < 0 {
        Err(Error::from_c(status, err))
    } else {
        if !err.is_null() {
            sys::frugal_error_free(err);
        }
        Ok(status)
    }
}

/// Copies a NUL-terminated string the library owns (NULL gives "").
unsafe fn string_from_static(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// A special token id from the C API, which says "none" with a negative id.
fn special_id(id: i32) -> Option<i32> {
    if id < 0 {
        None
    } else {
        Some(id)
    }
}

fn string_from_bytes(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(Status::InvalidArgument, format!("{} contains a NUL byte: {:?}", what, s)))
}

#[cfg(unix)]
fn path_to_c(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(Status::InvalidArgument, format!("path {:?} contains a NUL byte", path)))
}

#[cfg(not(unix))]
fn path_to_c(path: &Path) -> Result<CString> {
    match path.to_str() {
        Some(s) => c_string("path", s),
        None => Err(Error::new(Status::InvalidArgument, format!("path {:?} is not valid UTF-8", path))),
    }
}

/// Calls `f(buf, cap, out_len, err)` until the buffer is large enough (the C functions report
/// the size they need with FRUGAL_ERR_BUFFER_TOO_SMALL); returns the status and the bytes.
fn read_into<F>(initial: usize, buf: &mut Vec<u8>, mut f: F) -> Result<(sys::frugal_status, usize)>
where
    F: FnMut(*mut c_char, usize, *mut usize, *mut *mut sys::frugal_error) -> sys::frugal_status,
{
    if buf.len() < initial {
        buf.resize(initial, 0);
    }
    // The size needed is exact, so the second call fits; a few rounds guard against a library
    // that keeps asking for more (a bug) turning into an endless loop.
    for _ in 0..8 {
        let mut len: usize = 0;
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        let st = f(buf.as_mut_ptr() as *mut c_char, buf.len(), &mut len, &mut err);
        if st == sys::FRUGAL_ERR_BUFFER_TOO_SMALL {
            if !err.is_null() {
                unsafe { sys::frugal_error_free(err) };
            }
            let want = if len > buf.len() { len } else { buf.len() * 2 };
            buf.resize(want, 0);
            continue;
        }
        let st = unsafe { check(st, err)? };
        return Ok((st, len.min(buf.len())));
    }
    Err(Error::new(Status::BufferTooSmall, "frugal: the buffer kept growing; giving up"))
}

fn read_string<F>(initial: usize, f: F) -> Result<Vec<u8>>
where
    F: FnMut(*mut c_char, usize, *mut usize, *mut *mut sys::frugal_error) -> sys::frugal_status,
{
    let mut buf = Vec::new();
    let (_, len) = read_into(initial, &mut buf, f)?;
    buf.truncate(len);
    Ok(buf)
}

/// Same for a NUL-terminated result (its length counts the NUL).
fn read_c_string<F>(f: F) -> Result<String>
where
    F: FnMut(*mut c_char, usize, *mut usize, *mut *mut sys::frugal_error) -> sys::frugal_status,
{
    let mut bytes = read_string(128, f)?;
    if bytes.last() == Some(&0) {
        bytes.pop();
    }
    Ok(string_from_bytes(bytes))
}

fn read_ids<F>(initial: usize, mut f: F) -> Result<Vec<i32>>
where
    F: FnMut(*mut i32, usize, *mut usize, *mut *mut sys::frugal_error) -> sys::frugal_status,
{
    let mut ids: Vec<i32> = vec![0; initial.max(1)];
    for _ in 0..8 {
        let mut n: usize = 0;
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        let st = f(ids.as_mut_ptr(), ids.len(), &mut n, &mut err);
        if st == sys::FRUGAL_ERR_BUFFER_TOO_SMALL {
            if !err.is_null() {
                unsafe { sys::frugal_error_free(err) };
            }
            let want = if n > ids.len() { n } else { ids.len() * 2 };
            ids.resize(want, 0);
            continue;
        }
        unsafe { check(st, err)? };
        ids.truncate(n);
        return Ok(ids);
    }
    Err(Error::new(Status::BufferTooSmall, "frugal: the buffer kept growing; giving up"))
}

// ---- version -------------------------------------------------------------------------------------

/// The library's version number, `MAJOR * 10000 + MINOR * 100 + PATCH`.
pub fn version_number() -> u32 {
    unsafe { sys::frugal_version_number() }
}

/// The library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> String {
    unsafe { string_from_static(sys::frugal_version_string()) }
}

/// Checks that the loaded library implements the ABI these bindings were written for
/// ([`sys::FRUGAL_VERSION_NUMBER`]): same major, and while 0.x the same minor (which may break
/// the ABI); a newer patch or, from 1.0, a newer minor is fine. A mismatch is an error with
/// [`Status::Internal`] naming both versions.
pub fn check_version() -> Result<()> {
    let have = version_number();
    let (major, minor) = (have / 10000, have / 100 % 100);
    let ok = major == sys::FRUGAL_VERSION_MAJOR
        && if major == 0 { minor == sys::FRUGAL_VERSION_MINOR } else { minor >= sys::FRUGAL_VERSION_MINOR };
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            Status::Internal,
            format!(
                "libfrugal {} is not ABI-compatible with these bindings (written for {}.{}.{})",
                version(),
                sys::FRUGAL_VERSION_MAJOR,
                sys::FRUGAL_VERSION_MINOR,
                sys::FRUGAL_VERSION_PATCH
            ),
        ))
    }
}

// ---- logging -------------------------------------------------------------------------------------

/// Severity of a log message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn from_c(level: i32) -> LogLevel {
        match level {
            sys::FRUGAL_LOG_LEVEL_DEBUG => LogLevel::Debug,
            sys::FRUGAL_LOG_LEVEL_INFO => LogLevel::Info,
            sys::FRUGAL_LOG_LEVEL_WARN => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    }

    fn to_c(self) -> i32 {
        match self {
            LogLevel::Debug => sys::FRUGAL_LOG_LEVEL_DEBUG,
            LogLevel::Info => sys::FRUGAL_LOG_LEVEL_INFO,
            LogLevel::Warn => sys::FRUGAL_LOG_LEVEL_WARN,
            LogLevel::Error => sys::FRUGAL_LOG_LEVEL_ERROR,
        }
    }
}

type LogFn = dyn Fn(LogLevel, &str) + Send + Sync + 'static;

// The C library may still be calling the previous callback (on a worker thread) when it is
// replaced, so the C side only ever sees one static trampoline and no user data; the Rust
// callback lives here and is cloned out under the lock for each message.
static LOGGER: Mutex<Option<Arc<LogFn>>> = Mutex::new(None);

unsafe extern "C" fn log_trampoline(level: i32, message: *const c_char, _user_data: *mut c_void) {
    let f = match LOGGER.lock() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if let Some(f) = f {
        let text = string_from_static(message);
        // A panic must not unwind into C; it is dropped here.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(LogLevel::from_c(level), &text)));
    }
}

/// Routes the library's log (messages at `min_level` and above) to `f`, process-wide. `f` may be
/// called from the library's worker threads, hence `Send + Sync`. A panic in `f` is swallowed.
pub fn set_log_callback<F>(min_level: LogLevel, f: F)
where
    F: Fn(LogLevel, &str) + Send + Sync + 'static,
{
    {
        let mut guard = match LOGGER.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = Some(Arc::new(f));
    }
    unsafe { sys::frugal_set_log_callback(Some(log_trampoline), ptr::null_mut(), min_level.to_c()) };
}

/// Restores the default log: stderr at WARN and above (`FRUGAL_LOG=debug|info|warn|error`).
pub fn clear_log_callback() {
    unsafe { sys::frugal_set_log_callback(None, ptr::null_mut(), sys::FRUGAL_LOG_LEVEL_WARN) };
    let mut guard = match LOGGER.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *guard = None;
}

// ---- model ---------------------------------------------------------------------------------------

struct ModelInner {
    ptr: *mut sys::frugal_model,
}

// frugal_model is immutable after load and documented as shareable by any number of threads.
unsafe impl Send for ModelInner {}
unsafe impl Sync for ModelInner {}

impl Drop for ModelInner {
    fn drop(&mut self) {
        // Drops this reference; live sessions and tokenizers keep the weights alive.
        unsafe { sys::frugal_model_free(self.ptr) };
    }
}

/// How to load a model: see [`Model::load_with`].
/// The element type of a session's KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum KvType {
    /// Keys and values exactly as computed.
    F32 = sys::FRUGAL_KV_F32,
    /// Half the memory and half the bytes a decode step reads from the cache (the default, as
    /// llama.cpp's default cache).
    F16 = sys::FRUGAL_KV_F16,
    /// About a quarter of F32's memory: blocks of 32 values with one F16 scale, as llama.cpp's
    /// `-ctk q8_0 -ctv q8_0`. For models whose attention heads are a multiple of 32 values wide
    /// (an invalid-argument error otherwise).
    Q8_0 = sys::FRUGAL_KV_Q8_0,
}

/// Options for [`Model::session_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Context positions (0 = min(training context, 4096)).
    pub n_ctx: i32,
    pub kv_type: KvType,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { n_ctx: 0, kv_type: KvType::F16 }
    }
}

pub struct LoadOptions<'a> {
    n_threads: i32,
    use_mmap: bool,
    repack_weights: bool,
    progress: Option<Box<dyn FnMut(f32) -> bool + Send + 'a>>,
}

impl<'a> Default for LoadOptions<'a> {
    fn default() -> Self {
        LoadOptions { n_threads: 0, use_mmap: true, repack_weights: true, progress: None }
    }
}

impl<'a> LoadOptions<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Threads for evaluation; 0 (default) = the physical cores this process may use.
    pub fn n_threads(mut self, n: i32) -> Self {
        self.n_threads = n;
        self
    }

    /// Map the file (default) or read it into memory.
    pub fn use_mmap(mut self, on: bool) -> Self {
        self.use_mmap = on;
        self
    }

    /// Rewrite Q4_0 and Q5_0 matrices at load into a faster decode layout where this CPU decodes that
    /// faster (default: CPUs without AVX-512 VNNI; no extra memory), or
    /// use every weight in place (`false`: processes mapping the same file then share its pages).
    pub fn repack_weights(mut self, on: bool) -> Self {
        self.repack_weights = on;
        self
    }

    /// Called during the load with the fraction loaded (0..=1), one call at a time; return
    /// `false` to stop the load, which then fails with [`Status::Cancelled`]. A panic in `f`
    /// stops the load and is resumed by [`Model::load_with`]. (`Send` because the C contract
    /// does not promise which thread calls it; today it is the loading thread.)
    pub fn progress<F: FnMut(f32) -> bool + Send + 'a>(mut self, f: F) -> Self {
        self.progress = Some(Box::new(f));
        self
    }
}

struct ProgressState<'p, 'a> {
    f: &'p mut (dyn FnMut(f32) -> bool + Send + 'a),
    panic: Option<Box<dyn std::any::Any + Send + 'static>>,
}

unsafe extern "C" fn progress_trampoline(fraction: f32, user_data: *mut c_void) -> i32 {
    let state = &mut *(user_data as *mut ProgressState<'_, '_>);
    if state.panic.is_some() {
        return 1;
    }
    let f = &mut state.f;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(fraction))) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(payload) => {
            // Stop the load; the panic is resumed once the C call has returned.
            state.panic = Some(payload);
            1
        }
    }
}

/// A loaded model: immutable weights, shared by any number of threads and sessions.
/// `Clone` copies a reference.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("architecture", &self.architecture())
            .field("name", &self.name())
            .field("n_params", &self.n_params())
            .finish()
    }
}

impl Model {
    /// Loads a GGUF model with the default options.
    pub fn load<P: AsRef<Path>>(path: P) -> Result<Model> {
        Model::load_with(path, LoadOptions::default())
    }

    /// Loads a GGUF model. A malformed file is [`Status::InvalidModel`], one frugal cannot run
    /// [`Status::UnsupportedModel`], a missing one [`Status::Io`].
    pub fn load_with<P: AsRef<Path>>(path: P, options: LoadOptions<'_>) -> Result<Model> {
        let cpath = path_to_c(path.as_ref())?;
        let mut opts = sys::frugal_model_options {
            struct_size: 0,
            n_threads: 0,
            use_mmap: 1,
            reserved0: 0,
            progress: None,
            progress_user_data: ptr::null_mut(),
            repack_weights: 1,
            reserved1: 0,
        };
        unsafe {
            check(
                sys::frugal_model_options_init(&mut opts, std::mem::size_of::<sys::frugal_model_options>() as u32),
                ptr::null_mut(),
            )?
        };
        opts.n_threads = options.n_threads;
        opts.use_mmap = if options.use_mmap { 1 } else { 0 };
        opts.repack_weights = if options.repack_weights { 1 } else { 0 };
        let mut progress = options.progress;
        let mut state = progress.as_mut().map(|f| ProgressState { f: &mut **f, panic: None });
        if let Some(state) = state.as_mut() {
            opts.progress = Some(progress_trampoline);
            opts.progress_user_data = state as *mut ProgressState<'_, '_> as *mut c_void;
        }
        let mut out: *mut sys::frugal_model = ptr::null_mut();
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        let st = unsafe { sys::frugal_model_load(cpath.as_ptr(), &opts, &mut out, &mut err) };
        if let Some(payload) = state.as_mut().and_then(|s| s.panic.take()) {
            if st >= 0 {
                unsafe { sys::frugal_model_free(out) };
            } else if !err.is_null() {
                unsafe { sys::frugal_error_free(err) };
            }
            std::panic::resume_unwind(payload);
        }
        unsafe { check(st, err)? };
        Ok(Model { inner: Arc::new(ModelInner { ptr: out }) })
    }

    /// The raw handle, valid while this `Model` (or a clone) lives. Do not free it.
    pub fn as_ptr(&self) -> *mut sys::frugal_model {
        self.inner.ptr
    }

    fn raw(&self) -> *const sys::frugal_model {
        self.inner.ptr
    }

    /// A new session with a KV cache of `n_ctx` positions (0 = min(training context, 4096)) and
    /// the default options otherwise.
    pub fn session(&self, n_ctx: i32) -> Result<Session> {
        self.session_with(&SessionOptions { n_ctx, ..SessionOptions::default() })
    }

    /// A new session with the given options.
    pub fn session_with(&self, options: &SessionOptions) -> Result<Session> {
        let mut o = std::mem::MaybeUninit::<sys::frugal_session_options>::zeroed();
        let size = std::mem::size_of::<sys::frugal_session_options>() as u32;
        let mut o = unsafe {
            sys::frugal_session_options_init(o.as_mut_ptr(), size);
            o.assume_init()
        };
        o.n_ctx = options.n_ctx;
        o.kv_type = options.kv_type as i32;
        let mut out: *mut sys::frugal_session = ptr::null_mut();
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe { check(sys::frugal_session_create_v2(self.inner.ptr, &o, &mut out, &mut err), err)? };
        Ok(Session::from_raw(out))
    }

    /// The model's tokenizer (a new reference; it keeps the model's data alive).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let mut out: *mut sys::frugal_tokenizer = ptr::null_mut();
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe { check(sys::frugal_model_get_tokenizer(self.inner.ptr, &mut out, &mut err), err)? };
        Ok(Tokenizer { inner: Arc::new(TokenizerInner { ptr: out }) })
    }

    pub fn n_vocab(&self) -> i32 {
        unsafe { sys::frugal_model_n_vocab(self.raw()) }
    }
    pub fn n_ctx_train(&self) -> i32 {
        unsafe { sys::frugal_model_n_ctx_train(self.raw()) }
    }
    pub fn n_embd(&self) -> i32 {
        unsafe { sys::frugal_model_n_embd(self.raw()) }
    }
    pub fn n_layers(&self) -> i32 {
        unsafe { sys::frugal_model_n_layers(self.raw()) }
    }
    pub fn n_heads(&self) -> i32 {
        unsafe { sys::frugal_model_n_heads(self.raw()) }
    }
    pub fn n_heads_kv(&self) -> i32 {
        unsafe { sys::frugal_model_n_heads_kv(self.raw()) }
    }
    pub fn n_params(&self) -> u64 {
        unsafe { sys::frugal_model_n_params(self.raw()) }
    }
    /// Weight bytes as stored.
    pub fn size_bytes(&self) -> u64 {
        unsafe { sys::frugal_model_size_bytes(self.raw()) }
    }
    /// Routed experts (0 for a dense model).
    pub fn n_experts(&self) -> i32 {
        unsafe { sys::frugal_model_n_experts(self.raw()) }
    }
    pub fn n_experts_used(&self) -> i32 {
        unsafe { sys::frugal_model_n_experts_used(self.raw()) }
    }
    /// KV cache bytes one context position costs, all layers.
    pub fn kv_bytes_per_token(&self) -> u64 {
        unsafe { sys::frugal_model_kv_bytes_per_token(self.raw()) }
    }
    /// "llama", "qwen2", "deepseek2".
    pub fn architecture(&self) -> String {
        unsafe { string_from_static(sys::frugal_model_architecture(self.raw())) }
    }
    /// general.name, or "".
    pub fn name(&self) -> String {
        unsafe { string_from_static(sys::frugal_model_name(self.raw())) }
    }
    pub fn token_bos(&self) -> Option<i32> {
        special_id(unsafe { sys::frugal_model_token_bos(self.raw()) })
    }
    pub fn token_eos(&self) -> Option<i32> {
        special_id(unsafe { sys::frugal_model_token_eos(self.raw()) })
    }
    /// Whether the token ends generation (EOS, EOT and similar).
    pub fn token_is_eog(&self, token: i32) -> bool {
        unsafe { sys::frugal_model_token_is_eog(self.raw(), token) != 0 }
    }

    /// Number of GGUF metadata entries.
    pub fn meta_count(&self) -> i32 {
        unsafe { sys::frugal_model_meta_count(self.raw()) }
    }
    /// Key of metadata entry `i`.
    pub fn meta_key(&self, i: i32) -> Result<String> {
        let m = self.raw();
        read_c_string(|buf, cap, len, err| unsafe { sys::frugal_model_meta_key(m, i, buf, cap, len, err) })
    }
    /// A metadata value rendered as text (strings whole, arrays summarised).
    pub fn meta_value(&self, key: &str) -> Result<String> {
        let m = self.raw();
        let key = c_string("metadata key", key)?;
        read_c_string(|buf, cap, len, err| unsafe { sys::frugal_model_meta_value(m, key.as_ptr(), buf, cap, len, err) })
    }
    /// All metadata as (key, value) pairs, in file order.
    pub fn metadata(&self) -> Result<Vec<(String, String)>> {
        let mut all = Vec::new();
        for i in 0..self.meta_count() {
            let k = self.meta_key(i)?;
            let v = self.meta_value(&k)?;
            all.push((k, v));
        }
        Ok(all)
    }

    /// Text to token ids with the model's tokenizer (see [`Tokenizer::encode`]).
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>> {
        let m = self.raw();
        read_ids(text.len() + 8, |out, cap, n, err| unsafe {
            sys::frugal_tokenize(
                m,
                text.as_ptr() as *const c_char,
                text.len(),
                add_special as i32,
                parse_special as i32,
                out,
                cap,
                n,
                err,
            )
        })
    }

    /// Token ids to text with the model's tokenizer (see [`Tokenizer::decode`]).
    pub fn detokenize(&self, tokens: &[i32], special: bool) -> Result<String> {
        let m = self.raw();
        let bytes = read_string(tokens.len() * 8 + 16, |buf, cap, len, err| unsafe {
            sys::frugal_detokenize(m, tokens.as_ptr(), tokens.len(), special as i32, buf, cap, len, err)
        })?;
        Ok(string_from_bytes(bytes))
    }
}

// ---- tokenizer -----------------------------------------------------------------------------------

struct TokenizerInner {
    ptr: *mut sys::frugal_tokenizer,
}

// frugal_tokenizer is immutable and documented as shareable by any number of threads.
unsafe impl Send for TokenizerInner {}
unsafe impl Sync for TokenizerInner {}

impl Drop for TokenizerInner {
    fn drop(&mut self) {
        unsafe { sys::frugal_tokenizer_free(self.ptr) };
    }
}

/// One conversation turn for [`Tokenizer::apply_chat_template`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    /// "system", "user" or "assistant".
    pub role: &'a str,
    pub content: &'a str,
}

impl<'a> ChatMessage<'a> {
    pub fn new(role: &'a str, content: &'a str) -> Self {
        ChatMessage { role, content }
    }
    pub fn system(content: &'a str) -> Self {
        ChatMessage { role: "system", content }
    }
    pub fn user(content: &'a str) -> Self {
        ChatMessage { role: "user", content }
    }
    pub fn assistant(content: &'a str) -> Self {
        ChatMessage { role: "assistant", content }
    }
}

/// A tokenizer: a model's ([`Model::tokenizer`]) or one loaded alone ([`Tokenizer::load`]).
/// Immutable, `Send + Sync`; `Clone` copies a reference.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<TokenizerInner>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer").field("n_vocab", &self.n_vocab()).field("chat_format", &self.chat_format()).finish()
    }
}

impl Tokenizer {
    /// Loads a tokenizer without weights: a GGUF file, or a Hugging Face byte-level BPE
    /// tokenizer (a folder with tokenizer.json, or the tokenizer.json file).
    pub fn load<P: AsRef<Path>>(path: P) -> Result<Tokenizer> {
        let cpath = path_to_c(path.as_ref())?;
        let mut out: *mut sys::frugal_tokenizer = ptr::null_mut();
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe { check(sys::frugal_tokenizer_load(cpath.as_ptr(), &mut out, &mut err), err)? };
        Ok(Tokenizer { inner: Arc::new(TokenizerInner { ptr: out }) })
    }

    /// The raw handle, valid while this `Tokenizer` (or a clone) lives. Do not free it.
    pub fn as_ptr(&self) -> *mut sys::frugal_tokenizer {
        self.inner.ptr
    }

    fn raw(&self) -> *const sys::frugal_tokenizer {
        self.inner.ptr
    }

    pub fn n_vocab(&self) -> i32 {
        unsafe { sys::frugal_tokenizer_n_vocab(self.raw()) }
    }
    pub fn token_bos(&self) -> Option<i32> {
        special_id(unsafe { sys::frugal_tokenizer_token_bos(self.raw()) })
    }
    pub fn token_eos(&self) -> Option<i32> {
        special_id(unsafe { sys::frugal_tokenizer_token_eos(self.raw()) })
    }
    pub fn token_is_eog(&self, token: i32) -> bool {
        unsafe { sys::frugal_tokenizer_token_is_eog(self.raw(), token) != 0 }
    }

    /// Text to token ids. `add_special`: BOS/EOS as the vocabulary asks; `parse_special`:
    /// control-token texts in `text` become those tokens.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>> {
        let t = self.raw();
        read_ids(text.len() + 8, |out, cap, n, err| unsafe {
            sys::frugal_tokenizer_encode(
                t,
                text.as_ptr() as *const c_char,
                text.len(),
                add_special as i32,
                parse_special as i32,
                out,
                cap,
                n,
                err,
            )
        })
    }

    /// Token ids to bytes (`special`: render control tokens). A prefix of a token sequence may
    /// end inside a UTF-8 character; see [`Tokenizer::decode`].
    pub fn decode_bytes(&self, tokens: &[i32], special: bool) -> Result<Vec<u8>> {
        let t = self.raw();
        read_string(tokens.len() * 8 + 16, |buf, cap, len, err| unsafe {
            sys::frugal_tokenizer_decode(t, tokens.as_ptr(), tokens.len(), special as i32, buf, cap, len, err)
        })
    }

    /// Token ids to text; bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, tokens: &[i32], special: bool) -> Result<String> {
        Ok(string_from_bytes(self.decode_bytes(tokens, special)?))
    }

    /// The built-in chat format the tokenizer calls for: "deepseek-r1", "deepseek-v3",
    /// "deepseek-v2", "chatml", "llama3", "llama3.1", or "none".
    pub fn chat_format(&self) -> String {
        unsafe { string_from_static(sys::frugal_tokenizer_chat_format(self.raw())) }
    }

    /// Renders a conversation into prompt text with the tokenizer's own chat format; with
    /// `add_generation_prompt` it ends with the assistant's opening. Feed the result to
    /// [`Session::prompt`] (no second BOS is added).
    pub fn apply_chat_template(&self, messages: &[ChatMessage<'_>], add_generation_prompt: bool) -> Result<String> {
        self.render(None, messages, add_generation_prompt)
    }

    /// Same with a format forced by name (see [`Tokenizer::chat_format`]).
    pub fn apply_chat_template_as(
        &self,
        format: &str,
        messages: &[ChatMessage<'_>],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render(Some(format), messages, add_generation_prompt)
    }

    fn render(&self, format: Option<&str>, messages: &[ChatMessage<'_>], add_gen: bool) -> Result<String> {
        let format = match format {
            Some(f) => Some(c_string("chat format", f)?),
            None => None,
        };
        let mut roles = Vec::with_capacity(messages.len());
        for m in messages {
            roles.push(c_string("chat role", m.role)?);
        }
        let raw: Vec<sys::frugal_chat_message> = messages
            .iter()
            .zip(roles.iter())
            .map(|(m, role)| sys::frugal_chat_message {
                role: role.as_ptr(),
                content: m.content.as_ptr() as *const c_char,
                content_len: m.content.len(),
            })
            .collect();
        let t = self.raw();
        let fmt_ptr = format.as_ref().map(|f| f.as_ptr()).unwrap_or(ptr::null());
        let guess = messages.iter().map(|m| m.content.len() + 64).sum::<usize>() + 64;
        let bytes = read_string(guess, |buf, cap, len, err| unsafe {
            sys::frugal_chat_apply_template(t, fmt_ptr, raw.as_ptr(), raw.len(), add_gen as i32, buf, cap, len, err)
        })?;
        Ok(string_from_bytes(bytes))
    }
}

// ---- session -------------------------------------------------------------------------------------

struct SessionInner {
    ptr: *mut sys::frugal_session,
}

// Only frugal_session_cancel, which is safe from any thread, is ever called through a shared
// `&SessionInner` (by CancelHandle). Everything else goes through `&mut Session`, so one thread
// at a time, as the C contract asks.
unsafe impl Send for SessionInner {}
unsafe impl Sync for SessionInner {}

impl Drop for SessionInner {
    fn drop(&mut self) {
        // Runs when the last strong reference goes: the Session, or a CancelHandle that was
        // cancelling at that moment. Either way no call is running on the session any more.
        unsafe { sys::frugal_session_free(self.ptr) };
    }
}

/// A sampling/run knob of [`Session::set_param_f32`] / [`Session::set_param_i64`]. The named
/// setters cover the known keys; this type lets newer keys be passed by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Param(pub i32);

impl Param {
    /// f32; <= 0 = greedy.
    pub const TEMPERATURE: Param = Param(sys::FRUGAL_PARAM_TEMPERATURE);
    /// i64; 0 = off.
    pub const TOP_K: Param = Param(sys::FRUGAL_PARAM_TOP_K);
    /// f32 in (0, 1].
    pub const TOP_P: Param = Param(sys::FRUGAL_PARAM_TOP_P);
    /// i64; resets the sampler's random stream.
    pub const SEED: Param = Param(sys::FRUGAL_PARAM_SEED);
    /// f32 in [0, 1].
    pub const MIN_P: Param = Param(sys::FRUGAL_PARAM_MIN_P);
    /// f32 > 0; 1 = off.
    pub const REPEAT_PENALTY: Param = Param(sys::FRUGAL_PARAM_REPEAT_PENALTY);
    /// i64; tokens looked back for the penalty.
    pub const REPEAT_LAST_N: Param = Param(sys::FRUGAL_PARAM_REPEAT_LAST_N);
    /// i64; threads for this session's evaluations.
    pub const N_THREADS: Param = Param(sys::FRUGAL_PARAM_N_THREADS);
}

/// A generated token: its id and the UTF-8 text it completes (possibly empty: a character split
/// across tokens is held back until it is whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: i32,
    pub text: String,
}

/// Whether a [`Part`] of generated text is reasoning (`<think>` ... `</think>`) or the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Content,
    Reasoning,
}

/// Generated text of one kind, from [`Session::next_part`]. `token` is the id of the token the
/// text came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub kind: Kind,
    pub text: String,
    pub token: i32,
}

/// What the C call returned at the end of generation and has not been handed out yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    No,
    /// The end token came with text, returned as a last item; the next call returns None.
    Pending,
}

/// A conversation with a model: KV cache, sampler and streaming state.
///
/// `Send` but not `Sync`: one thread at a time (move it to a worker thread freely). To stop a
/// running call from another thread use a [`CancelHandle`].
pub struct Session {
    inner: Arc<SessionInner>,
    buf: Vec<u8>,
    ending: Ending,
    // Cell<()> is Send and !Sync, which makes Session !Sync while keeping it Send.
    _not_sync: PhantomData<Cell<()>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("n_ctx", &self.n_ctx()).field("n_past", &self.n_past()).finish()
    }
}

impl Session {
    fn from_raw(ptr: *mut sys::frugal_session) -> Session {
        Session { inner: Arc::new(SessionInner { ptr }), buf: vec![0; 256], ending: Ending::No, _not_sync: PhantomData }
    }

    fn raw(&self) -> *mut sys::frugal_session {
        self.inner.ptr
    }

    /// The raw handle, valid while this session lives. Do not free it.
    pub fn as_ptr(&self) -> *mut sys::frugal_session {
        self.inner.ptr
    }

    /// Context positions of the KV cache.
    pub fn n_ctx(&self) -> i32 {
        unsafe { sys::frugal_session_n_ctx(self.raw()) }
    }
    /// Positions used so far.
    pub fn n_past(&self) -> i32 {
        unsafe { sys::frugal_session_n_past(self.raw()) }
    }
    /// Bytes of the KV cache (n_ctx x per-token bytes of its type).
    pub fn kv_bytes(&self) -> u64 {
        unsafe { sys::frugal_session_kv_bytes(self.raw()) }
    }
    /// The KV cache's element type.
    pub fn kv_type(&self) -> KvType {
        match unsafe { sys::frugal_session_kv_type(self.raw()) } {
            sys::FRUGAL_KV_F32 => KvType::F32,
            sys::FRUGAL_KV_Q8_0 => KvType::Q8_0,
            _ => KvType::F16,
        }
    }

    /// A handle that cancels this session's running call from any thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle { inner: Arc::downgrade(&self.inner) }
    }

    /// Forgets the conversation (the KV cache stays allocated) and reseeds the sampler.
    pub fn reset(&mut self) -> Result<()> {
        self.ending = Ending::No;
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe { check(sys::frugal_session_reset(self.raw(), &mut err), err)? };
        Ok(())
    }

    /// Sets a float knob by key.
    pub fn set_param_f32(&mut self, key: Param, value: f32) -> Result<()> {
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe { check(sys::frugal_session_set_param_f32(self.raw(), key.0, value, &mut err), err)? };
        Ok(())
    }

    /// Sets an integer knob by key.
    pub fn set_param_i64(&mut self, key: Param, value: i64) -> Result<()> {
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe { check(sys::frugal_session_set_param_i64(self.raw(), key.0, value, &mut err), err)? };
        Ok(())
    }

    /// Sampling temperature; <= 0 = greedy. Default 0.8 (0.6 for DeepSeek-R1-family models).
    pub fn set_temperature(&mut self, t: f32) -> Result<()> {
        self.set_param_f32(Param::TEMPERATURE, t)
    }
    /// Top-k; 0 = off. Default 40.
    pub fn set_top_k(&mut self, k: i32) -> Result<()> {
        self.set_param_i64(Param::TOP_K, k as i64)
    }
    /// Top-p in (0, 1]. Default 0.95.
    pub fn set_top_p(&mut self, p: f32) -> Result<()> {
        self.set_param_f32(Param::TOP_P, p)
    }
    /// Min-p in [0, 1]. Default 0.05.
    pub fn set_min_p(&mut self, p: f32) -> Result<()> {
        self.set_param_f32(Param::MIN_P, p)
    }
    /// Seed of the sampler's random stream (resets it). Default 0xF00D.
    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        self.set_param_i64(Param::SEED, seed as i64)
    }
    /// Repetition penalty > 0; 1 = off (default).
    pub fn set_repeat_penalty(&mut self, penalty: f32) -> Result<()> {
        self.set_param_f32(Param::REPEAT_PENALTY, penalty)
    }
    /// Tokens looked back for the repetition penalty. Default 64.
    pub fn set_repeat_last_n(&mut self, n: i32) -> Result<()> {
        self.set_param_i64(Param::REPEAT_LAST_N, n as i64)
    }
    /// Threads for this session's evaluations (1..=1024). Default: the model's.
    pub fn set_threads(&mut self, n: i32) -> Result<()> {
        self.set_param_i64(Param::N_THREADS, n as i64)
    }

    /// Evaluates prompt text (BOS added at the start of the context when the model asks for it;
    /// special-token texts recognised). [`Status::ContextFull`] when it does not fit (nothing
    /// evaluated); [`Status::Cancelled`] when cancelled (the session is as before).
    pub fn prompt(&mut self, text: &str) -> Result<()> {
        self.ending = Ending::No;
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe {
            check(sys::frugal_session_prompt(self.raw(), text.as_ptr() as *const c_char, text.len(), &mut err), err)?
        };
        Ok(())
    }

    /// Evaluates token ids (as [`Session::prompt`]).
    pub fn prompt_tokens(&mut self, tokens: &[i32]) -> Result<()> {
        self.ending = Ending::No;
        let mut err: *mut sys::frugal_error = ptr::null_mut();
        unsafe { check(sys::frugal_session_prompt_tokens(self.raw(), tokens.as_ptr(), tokens.len(), &mut err), err)? };
        Ok(())
    }

    /// Samples one token. `Ok(None)` at the end of generation (an end-of-generation token was
    /// sampled); if that token released held-back text, the text first comes as a last `Token`
    /// carrying the end token's id, and the following call returns `Ok(None)`. After the end,
    /// calling again continues the conversation (the end token is evaluated).
    #[allow(clippy::should_implement_trait)] // a fallible pull, not an Iterator: see `tokens`
    pub fn next(&mut self) -> Result<Option<Token>> {
        self.pull(Session::next_raw, |token| token.text.is_empty())
    }

    /// The end-of-generation rule `next` and `next_part` share: at FRUGAL_DONE, an item with
    /// text is returned first and `Ok(None)` on the following call.
    fn pull<T>(&mut self, raw: fn(&mut Session) -> Result<(bool, T)>, is_empty: fn(&T) -> bool) -> Result<Option<T>> {
        if self.ending == Ending::Pending {
            self.ending = Ending::No;
            return Ok(None);
        }
        let (done, item) = raw(self)?;
        if !done {
            return Ok(Some(item));
        }
        if is_empty(&item) {
            Ok(None)
        } else {
            self.ending = Ending::Pending;
            Ok(Some(item))
        }
    }

    /// `frugal_session_next` as is: (true at FRUGAL_DONE, the token and its text).
    pub fn next_raw(&mut self) -> Result<(bool, Token)> {
        let s = self.raw();
        let mut id: i32 = -1;
        let (st, len) = read_into(256, &mut self.buf, |buf, cap, len, err| unsafe {
            sys::frugal_session_next(s, &mut id, buf, cap, len, err)
        })?;
        let text = string_from_bytes(self.buf[..len].to_vec());
        Ok((st == sys::FRUGAL_DONE, Token { id, text }))
    }

    /// Like [`Session::next`], with the text split into reasoning (between `<think>` and
    /// `</think>`, tags removed) and content. A token that completes text of both kinds gives
    /// two parts (same `token`). Parts may be empty (text held back). `Ok(None)` at the end;
    /// a last part with text comes first, as with `next`. Use either `next` or `next_part` for
    /// one generation, not both.
    pub fn next_part(&mut self) -> Result<Option<Part>> {
        self.pull(Session::next_part_raw, |part| part.text.is_empty())
    }

    /// `frugal_session_next_part` as is: (true at FRUGAL_DONE, the part).
    pub fn next_part_raw(&mut self) -> Result<(bool, Part)> {
        let s = self.raw();
        let mut id: i32 = -1;
        let mut kind: i32 = sys::FRUGAL_TEXT_CONTENT;
        let (st, len) = read_into(256, &mut self.buf, |buf, cap, len, err| unsafe {
            sys::frugal_session_next_part(s, &mut id, &mut kind, buf, cap, len, err)
        })?;
        let text = string_from_bytes(self.buf[..len].to_vec());
        let kind = if kind == sys::FRUGAL_TEXT_REASONING { Kind::Reasoning } else { Kind::Content };
        Ok((st == sys::FRUGAL_DONE, Part { kind, text, token: id }))
    }

    /// An iterator over at most `max_tokens` generated tokens; it ends at the end of
    /// generation, and after yielding an error.
    pub fn tokens(&mut self, max_tokens: usize) -> Tokens<'_> {
        Tokens { session: self, left: max_tokens, failed: false }
    }

    /// An iterator over the parts of at most `max_tokens` generated tokens (see
    /// [`Session::next_part`]); it ends at the end of generation, and after yielding an error.
    pub fn parts(&mut self, max_tokens: usize) -> Parts<'_> {
        Parts { session: self, left: max_tokens, last: None, failed: false }
    }

    /// Generates up to `max_tokens` and returns the text (convenience over [`Session::tokens`]).
    pub fn complete(&mut self, max_tokens: usize) -> Result<String> {
        let mut text = String::new();
        for t in self.tokens(max_tokens) {
            text.push_str(&t?.text);
        }
        Ok(text)
    }

    /// Logits of the most recent evaluation ([n_vocab]); empty before any evaluation. After
    /// [`Session::next`] returned token t they are the logits t was drawn from.
    pub fn logits(&self) -> &[f32] {
        let mut n: i32 = 0;
        let p = unsafe { sys::frugal_session_logits(self.raw(), &mut n) };
        if p.is_null() || n <= 0 {
            &[]
        } else {
            // Owned by the session, valid until its next call, which needs `&mut self`.
            unsafe { std::slice::from_raw_parts(p, n as usize) }
        }
    }
}

/// Iterator of [`Session::tokens`].
pub struct Tokens<'s> {
    session: &'s mut Session,
    left: usize,
    failed: bool,
}

impl<'s> Iterator for Tokens<'s> {
    type Item = Result<Token>;

    fn next(&mut self) -> Option<Result<Token>> {
        if self.left == 0 || self.failed {
            return None;
        }
        self.left -= 1;
        match self.session.next() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => {
                self.left = 0;
                None
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterator of [`Session::parts`].
pub struct Parts<'s> {
    session: &'s mut Session,
    left: usize,
    last: Option<(i32, Kind)>,
    failed: bool,
}

impl<'s> Iterator for Parts<'s> {
    type Item = Result<Part>;

    fn next(&mut self) -> Option<Result<Part>> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            return None;
        }
        match self.session.next_part() {
            Ok(Some(p)) => {
                // The second part of a token that completed text of both kinds (same token,
                // other kind) is not a new token.
                let continuation = match self.last {
                    Some((id, kind)) => id == p.token && kind != p.kind,
                    None => false,
                };
                if !continuation {
                    self.left -= 1;
                }
                self.last = Some((p.token, p.kind));
                Some(Ok(p))
            }
            Ok(None) => {
                self.left = 0;
                None
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Cancels the running call of a session from any thread (`Send + Sync`, cheap to clone).
///
/// The interrupted call returns [`Status::Cancelled`] and the session stays usable; a cancel
/// while nothing runs is a no-op. The handle holds a weak reference: it does not keep the
/// session alive, and cancelling after the session is dropped does nothing.
#[derive(Clone)]
pub struct CancelHandle {
    inner: Weak<SessionInner>,
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle").field("session_alive", &(self.inner.strong_count() > 0)).finish()
    }
}

impl CancelHandle {
    /// Asks the session's running call to stop. Returns false if the session is gone.
    pub fn cancel(&self) -> bool {
        match self.inner.upgrade() {
            // While `s` lives the session cannot be freed (the last strong reference frees it).
            Some(s) => {
                unsafe { sys::frugal_session_cancel(s.ptr) };
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn thread_safety_markers() {
        assert_send_sync::<Model>();
        assert_send_sync::<Tokenizer>();
        assert_send_sync::<CancelHandle>();
        assert_send_sync::<Error>();
        assert_send::<Session>();
    }

    #[test]
    fn struct_layouts_match_the_header() {
        // frugal.h on LP64: u32 + 3 x i32, then two pointers.
        if std::mem::size_of::<usize>() == 8 {
            assert_eq!(std::mem::size_of::<sys::frugal_model_options>(), 40);
            assert_eq!(std::mem::align_of::<sys::frugal_model_options>(), 8);
            assert_eq!(std::mem::size_of::<sys::frugal_chat_message>(), 24);
        }
        // frugal_session_options: u32 + 3 x i32 on every platform.
        assert_eq!(std::mem::size_of::<sys::frugal_session_options>(), 16);
        let s = std::mem::MaybeUninit::<sys::frugal_session_options>::uninit();
        let (sb, sp) = (s.as_ptr() as usize, s.as_ptr());
        unsafe {
            assert_eq!(ptr::addr_of!((*sp).n_ctx) as usize - sb, 4);
            assert_eq!(ptr::addr_of!((*sp).kv_type) as usize - sb, 8);
            assert_eq!(ptr::addr_of!((*sp).reserved0) as usize - sb, 12);
        }
        let o = std::mem::MaybeUninit::<sys::frugal_model_options>::uninit();
        let base = o.as_ptr() as usize;
        let p = o.as_ptr();
        unsafe {
            assert_eq!(ptr::addr_of!((*p).struct_size) as usize - base, 0);
            assert_eq!(ptr::addr_of!((*p).n_threads) as usize - base, 4);
            assert_eq!(ptr::addr_of!((*p).use_mmap) as usize - base, 8);
            assert_eq!(ptr::addr_of!((*p).reserved0) as usize - base, 12);
            assert_eq!(ptr::addr_of!((*p).progress) as usize - base, 16);
            assert_eq!(ptr::addr_of!((*p).repack_weights) as usize - base, 32);
            assert_eq!(ptr::addr_of!((*p).reserved1) as usize - base, 36);
        }
    }

    #[test]
    fn status_codes_round_trip() {
        for code in [0, 1, -1, -2, -3, -4, -5, -6, -7, -8, -9, -100, -42, 7] {
            assert_eq!(Status::from_code(code).code(), code);
        }
        assert_eq!(Status::from_code(-5), Status::ContextFull);
        assert!(!Status::ContextFull.description().is_empty());
        assert_ne!(Status::ContextFull.description(), Status::Cancelled.description());
    }

    #[test]
    fn buffers_grow_to_the_size_asked_for() {
        let text = b"a piece longer than the first buffer";
        let mut calls = Vec::new();
        let got = read_string(4, |buf, cap, len, _err| {
            calls.push(cap);
            unsafe { *len = text.len() };
            if cap < text.len() {
                return sys::FRUGAL_ERR_BUFFER_TOO_SMALL;
            }
            unsafe { ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len()) };
            sys::FRUGAL_OK
        })
        .unwrap();
        assert_eq!(got, text.to_vec());
        assert_eq!(calls, vec![4, text.len()]);

        let ids = read_ids(1, |out, cap, n, _err| {
            unsafe { *n = 3 };
            if cap < 3 {
                return sys::FRUGAL_ERR_BUFFER_TOO_SMALL;
            }
            unsafe { std::slice::from_raw_parts_mut(out, 3).copy_from_slice(&[7, 8, 9]) };
            sys::FRUGAL_OK
        })
        .unwrap();
        assert_eq!(ids, vec![7, 8, 9]);

        // A library that keeps asking for more is an error, not an endless loop.
        let e = read_string(1, |_, cap, len, _| {
            unsafe { *len = cap + 1 };
            sys::FRUGAL_ERR_BUFFER_TOO_SMALL
        })
        .unwrap_err();
        assert_eq!(e.status, Status::BufferTooSmall);
    }

    #[test]
    fn version_matches_the_bindings() {
        check_version().unwrap();
        let v = version();
        assert_eq!(v.split('.').count(), 3, "{}", v);
    }
}
