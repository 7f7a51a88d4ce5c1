package frugal

/*
#cgo LDFLAGS: -lfrugal
#include <stdlib.h>
#include "frugal.h"
*/
import "C"

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

type modelOptions struct {
	threads int
	mmap    bool
	repack  bool
}

// ModelOption changes how LoadModel loads a model.
type ModelOption func(*modelOptions)

// WithThreads sets the threads evaluations use (0, the default, = the physical cores this
// process may use; at most 1024). Session.SetThreads overrides it per session.
func WithThreads(n int) ModelOption { return func(o *modelOptions) { o.threads = n } }

// WithMmap maps the file into memory (true, the default) or reads it into memory (false).
func WithMmap(on bool) ModelOption { return func(o *modelOptions) { o.mmap = on } }

// WithRepack rewrites Q4_0 and Q5_0 matrices at load into a faster decode layout where this CPU
// decodes that faster (true, the default: CPUs without AVX-512 VNNI; no extra memory) or uses
// every weight in place (false: processes mapping the same file then
// share its pages).
func WithRepack(on bool) ModelOption { return func(o *modelOptions) { o.repack = on } }

// Model is a loaded GGUF model: immutable, safe to share among goroutines and sessions.
// Close frees it (or the garbage collector does); sessions and tokenizers made from it keep
// the weights alive by themselves.
type Model struct {
	mu sync.RWMutex // Close against the other methods
	h  *C.frugal_model
}

// LoadModel loads a GGUF model. A missing or unreadable file is an error matching ErrIO, a
// malformed one ErrInvalidModel, one frugal cannot run ErrUnsupportedModel; the message names
// the file and what is wrong.
func LoadModel(path string, opts ...ModelOption) (*Model, error) {
	o := modelOptions{threads: 0, mmap: true, repack: true}
	for _, f := range opts {
		f(&o)
	}
	if o.threads < 0 || o.threads > math.MaxInt32 {
		return nil, invalid("LoadModel: threads %d is out of range", o.threads)
	}
	var copts C.frugal_model_options
	if st := C.frugal_model_options_init(&copts, C.uint32_t(unsafe.Sizeof(copts))); st != C.FRUGAL_OK {
		return nil, &Error{Status: Status(st), Message: "frugal_model_options_init failed"}
	}
	copts.n_threads = C.int32_t(o.threads)
	copts.use_mmap = cBool(o.mmap)
	copts.repack_weights = cBool(o.repack)
	cpath, err := cPath("LoadModel: path", path)
	if err != nil {
		return nil, err
	}
	defer cFree(cpath)
	var h *C.frugal_model
	var cerr *C.frugal_error
	if st := C.frugal_model_load(cpath, &copts, &h, &cerr); st != C.FRUGAL_OK {
		return nil, takeError(st, cerr)
	}
	return newModel(h), nil
}

func newModel(h *C.frugal_model) *Model {
	m := &Model{h: h}
	atomic.AddInt64(&liveModels, 1)
	runtime.SetFinalizer(m, (*Model).finalize)
	return m
}

func (m *Model) finalize() {
	if m.h != nil {
		C.frugal_model_free(m.h)
		m.h = nil
		atomic.AddInt64(&liveModels, -1)
	}
}

// Close drops this reference to the model; live sessions and tokenizers keep the weights. It is
// idempotent and always returns nil. Afterwards getters return zero values and the other
// methods ErrClosed.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h != nil {
		runtime.SetFinalizer(m, nil)
		m.finalize()
	}
	return nil
}

// NVocab is the vocabulary size.
func (m *Model) NVocab() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_vocab(m.h))
}

// NCtxTrain is the context length the model was trained with.
func (m *Model) NCtxTrain() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_ctx_train(m.h))
}

// NEmbd is the embedding width.
func (m *Model) NEmbd() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_embd(m.h))
}

// NLayers is the number of transformer blocks.
func (m *Model) NLayers() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_layers(m.h))
}

// NHeads is the number of attention heads.
func (m *Model) NHeads() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_heads(m.h))
}

// NHeadsKV is the number of key/value heads.
func (m *Model) NHeadsKV() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_heads_kv(m.h))
}

// NParams is the number of parameters.
func (m *Model) NParams() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return uint64(C.frugal_model_n_params(m.h))
}

// SizeBytes is the size of the weights as stored.
func (m *Model) SizeBytes() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return uint64(C.frugal_model_size_bytes(m.h))
}

// NExperts is the number of routed experts (0 for a dense model).
func (m *Model) NExperts() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_experts(m.h))
}

// NExpertsUsed is the number of experts used per token (0 for a dense model).
func (m *Model) NExpertsUsed() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_n_experts_used(m.h))
}

// KVBytesPerToken is what one context position costs in the KV cache, all layers.
func (m *Model) KVBytesPerToken() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return uint64(C.frugal_model_kv_bytes_per_token(m.h))
}

// Architecture is "llama", "qwen2" or "deepseek2".
func (m *Model) Architecture() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return C.GoString(C.frugal_model_architecture(m.h))
}

// Name is general.name of the file, or "".
func (m *Model) Name() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return C.GoString(C.frugal_model_name(m.h))
}

// TokenBOS is the beginning-of-sequence token, -1 if none.
func (m *Model) TokenBOS() int32 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int32(C.frugal_model_token_bos(m.h))
}

// TokenEOS is the end-of-sequence token, -1 if none.
func (m *Model) TokenEOS() int32 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int32(C.frugal_model_token_eos(m.h))
}

// TokenIsEOG reports whether token ends generation (EOS, EOT and similar).
func (m *Model) TokenIsEOG(token int32) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return C.frugal_model_token_is_eog(m.h, C.int32_t(token)) != 0
}

