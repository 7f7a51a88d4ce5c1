// Package frugal is the official Go binding of frugal, CPU inference of DeepSeek-family models
// (DeepSeek-R1/V3, V2/V2-Lite and the R1-Distill models built on Qwen2 and Llama) from GGUF
// files. It is a thin cgo layer over the stable C ABI in capi/frugal.h.
//
// # Building
//
// The package links libfrugal with `#cgo LDFLAGS: -lfrugal` and includes "frugal.h", which
// includes the generated "frugal_version.h". Tell cgo where they are:
//
//	export CGO_CFLAGS="-I$FRUGAL/capi -I$FRUGAL/build/release/capi/include"
//	export CGO_LDFLAGS="-L$FRUGAL/build/release/capi -Wl,-rpath,$FRUGAL/build/release/capi"
//
// (an installed frugal needs only -I$PREFIX/include and -L$PREFIX/lib, or
// `pkg-config --cflags --libs frugal`). Without the rpath set LD_LIBRARY_PATH at run time.
//
// # Streaming
//
// Generation is pulled, never pushed: Session.Next and Session.NextPart return one token (or
// one part of text) per call. No Go function is ever called from C, so there is no callback
// registry, no per-token cgo callback and nothing to unregister.
//
// # Lifetimes
//
// Model, Tokenizer and Session wrap reference-counted C handles. Close frees one explicitly
// (idempotent); otherwise a finalizer frees it when it is garbage collected. They may be closed
// or collected in any order: a Session or a Tokenizer obtained from a Model keeps the weights
// alive by itself, so dropping the Model while its sessions run is fine.
//
// # Concurrency
//
// A Model and a Tokenizer are immutable and may be shared by any number of goroutines (and
// sessions). A Session must be used by one goroutine at a time; the exception is Session.Cancel,
// which is safe from any goroutine: the running Prompt/PromptTokens/Next/NextPart call returns an
// error matching ErrCancelled and the session stays usable (a cancelled call changes nothing).
// Close must not race other calls on the same object.
//
// # Errors
//
// Failures are *Error values carrying the C status and the library's message (which names the
// offending values). Compare the kind with errors.Is against the sentinels:
//
//	if errors.Is(err, frugal.ErrContextFull) { ... }
//
// and get the detail with errors.As(err, &fe) for a *frugal.Error.
//
// Logging goes to stderr at WARN and above; FRUGAL_LOG=debug|info|warn|error changes the level.
// The progress and log callbacks of the C ABI are not exposed (they would need Go callbacks).
package frugal
