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

// Param is a sampling or run knob of a session, set by key (frugal_param).
type Param int32

// The knobs of frugal.h; defaults in brackets.
const (
	ParamTemperature   Param = C.FRUGAL_PARAM_TEMPERATURE    // float [0.8; 0.6 for R1-family models]; <= 0 = greedy
	ParamTopK          Param = C.FRUGAL_PARAM_TOP_K          // int [40]; 0 = off
	ParamTopP          Param = C.FRUGAL_PARAM_TOP_P          // float [0.95]; in (0, 1]
	ParamSeed          Param = C.FRUGAL_PARAM_SEED           // int [0xF00D]; resets the random stream
	ParamMinP          Param = C.FRUGAL_PARAM_MIN_P          // float [0.05]; in [0, 1]
	ParamRepeatPenalty Param = C.FRUGAL_PARAM_REPEAT_PENALTY // float [1.0 = off]; > 0
	ParamRepeatLastN   Param = C.FRUGAL_PARAM_REPEAT_LAST_N  // int [64]
	ParamThreads       Param = C.FRUGAL_PARAM_N_THREADS      // int [the model's]; in [1, 1024]
)

// PartKind says what a Part of generated text is.
type PartKind int32

const (
	// PartContent is the answer.
	PartContent PartKind = C.FRUGAL_TEXT_CONTENT
	// PartReasoning is text between <think> and </think> (tags removed).
	PartReasoning PartKind = C.FRUGAL_TEXT_REASONING
)

func (k PartKind) String() string {
	switch k {
	case PartContent:
		return "content"
	case PartReasoning:
		return "reasoning"
	}
	return "unknown"
}

// Part is a piece of generated text of one kind (NextPart). Text may be empty when a token's
// text is held back (a partial character or tag).
type Part struct {
	Kind  PartKind
	Text  string
	Token int32
}

// Session is a conversation: a KV cache and a sampler over a Model. Use it from one goroutine at
// a time; only Cancel may be called concurrently, from any goroutine.
type Session struct {
	mu  sync.Mutex // Cancel against Close
	h   *C.frugal_session
	buf []byte // Next/NextPart text, grown on FRUGAL_ERR_BUFFER_TOO_SMALL
}

func newSession(h *C.frugal_session) *Session {
	s := &Session{h: h, buf: make([]byte, 256)}
	atomic.AddInt64(&liveSessions, 1)
	runtime.SetFinalizer(s, (*Session).finalize)
	return s
}

func (s *Session) finalize() {
	if s.h != nil {
		C.frugal_session_free(s.h)
		s.h = nil
		atomic.AddInt64(&liveSessions, -1)
	}
}

// Close frees the session (and its reference to the model). Idempotent; always returns nil. Safe
// against a concurrent Cancel, not against another call on the session.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		runtime.SetFinalizer(s, nil)
		s.finalize()
	}
	return nil
}

// Cancel asks a running Prompt, PromptTokens, Next or NextPart call on this session to stop: it
// returns an error matching ErrCancelled and the session is as before that call. Safe from any
// goroutine; a no-op when nothing runs (or after Close).
func (s *Session) Cancel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		C.frugal_session_cancel(s.h)
	}
}

// NCtx is the context size in positions (0 after Close).
func (s *Session) NCtx() int {
	n := int(C.frugal_session_n_ctx(s.h))
	runtime.KeepAlive(s)
	return n
}

// NPast is the number of positions used.
func (s *Session) NPast() int {
	n := int(C.frugal_session_n_past(s.h))
	runtime.KeepAlive(s)
	return n
}

// KVBytes is the size of the KV cache (NCtx x the per-token bytes of its type).
func (s *Session) KVBytes() uint64 {
	n := uint64(C.frugal_session_kv_bytes(s.h))
	runtime.KeepAlive(s)
	return n
}

// KVType is the element type of the KV cache.
func (s *Session) KVType() KVType {
	t := KVType(C.frugal_session_kv_type(s.h))
	runtime.KeepAlive(s)
	return t
}

// Reset forgets the conversation (the KV cache stays allocated) and reseeds the sampler.
func (s *Session) Reset() error {
	if s.h == nil {
		return ErrClosed
	}
	var cerr *C.frugal_error
	st := C.frugal_session_reset(s.h, &cerr)
	runtime.KeepAlive(s)
	return errorOf(st, cerr)
}

// SetParamFloat sets a float knob (ParamTemperature, ParamTopP, ParamMinP, ParamRepeatPenalty).
// An out-of-range value or an integer key is an error matching ErrInvalidArgument.
func (s *Session) SetParamFloat(key Param, value float32) error {
	if s.h == nil {
		return ErrClosed
	}
	var cerr *C.frugal_error
	st := C.frugal_session_set_param_f32(s.h, C.frugal_param(key), C.float(value), &cerr)
	runtime.KeepAlive(s)
	return errorOf(st, cerr)
}

// SetParamInt sets an integer knob (ParamTopK, ParamSeed, ParamRepeatLastN, ParamThreads).
func (s *Session) SetParamInt(key Param, value int64) error {
	if s.h == nil {
		return ErrClosed
	}
	var cerr *C.frugal_error
	st := C.frugal_session_set_param_i64(s.h, C.frugal_param(key), C.int64_t(value), &cerr)
	runtime.KeepAlive(s)
	return errorOf(st, cerr)
}

// SetTemperature sets the sampling temperature; <= 0 is greedy.
func (s *Session) SetTemperature(t float32) error { return s.SetParamFloat(ParamTemperature, t) }

