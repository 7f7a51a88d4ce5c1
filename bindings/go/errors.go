package frugal

/*
#cgo LDFLAGS: -lfrugal
#include "frugal.h"
*/
import "C"

import (
	"fmt"
	"strings"
)

// Status is a frugal_status code of the C ABI: 0 ok, 1 end of generation, negative an error.
type Status int32

// The status codes of frugal.h.
const (
	StatusOK               Status = C.FRUGAL_OK
	StatusDone             Status = C.FRUGAL_DONE
	StatusInvalidArgument  Status = C.FRUGAL_ERR_INVALID_ARGUMENT
	StatusOutOfMemory      Status = C.FRUGAL_ERR_OUT_OF_MEMORY
	StatusIO               Status = C.FRUGAL_ERR_IO
	StatusUnsupportedModel Status = C.FRUGAL_ERR_UNSUPPORTED_MODEL
	StatusContextFull      Status = C.FRUGAL_ERR_CONTEXT_FULL
	StatusCancelled        Status = C.FRUGAL_ERR_CANCELLED
	StatusBufferTooSmall   Status = C.FRUGAL_ERR_BUFFER_TOO_SMALL
	StatusStructSize       Status = C.FRUGAL_ERR_STRUCT_SIZE
	StatusInvalidModel     Status = C.FRUGAL_ERR_INVALID_MODEL
	StatusInternal         Status = C.FRUGAL_ERR_INTERNAL
)

// String is the library's static text for the code ("invalid argument", ...).
func (s Status) String() string {
	return C.GoString(C.frugal_status_string(C.frugal_status(s)))
}

// Error is a failure reported by the library: its status code and its message (UTF-8, with the
// offending values, e.g. the path of a file that could not be opened).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	status := e.Status.String()
	switch {
	case e.Message == "":
		return "frugal: " + status
	case strings.HasPrefix(e.Message, status):
		return "frugal: " + e.Message
	}
	return "frugal: " + status + ": " + e.Message
}

// Is reports whether target is an *Error with the same Status and either no message (the
// sentinels ErrCancelled, ErrContextFull, ...) or the same one.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil {
		return false
	}
	return t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

// Sentinels for errors.Is: errors.Is(err, frugal.ErrCancelled) holds for every *Error whose
// Status is StatusCancelled, whatever its message.
var (
	ErrInvalidArgument  = &Error{Status: StatusInvalidArgument}
	ErrOutOfMemory      = &Error{Status: StatusOutOfMemory}
	ErrIO               = &Error{Status: StatusIO}
	ErrUnsupportedModel = &Error{Status: StatusUnsupportedModel}
	ErrContextFull      = &Error{Status: StatusContextFull}
	ErrCancelled        = &Error{Status: StatusCancelled}
	ErrBufferTooSmall   = &Error{Status: StatusBufferTooSmall}
	ErrStructSize       = &Error{Status: StatusStructSize}
	ErrInvalidModel     = &Error{Status: StatusInvalidModel}
	ErrInternal         = &Error{Status: StatusInternal}
)

// ErrClosed is returned by methods called after Close. It also matches ErrInvalidArgument (the
// C ABI's answer to a NULL handle).
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string        { return "frugal: use of a closed object" }
func (closedError) Is(target error) bool { return target == ErrInvalidArgument }

// takeError converts a failed status and its frugal_error into an *Error and frees the C object.
func takeError(st C.frugal_status, cerr *C.frugal_error) error {
	msg := C.GoString(C.frugal_error_message(cerr))
	C.frugal_error_free(cerr)
	return &Error{Status: Status(st), Message: msg}
}

// errorOf is nil for FRUGAL_OK, else takeError's error.
func errorOf(st C.frugal_status, cerr *C.frugal_error) error {
	if st == C.FRUGAL_OK {
		return nil
	}
	return takeError(st, cerr)
}

// invalid builds an ErrInvalidArgument raised on the Go side (before any C call).
func invalid(format string, args ...interface{}) error {
	return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.frugal_version_string()) }

// VersionNumber is the library's MAJOR*10000 + MINOR*100 + PATCH.
func VersionNumber() uint32 { return uint32(C.frugal_version_number()) }

// HeaderVersionNumber is FRUGAL_VERSION_NUMBER of the frugal.h this package was compiled
// against; VersionNumber() differs when a different libfrugal is loaded at run time.
const HeaderVersionNumber uint32 = C.FRUGAL_VERSION_NUMBER