// MetaCount is the number of GGUF metadata entries.
func (m *Model) MetaCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.frugal_model_meta_count(m.h))
}

// MetaKey is the key of metadata entry i, in [0, MetaCount()).
func (m *Model) MetaKey(i int) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return "", ErrClosed
	}
	if i < 0 || i > math.MaxInt32 {
		return "", invalid("MetaKey: index %d is out of range", i)
	}
	b, err := fillBuffer(128, func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.frugal_error) C.frugal_status {
		return C.frugal_model_meta_key(m.h, C.int32_t(i), buf, cap, n, cerr)
	})
	return cStringOf(b), err
}

// MetaValue is the value of a metadata key rendered as text (arrays summarised). A missing key
// is an error matching ErrInvalidArgument.
func (m *Model) MetaValue(key string) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return "", ErrClosed
	}
	ckey, err := cPath("MetaValue: key", key)
	if err != nil {
		return "", err
	}
	defer cFree(ckey)
	b, err := fillBuffer(256, func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.frugal_error) C.frugal_status {
		return C.frugal_model_meta_value(m.h, ckey, buf, cap, n, cerr)
	})
	return cStringOf(b), err
}

// Meta is every metadata entry, key to value as MetaValue renders it.
func (m *Model) Meta() (map[string]string, error) {
	n := m.MetaCount()
	meta := make(map[string]string, n)
	for i := 0; i < n; i++ {
		k, err := m.MetaKey(i)
		if err != nil {
			return nil, err
		}
		v, err := m.MetaValue(k)
		if err != nil {
			return nil, err
		}
		meta[k] = v
	}
	return meta, nil
}

// cStringOf is the text of a NUL-terminated string written into b.
func cStringOf(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// Tokenize encodes text with the model's tokenizer (see Tokenizer.Encode).
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return nil, ErrClosed
	}
	ctext := cString(text)
	defer cFree(ctext)
	return fillTokens(len(text)+4, func(out *C.int32_t, cap C.size_t, n *C.size_t, cerr **C.frugal_error) C.frugal_status {
		return C.frugal_tokenize(m.h, ctext, C.size_t(len(text)), cBool(addSpecial), cBool(parseSpecial), out, cap, n, cerr)
	})
}

// Detokenize decodes token ids with the model's tokenizer (see Tokenizer.Decode).
func (m *Model) Detokenize(tokens []int32, special bool) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return "", ErrClosed
	}
	b, err := fillBuffer(8*len(tokens)+16, func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.frugal_error) C.frugal_status {
		return C.frugal_detokenize(m.h, tokenPtr(tokens), C.size_t(len(tokens)), cBool(special), buf, cap, n, cerr)
	})
	return string(b), err
}

// Tokenizer is a new reference to the model's tokenizer; it keeps the model's weights alive
// until it is closed or collected.
func (m *Model) Tokenizer() (*Tokenizer, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return nil, ErrClosed
	}
	var h *C.frugal_tokenizer
	var cerr *C.frugal_error
	if st := C.frugal_model_get_tokenizer(m.h, &h, &cerr); st != C.FRUGAL_OK {
		return nil, takeError(st, cerr)
	}
	return newTokenizer(h), nil
}

// KVType is the element type of a session's KV cache.
type KVType int32

const (
	// KVF32 keeps keys and values exactly as computed.
	KVF32 KVType = C.FRUGAL_KV_F32
	// KVF16 halves the cache's memory and the bytes a decode step reads from it (the default,
	// as llama.cpp's default cache).
	KVF16 KVType = C.FRUGAL_KV_F16
	// KVQ8_0 takes about a quarter of F32's memory (blocks of 32 values with one F16 scale, as
	// llama.cpp's -ctk/-ctv q8_0), for models whose attention heads are a multiple of 32 values
	// wide (ErrInvalidArgument otherwise).
	KVQ8_0 KVType = C.FRUGAL_KV_Q8_0
)

// SessionOptions are the options of NewSessionWithOptions.
type SessionOptions struct {
	NCtx   int    // context positions (0 = min(training context, 4096))
	KVType KVType // KVF16 (the zero value is KVF32: start from DefaultSessionOptions)
}

// DefaultSessionOptions returns the library's defaults: NCtx 0 and an F16 KV cache.
func DefaultSessionOptions() SessionOptions { return SessionOptions{NCtx: 0, KVType: KVF16} }

// NewSession creates a session with a KV cache for nCtx positions (0 = min(training context,
// 4096)) and the default options otherwise. The session keeps the model's weights alive: the
// Model may be closed or dropped first.
func (m *Model) NewSession(nCtx int) (*Session, error) {
	o := DefaultSessionOptions()
	o.NCtx = nCtx
	return m.NewSessionWithOptions(o)
}

// NewSessionWithOptions creates a session with the given options.
func (m *Model) NewSessionWithOptions(o SessionOptions) (*Session, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return nil, ErrClosed
	}
	if o.NCtx < 0 || o.NCtx > math.MaxInt32 {
		return nil, invalid("NewSession: n_ctx %d is out of range [0, %d]", o.NCtx, math.MaxInt32)
	}
	var co C.frugal_session_options
	C.frugal_session_options_init(&co, C.uint32_t(C.sizeof_frugal_session_options))
	co.n_ctx = C.int32_t(o.NCtx)
	co.kv_type = C.int32_t(o.KVType)
	var h *C.frugal_session
	var cerr *C.frugal_error
	if st := C.frugal_session_create_v2(m.h, &co, &h, &cerr); st != C.FRUGAL_OK {
		return nil, takeError(st, cerr)
	}
	return newSession(h), nil
}