// SetTopK keeps the k most likely tokens (0 = off).
func (s *Session) SetTopK(k int) error { return s.SetParamInt(ParamTopK, int64(k)) }

// SetTopP sets nucleus sampling's p, in (0, 1].
func (s *Session) SetTopP(p float32) error { return s.SetParamFloat(ParamTopP, p) }

// SetMinP drops tokens less likely than p times the most likely one; in [0, 1].
func (s *Session) SetMinP(p float32) error { return s.SetParamFloat(ParamMinP, p) }

// SetRepeatPenalty sets the repetition penalty (1 = off).
func (s *Session) SetRepeatPenalty(penalty float32) error {
	return s.SetParamFloat(ParamRepeatPenalty, penalty)
}

// SetRepeatLastN sets how many recent tokens the repetition penalty looks at.
func (s *Session) SetRepeatLastN(n int) error { return s.SetParamInt(ParamRepeatLastN, int64(n)) }

// SetSeed reseeds the sampler's random stream.
func (s *Session) SetSeed(seed int64) error { return s.SetParamInt(ParamSeed, seed) }

// SetThreads sets the threads this session's evaluations use, in [1, 1024].
func (s *Session) SetThreads(n int) error { return s.SetParamInt(ParamThreads, int64(n)) }

// Prompt evaluates text: BOS is added at the start of the context when the model asks for it,
// special-token texts are recognised. An error matching ErrContextFull means it does not fit
// (nothing was evaluated); ErrCancelled that Cancel stopped it (the session is as before).
func (s *Session) Prompt(text string) error {
	if s.h == nil {
		return ErrClosed
	}
	ctext := cString(text)
	defer cFree(ctext)
	var cerr *C.frugal_error
	st := C.frugal_session_prompt(s.h, ctext, C.size_t(len(text)), &cerr)
	runtime.KeepAlive(s)
	return errorOf(st, cerr)
}

// PromptTokens evaluates token ids, as Prompt. An id outside the vocabulary is an error matching
// ErrInvalidArgument that names it.
func (s *Session) PromptTokens(tokens []int32) error {
	if s.h == nil {
		return ErrClosed
	}
	var cerr *C.frugal_error
	st := C.frugal_session_prompt_tokens(s.h, tokenPtr(tokens), C.size_t(len(tokens)), &cerr)
	runtime.KeepAlive(s)
	runtime.KeepAlive(tokens)
	return errorOf(st, cerr)
}

// Next samples one token and returns its id and the UTF-8 text it completes (possibly "": a
// character split across tokens is held back until it is whole). done is true when an
// end-of-generation token was sampled: token is that token and text any held-back text. An error
// matching ErrContextFull means the context is full (Reset, or a new Session, to go on).
func (s *Session) Next() (token int32, text string, done bool, err error) {
	if s.h == nil {
		return 0, "", false, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		var tok C.int32_t
		var n C.size_t
		var cerr *C.frugal_error
		st := C.frugal_session_next(s.h, &tok, (*C.char)(unsafe.Pointer(&s.buf[0])), C.size_t(len(s.buf)), &n, &cerr)
		runtime.KeepAlive(s)
		switch {
		case st == C.FRUGAL_OK || st == C.FRUGAL_DONE:
			return int32(tok), string(s.buf[:n]), st == C.FRUGAL_DONE, nil
		case st == C.FRUGAL_ERR_BUFFER_TOO_SMALL && int(n) > len(s.buf) && attempt < 4:
			// The same token comes again with a buffer of the size asked for.
			C.frugal_error_free(cerr)
			s.buf = make([]byte, int(n))
		default:
			return 0, "", false, takeError(st, cerr)
		}
	}
}

// NextPart is Next with the text split into reasoning (between <think> and </think>, tags
// removed, also when the prompt opened the reasoning) and content. A part holds text of one
// kind; when a token completes text of both kinds, the next call returns the rest without
// sampling (same Token). done is true with the last part (possibly empty) when an
// end-of-generation token was sampled. Use either Next or NextPart for one generation.
func (s *Session) NextPart() (part Part, done bool, err error) {
	if s.h == nil {
		return Part{}, false, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		var tok, kind C.int32_t
		var n C.size_t
		var cerr *C.frugal_error
		st := C.frugal_session_next_part(s.h, &tok, &kind, (*C.char)(unsafe.Pointer(&s.buf[0])), C.size_t(len(s.buf)), &n, &cerr)
		runtime.KeepAlive(s)
		switch {
		case st == C.FRUGAL_OK || st == C.FRUGAL_DONE:
			return Part{Kind: PartKind(kind), Text: string(s.buf[:n]), Token: int32(tok)}, st == C.FRUGAL_DONE, nil
		case st == C.FRUGAL_ERR_BUFFER_TOO_SMALL && int(n) > len(s.buf) && attempt < 4:
			C.frugal_error_free(cerr)
			s.buf = make([]byte, int(n))
		default:
			return Part{}, false, takeError(st, cerr)
		}
	}
}

// Logits is a copy of the logits of the most recent evaluation ([NVocab] floats): the
// next-token distribution after a prompt; after Next returned token t, the logits t was drawn
// from. nil before any evaluation (or after Close).
func (s *Session) Logits() []float32 {
	if s.h == nil {
		return nil
	}
	var n C.int32_t
	p := C.frugal_session_logits(s.h, &n)
	var out []float32
	if p != nil && n > 0 && int64(n) <= math.MaxInt32 {
		out = make([]float32, int(n))
		copy(out, unsafe.Slice((*float32)(unsafe.Pointer(p)), int(n)))
	}
	runtime.KeepAlive(s)
	return out
}
