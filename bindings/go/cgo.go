package frugal

/*
#cgo LDFLAGS: -lfrugal
#include <stdlib.h>
#include "frugal.h"
*/
import "C"

import (
	"strings"
	"sync/atomic"
	"unsafe"
)

// Live C handles owned by this package (tests check that finalizers and Close free them all).
var liveModels, liveTokenizers, liveSessions int64

func liveCount(p *int64) int64 { return atomic.LoadInt64(p) }

// cString copies s into C memory (NUL-terminated) for a call; free it with C.free.
func cString(s string) *C.char { return C.CString(s) }

func cFree(p *C.char) { C.free(unsafe.Pointer(p)) }

// cPath is cString for a NUL-terminated argument: a NUL byte inside would cut it short.
func cPath(what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, invalid("%s %q contains a NUL byte", what, s)
	}
	return C.CString(s), nil
}

func cBool(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

// bufferCall is one call of a C function that writes into a caller's buffer of cap bytes and
// sets *outLen; FRUGAL_ERR_BUFFER_TOO_SMALL means *outLen holds the size needed.
type bufferCall func(buf *C.char, cap C.size_t, outLen *C.size_t, cerr **C.frugal_error) C.frugal_status

// fillBuffer runs call with a buffer of initial bytes and again with a buffer of the size the
// library asks for, and returns the bytes written.
func fillBuffer(initial int, call bufferCall) ([]byte, error) {
	if initial < 16 {
		initial = 16
	}
	buf := make([]byte, initial)
	for attempt := 0; ; attempt++ {
		var n C.size_t
		var cerr *C.frugal_error
		st := call((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n, &cerr)
		if st == C.FRUGAL_OK {
			if int(n) > len(buf) {
				n = C.size_t(len(buf))
			}
			return buf[:n], nil
		}
		if st == C.FRUGAL_ERR_BUFFER_TOO_SMALL && int(n) > len(buf) && attempt < 4 {
			C.frugal_error_free(cerr)
			buf = make([]byte, int(n))
			continue
		}
		return nil, takeError(st, cerr)
	}
}

// tokenCall is fillBuffer for token ids: cap ids, *outN the count written or needed.
type tokenCall func(out *C.int32_t, cap C.size_t, outN *C.size_t, cerr **C.frugal_error) C.frugal_status

func fillTokens(initial int, call tokenCall) ([]int32, error) {
	if initial < 8 {
		initial = 8
	}
	ids := make([]int32, initial)
	for attempt := 0; ; attempt++ {
		var n C.size_t
		var cerr *C.frugal_error
		st := call((*C.int32_t)(unsafe.Pointer(&ids[0])), C.size_t(len(ids)), &n, &cerr)
		if st == C.FRUGAL_OK {
			if int(n) > len(ids) {
				n = C.size_t(len(ids))
			}
			return ids[:n:n], nil
		}
		if st == C.FRUGAL_ERR_BUFFER_TOO_SMALL && int(n) > len(ids) && attempt < 4 {
			C.frugal_error_free(cerr)
			ids = make([]int32, int(n))
			continue
		}
		return nil, takeError(st, cerr)
	}
}

// tokenPtr is the C view of a token slice (NULL when empty). The slice holds no Go pointers,
// so cgo lets C read it for the duration of the call.
func tokenPtr(tokens []int32) *C.int32_t {
	if len(tokens) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&tokens[0]))
}
