package frugal

/*
#cgo LDFLAGS: -lfrugal
#include <stdlib.h>
#include "frugal.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Tokenizer turns text into token ids and back, and renders chat templates. It is immutable and
// safe to share among goroutines.
type Tokenizer struct {
	mu sync.RWMutex // Close against the other methods
	h  *C.frugal_tokenizer
}

// LoadTokenizer loads a tokenizer without weights: from a GGUF file (its tokenizer.* keys), or
// from a Hugging Face byte-level BPE tokenizer (a folder with tokenizer.json and
// tokenizer_config.json, or a tokenizer.json file). An unsupported tokenizer is an error
// matching ErrUnsupportedModel.
func LoadTokenizer(path string) (*Tokenizer, error) {
	cpath, err := cPath("LoadTokenizer: path", path)
	if err != nil {
		return nil, err
	}
	defer cFree(cpath)
	var h *C.frugal_tokenizer
	var cerr *C.frugal_error
	if st := C.frugal_tokenizer_load(cpath, &h, &cerr); st != C.FRUGAL_OK {
		return nil, takeError(st, cerr)
	}
	return newTokenizer(h), nil
}

func newTokenizer(h *C.frugal_tokenizer) *Tokenizer {
	t := &Tokenizer{h: h}
	atomic.AddInt64(&liveTokenizers, 1)
	runtime.SetFinalizer(t, (*Tokenizer).finalize)
	return t
}

func (t *Tokenizer) finalize() {
	if t.h != nil {
		C.frugal_tokenizer_free(t.h)
		t.h = nil
		atomic.AddInt64(&liveTokenizers, -1)
	}
}

// Close frees the tokenizer (a model's tokenizer: drops its reference to the model). Idempotent;
// always returns nil.
func (t *Tokenizer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		runtime.SetFinalizer(t, nil)
		t.finalize()
	}
	return nil
}

// NVocab is the vocabulary size (0 after Close).
func (t *Tokenizer) NVocab() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int(C.frugal_tokenizer_n_vocab(t.h))
}

// TokenBOS is the beginning-of-sequence token, -1 if none.
func (t *Tokenizer) TokenBOS() int32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int32(C.frugal_tokenizer_token_bos(t.h))
}

// TokenEOS is the end-of-sequence token, -1 if none.
func (t *Tokenizer) TokenEOS() int32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int32(C.frugal_tokenizer_token_eos(t.h))
}

// TokenIsEOG reports whether token ends generation (EOS, EOT and similar).
func (t *Tokenizer) TokenIsEOG(token int32) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return C.frugal_tokenizer_token_is_eog(t.h, C.int32_t(token)) != 0
}

// Encode turns text into token ids. addSpecial adds BOS/EOS as the vocabulary asks;
// parseSpecial turns control-token texts in text into those tokens. Invalid UTF-8 is an error
// matching ErrInvalidArgument whose message gives the byte offset.
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.h == nil {
		return nil, ErrClosed
	}
	ctext := cString(text)
	defer cFree(ctext)
	return fillTokens(len(text)+4, func(out *C.int32_t, cap C.size_t, n *C.size_t, cerr **C.frugal_error) C.frugal_status {
		return C.frugal_tokenizer_encode(t.h, ctext, C.size_t(len(text)), cBool(addSpecial), cBool(parseSpecial), out, cap, n, cerr)
	})
}

// Decode turns token ids into UTF-8 text; special renders control tokens. An id outside the
// vocabulary is an error matching ErrInvalidArgument that names it.
func (t *Tokenizer) Decode(tokens []int32, special bool) (string, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.h == nil {
		return "", ErrClosed
	}
	b, err := fillBuffer(8*len(tokens)+16, func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.frugal_error) C.frugal_status {
		return C.frugal_tokenizer_decode(t.h, tokenPtr(tokens), C.size_t(len(tokens)), cBool(special), buf, cap, n, cerr)
	})
	return string(b), err
}

// ChatFormat is the built-in chat format the tokenizer's template calls for: "deepseek-r1",
// "deepseek-v3", "deepseek-v2", "chatml", "llama3", "llama3.1" or "none".
func (t *Tokenizer) ChatFormat() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return C.GoString(C.frugal_tokenizer_chat_format(t.h))
}

// Message is one conversation turn. Role is "system", "user" or "assistant".
type Message struct {
	Role    string
	Content string
}

// ApplyChatTemplate renders messages into prompt text, byte for byte what the publisher's
// template gives (without tools). addGenerationPrompt ends it with the assistant's opening (R1:
// the Assistant token, then "<think>\n"). format "" uses the tokenizer's own format (ChatFormat),
// a name forces one. The text starts with the BOS text where the template writes it, and
// Session.Prompt adds no second BOS. An unknown role or format, invalid UTF-8, or format "none"
// is an error matching ErrInvalidArgument.
func (t *Tokenizer) ApplyChatTemplate(messages []Message, addGenerationPrompt bool, format string) (string, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.h == nil {
		return "", ErrClosed
	}
	var cformat *C.char
	if format != "" {
		var err error
		if cformat, err = cPath("ApplyChatTemplate: format", format); err != nil {
			return "", err
		}
		defer cFree(cformat)
	}
	// The array holds pointers, so it lives in C memory (cgo forbids Go pointers in Go memory
	// passed to C), and so do the strings it points to.
	var cmsgs *C.frugal_chat_message
	if len(messages) > 0 {
		size := C.size_t(len(messages)) * C.size_t(unsafe.Sizeof(C.frugal_chat_message{}))
		cmsgs = (*C.frugal_chat_message)(C.calloc(1, size))
		if cmsgs == nil {
			return "", &Error{Status: StatusOutOfMemory, Message: "ApplyChatTemplate: out of memory"}
		}
		defer C.free(unsafe.Pointer(cmsgs))
		arr := unsafe.Slice(cmsgs, len(messages))
		for i, msg := range messages {
			role, err := cPath("ApplyChatTemplate: role", msg.Role)
			if err != nil {
				return "", err
			}
			defer cFree(role)
			content := cString(msg.Content) // copies every byte, NULs included
			defer cFree(content)
			arr[i].role = role
			arr[i].content = content
			arr[i].content_len = C.size_t(len(msg.Content))
		}
	}
	size := 256
	for _, msg := range messages {
		size += len(msg.Content) + 64
	}
	b, err := fillBuffer(size, func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.frugal_error) C.frugal_status {
		return C.frugal_chat_apply_template(t.h, cformat, cmsgs, C.size_t(len(messages)), cBool(addGenerationPrompt), buf, cap, n, cerr)
	})
	return string(b), err
}
