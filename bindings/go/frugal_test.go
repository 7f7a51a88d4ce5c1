package frugal

import (
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if VersionNumber() != HeaderVersionNumber {
		t.Errorf("library version %d (%s), header %d", VersionNumber(), Version(), HeaderVersionNumber)
	}
	if want := fmt.Sprintf("%d.%d.%d", HeaderVersionNumber/10000, HeaderVersionNumber/100%100, HeaderVersionNumber%100); Version() != want {
		t.Errorf("Version() = %q, want %q", Version(), want)
	}
	if StatusCancelled.String() == "" || StatusOK.String() == "" {
		t.Errorf("empty status strings")
	}
}

// (1) The greedy reference: prompts[0] of reference.json, ids and text exact.
func TestGreedyReference(t *testing.T) {
	st := needStories(t)
	p := st.ref.Prompts[0]
	m := mustLoad(t, st.path)
	defer m.Close()
	if m.NVocab() != 512 || m.NLayers() != 5 || m.NEmbd() != 64 || m.NHeads() != 8 || m.NHeadsKV() != 4 {
		t.Errorf("getters: n_vocab %d n_layers %d n_embd %d n_heads %d n_heads_kv %d", m.NVocab(), m.NLayers(), m.NEmbd(), m.NHeads(), m.NHeadsKV())
	}
	if m.Architecture() != "llama" || m.TokenBOS() != 1 || m.NExperts() != 0 || m.NParams() == 0 || m.SizeBytes() == 0 {
		t.Errorf("getters: architecture %q bos %d experts %d params %d bytes %d", m.Architecture(), m.TokenBOS(), m.NExperts(), m.NParams(), m.SizeBytes())
	}
	if !m.TokenIsEOG(m.TokenEOS()) {
		t.Errorf("EOS %d is not end-of-generation", m.TokenEOS())
	}
	meta, err := m.Meta()
	if err != nil || meta["general.architecture"] != "llama" || len(meta) != m.MetaCount() {
		t.Errorf("Meta: %v, general.architecture %q, %d entries of %d", err, meta["general.architecture"], len(meta), m.MetaCount())
	}
	if ids, err := m.Tokenize(p.Prompt, true, true); err != nil || !equalIDs(ids, p.PromptIDs) {
		t.Errorf("Tokenize(%q) = %v, %v; want %v", p.Prompt, ids, err, p.PromptIDs)
	}

	s := mustSession(t, m, 0)
	defer s.Close()
	if s.Logits() != nil {
		t.Errorf("logits before any evaluation")
	}
	if err := s.Prompt(p.Prompt); err != nil {
		t.Fatalf("Prompt: %v", err)
	}
	if s.NPast() != len(p.PromptIDs) {
		t.Errorf("NPast() = %d after the prompt, want %d", s.NPast(), len(p.PromptIDs))
	}
	logits := s.Logits()
	if len(logits) != m.NVocab() || argmax(logits) != p.GeneratedIDs[0] {
		t.Errorf("logits: %d values, argmax %d, want %d values, argmax %d", len(logits), argmax(logits), m.NVocab(), p.GeneratedIDs[0])
	}
	g := generate(s, len(p.GeneratedIDs))
	if g.err != nil {
		t.Fatalf("Next: %v", g.err)
	}
	if !equalIDs(g.ids, p.GeneratedIDs) {
		t.Errorf("ids\n got %v\nwant %v", g.ids, p.GeneratedIDs)
	}
	if g.text != p.GeneratedText {
		t.Errorf("text\n got %q\nwant %q", g.text, p.GeneratedText)
	}
	if text, err := m.Detokenize(p.GeneratedIDs, false); err != nil || text != p.GeneratedText {
		t.Errorf("Detokenize = %q, %v; want %q", text, err, p.GeneratedText)
	}

	// The same through NextPart (no <think> here: all content), with a 1-byte buffer so that
	// every piece goes through FRUGAL_ERR_BUFFER_TOO_SMALL and a retry.
	if err := s.Reset(); err != nil || s.NPast() != 0 {
		t.Fatalf("Reset: %v, n_past %d", err, s.NPast())
	}
	if err := s.PromptTokens(p.PromptIDs); err != nil {
		t.Fatalf("PromptTokens: %v", err)
	}
	var ids []int32
	var text strings.Builder
	for len(ids) < len(p.GeneratedIDs) {
		s.buf = make([]byte, 1)
		part, done, err := s.NextPart()
		if err != nil || done {
			t.Fatalf("NextPart: %v (done %v) after %d tokens", err, done, len(ids))
		}
		if part.Kind != PartContent {
			t.Fatalf("part %d is %v", len(ids), part.Kind)
		}
		ids = append(ids, part.Token)
		text.WriteString(part.Text)
	}
	if !equalIDs(ids, p.GeneratedIDs) || text.String() != p.GeneratedText {
		t.Errorf("NextPart: ids %v text %q", ids, text.String())
	}
}

func argmax(v []float32) int32 {
	best := -1
	for i := range v {
		if best < 0 || v[i] > v[best] {
			best = i
		}
	}
	return int32(best)
}

func expectError(t *testing.T, what string, err error, sentinel *Error, needles ...string) {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) {
		t.Errorf("%s: got %v (%T), want an *Error", what, err, err)
		return
	}
	if !errors.Is(err, sentinel) || fe.Status != sentinel.Status {
		t.Errorf("%s: status %v, want %v (%v)", what, fe.Status, sentinel.Status, err)
	}
	for _, n := range needles {
		if !strings.Contains(fe.Message, n) {
			t.Errorf("%s: message %q does not contain %q", what, fe.Message, n)
		}
	}
}

// (2) Errors: a missing file, an out-of-range token id, a full context, misuse.
func TestErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-model.gguf")
	m, err := LoadModel(missing)
	if m != nil {
		t.Errorf("LoadModel(missing) returned a model")
	}
	expectError(t, "LoadModel(missing)", err, ErrIO, missing)
	if errors.Is(err, ErrCancelled) || errors.Is(err, ErrInvalidModel) {
		t.Errorf("an IO error matches other sentinels: %v", err)
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("Error() = %q does not name the file", err.Error())
	}
	_, err = LoadTokenizer(filepath.Join(t.TempDir(), "no-such-tokenizer"))
	expectError(t, "LoadTokenizer(missing)", err, ErrIO, "no-such-tokenizer")
	_, err = LoadModel("a\x00b.gguf")
	expectError(t, "LoadModel(NUL in path)", err, ErrInvalidArgument, "NUL")
	_, err = LoadModel(missing, WithThreads(-1))
	expectError(t, "LoadModel(threads -1)", err, ErrInvalidArgument, "-1")

	st := needStories(t)
	g := st.ref.GreedyFromBOS
	m = mustLoad(t, st.path, WithMmap(false), WithThreads(1), WithRepack(false))
	defer m.Close()
	s := mustSession(t, m, 0)
	defer s.Close()

	// out-of-range token ids name the id; nothing is evaluated
	for _, bad := range []int32{100000, -1, int32(m.NVocab())} {
		err := s.PromptTokens([]int32{1, bad})
		expectError(t, fmt.Sprintf("PromptTokens(%d)", bad), err, ErrInvalidArgument, fmt.Sprint(bad))
		if s.NPast() != 0 {
			t.Errorf("PromptTokens(%d) failed but n_past is %d", bad, s.NPast())
		}
		_, err = m.Detokenize([]int32{bad}, false)
		expectError(t, fmt.Sprintf("Detokenize(%d)", bad), err, ErrInvalidArgument, fmt.Sprint(bad))
	}
	expectError(t, "SetTopP(2)", s.SetTopP(2), ErrInvalidArgument)
	expectError(t, "SetThreads(0)", s.SetThreads(0), ErrInvalidArgument, "0")
	expectError(t, "SetParamFloat(ParamTopK)", s.SetParamFloat(ParamTopK, 1), ErrInvalidArgument)
	_, err = m.MetaValue("no.such.key")
	expectError(t, "MetaValue(missing)", err, ErrInvalidArgument, "no.such.key")
	_, err = m.NewSession(-1)
	expectError(t, "NewSession(-1)", err, ErrInvalidArgument, "-1")

	// context full: 10 of 16 positions taken, 6 more tokens fit
	const nCtx = 16
	small := mustSession(t, m, nCtx)
	defer small.Close()
	// KVBytesPerToken is the default (F16) cache's cost; this session's cache is F32.
	if small.NCtx() != nCtx || small.KVType() != KVF32 || small.KVBytes() != 2*nCtx*m.KVBytesPerToken() {
		t.Errorf("NCtx %d KVType %d KVBytes %d", small.NCtx(), small.KVType(), small.KVBytes())
	}
	if d, err := m.NewSession(nCtx); err != nil {
		t.Errorf("NewSession(%d): %v", nCtx, err)
	} else {
		if d.KVType() != KVF16 || d.KVBytes() != nCtx*m.KVBytesPerToken() {
			t.Errorf("default session: KVType %d KVBytes %d", d.KVType(), d.KVBytes())
		}
		d.Close()
	}
	_, err = m.NewSessionWithOptions(SessionOptions{NCtx: nCtx, KVType: 9})
	expectError(t, "NewSessionWithOptions(kv_type 9)", err, ErrInvalidArgument, "9")
	// A Q8_0 cache needs heads in whole blocks of 32: this model's are 8 wide.
	_, err = m.NewSessionWithOptions(SessionOptions{NCtx: nCtx, KVType: KVQ8_0})
	expectError(t, "NewSessionWithOptions(KVQ8_0)", err, ErrInvalidArgument, "q8_0", "are 8")
	prompt := append(append([]int32{}, g.PromptIDs...), g.GeneratedIDs[:9]...)
	tooLong := append(append([]int32{}, prompt...), g.GeneratedIDs[9:16]...)
	expectError(t, "PromptTokens(17 tokens)", small.PromptTokens(tooLong), ErrContextFull, "17", "16")
	if small.NPast() != 0 {
		t.Errorf("a prompt too long was partly evaluated: n_past %d", small.NPast())
	}
	if err := small.PromptTokens(prompt); err != nil {
		t.Fatalf("PromptTokens(10 tokens): %v", err)
	}
	got := generate(small, 100)
	expectError(t, "Next past the context", got.err, ErrContextFull, "16")
	if !equalIDs(got.ids, g.GeneratedIDs[9:9+nCtx-len(prompt)]) {
		t.Errorf("tokens before the context filled: %v", got.ids)
	}
	expectError(t, "Prompt in a full context", small.Prompt(" more"), ErrContextFull)
	if err := small.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := small.PromptTokens(prompt); err != nil {
		t.Errorf("after Reset: %v", err)
	}

	// closed objects
	small.Close()
	small.Close()
	small.Cancel()
	if _, _, _, err := small.Next(); err != ErrClosed || !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Next after Close: %v", err)
	}
	if err := small.Prompt("x"); err != ErrClosed {
		t.Errorf("Prompt after Close: %v", err)
	}
	if small.NCtx() != 0 || small.Logits() != nil {
		t.Errorf("getters after Close")
	}
}

// (3) A Hugging Face tokenizer folder; chat templates.
func TestTokenizer(t *testing.T) {
	dir := filepath.Join(sharedDir(), "data", "tokenizers", "deepseek-v3")
	tok, err := LoadTokenizer(dir)
	if err != nil {
		if errors.Is(err, ErrIO) {
			t.Skipf("the shared tokenizers are absent: %v", err)
		}
		t.Fatal(err)
	}
	defer tok.Close()
	ids, err := tok.Encode("Hello world", true, true)
	if err != nil || !equalIDs(ids, []int32{0, 19923, 2058}) {
		t.Errorf("Encode(Hello world) = %v, %v; want [0 19923 2058]", ids, err)
	}
	if ids, _ := tok.Encode("Hello world", false, false); !equalIDs(ids, []int32{19923, 2058}) {
		t.Errorf("Encode without specials = %v", ids)
	}
	if text, err := tok.Decode([]int32{19923, 2058}, false); err != nil || text != "Hello world" {
		t.Errorf("Decode = %q, %v", text, err)
	}
	if f := tok.ChatFormat(); f != "deepseek-v3" {
		t.Errorf("ChatFormat() = %q", f)
	}
	if tok.NVocab() != 128815 || tok.TokenBOS() != 0 || !tok.TokenIsEOG(tok.TokenEOS()) {
		t.Errorf("n_vocab %d bos %d eos %d", tok.NVocab(), tok.TokenBOS(), tok.TokenEOS())
	}
	const bos, user, assistant = "<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"
	msgs := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello world"}}
	text, err := tok.ApplyChatTemplate(msgs, true, "")
	if want := bos + "Be brief." + user + "Hello world" + assistant; err != nil || text != want {
		t.Errorf("ApplyChatTemplate = %q, %v; want %q", text, err, want)
	}
	text, err = tok.ApplyChatTemplate(msgs, true, "chatml")
	if want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello world<|im_end|>\n<|im_start|>assistant\n"; err != nil || text != want {
		t.Errorf("ApplyChatTemplate(chatml) = %q, %v", text, err)
	}
	long := strings.Repeat("long content ", 1000) // longer than the first buffer
	if text, err := tok.ApplyChatTemplate([]Message{{Role: "user", Content: long}}, false, ""); err != nil || !strings.Contains(text, long) {
		t.Errorf("a long message: %v", err)
	}
	_, err = tok.ApplyChatTemplate([]Message{{Role: "tool", Content: "x"}}, true, "")
	expectError(t, "role tool", err, ErrInvalidArgument, "tool")
	_, err = tok.ApplyChatTemplate(msgs, true, "vicuna")
	expectError(t, "format vicuna", err, ErrInvalidArgument, "vicuna")
	_, err = tok.ApplyChatTemplate([]Message{{Role: "user", Content: "ok\xc3("}}, true, "")
	expectError(t, "invalid UTF-8", err, ErrInvalidArgument, "offset 2")
	_, err = tok.Encode("ok\xc3(", true, true)
	expectError(t, "Encode(invalid UTF-8)", err, ErrInvalidArgument, "2")
	_, err = tok.ApplyChatTemplate(nil, true, "")
	expectError(t, "no messages", err, ErrInvalidArgument, "no messages")
	tok.Close()
	if _, err := tok.Encode("x", true, true); err != ErrClosed {
		t.Errorf("Encode after Close: %v", err)
	}

	// a model's tokenizer: stories260K has no chat template
	st := needStories(t)
	m := mustLoad(t, st.path)
	defer m.Close()
	mt, err := m.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	defer mt.Close()
	p := st.ref.Prompts[0]
	if ids, err := mt.Encode(p.Prompt, true, true); err != nil || !equalIDs(ids, p.PromptIDs) {
		t.Errorf("model tokenizer: %v, %v", ids, err)
	}
	if mt.ChatFormat() != "none" || mt.NVocab() != m.NVocab() {
		t.Errorf("model tokenizer: chat format %q, n_vocab %d", mt.ChatFormat(), mt.NVocab())
	}
	_, err = mt.ApplyChatTemplate(msgs, true, "")
	expectError(t, "no chat format", err, ErrInvalidArgument, "none")
}

// (4) Goroutines: sessions on one shared model, and Cancel from another goroutine.
func TestGoroutines(t *testing.T) {
	st := needStories(t)
	p := st.ref.Prompts[0]
	m := mustLoad(t, st.path)
	defer m.Close()
	const n = 4
	results := make([]generated, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := m.NewSession(0)
			if err != nil {
				results[i].err = err
				return
			}
			defer s.Close()
			if err := s.SetThreads(1); err != nil {
				results[i].err = err
				return
			}
			if err := s.SetTemperature(0); err != nil {
				results[i].err = err
				return
			}
			if err := s.Prompt(p.Prompt); err != nil {
				results[i].err = err
				return
			}
			results[i] = generate(s, len(p.GeneratedIDs))
		}(i)
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || !equalIDs(r.ids, p.GeneratedIDs) || r.text != p.GeneratedText {
			t.Errorf("session %d: err %v, ids %v, text %q", i, r.err, r.ids, r.text)
		}
	}

	// Cancel: a long prompt (BOS + the 256 reference tokens + their first 200 again) is evaluated
	// again and again while another goroutine cancels at irregular intervals (0-1.5 ms).
	g := st.ref.GreedyFromBOS
	s := mustSession(t, m, 0)
	defer s.Close()
	if err := s.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	long := append(append(append([]int32{}, g.PromptIDs...), g.GeneratedIDs...), g.GeneratedIDs[:200]...)
	s.Cancel() // idle: a no-op
	if err := s.PromptTokens(g.PromptIDs); err != nil {
		t.Fatalf("PromptTokens after an idle Cancel: %v", err)
	}
	var stop int32
	var nCancelCalls int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewSource(7))
		for atomic.LoadInt32(&stop) == 0 {
			s.Cancel()
			atomic.AddInt64(&nCancelCalls, 1)
			time.Sleep(time.Duration(rng.Intn(1500)) * time.Microsecond)
		}
	}()
	nOK, nCancelled := 0, 0
	// retry runs a call until it is not cancelled; a cancelled call changes nothing.
	retry := func(what string, call func() error) bool {
		for attempt := 0; attempt < 10000; attempt++ {
			before := s.NPast()
			err := call()
			if err == nil {
				nOK++
				return true
			}
			if !errors.Is(err, ErrCancelled) {
				t.Errorf("%s: %v", what, err)
				return false
			}
			nCancelled++
			var fe *Error
			if !errors.As(err, &fe) || fe.Message == "" {
				t.Errorf("%s: cancelled without a message: %v", what, err)
			}
			if s.NPast() != before {
				t.Errorf("%s: cancelled but n_past moved from %d to %d", what, before, s.NPast())
			}
		}
		t.Errorf("%s: never completed", what)
		return false
	}
	const kTokens = 16
	deadline := time.Now().Add(20 * time.Second)
	for round := 0; round < 8 && !t.Failed() && time.Now().Before(deadline); round++ {
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
		// Long enough to be cancelled mid-way (nearly always); either outcome is fine.
		switch err := s.PromptTokens(long); {
		case err == nil:
			nOK++
		case errors.Is(err, ErrCancelled):
			nCancelled++
			if s.NPast() != 0 {
				t.Errorf("long prompt: cancelled but n_past is %d", s.NPast())
			}
		default:
			t.Fatalf("long prompt: %v", err)
		}
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
		if !retry("PromptTokens", func() error { return s.PromptTokens(g.PromptIDs) }) {
			break
		}
		var ids []int32
		for len(ids) < kTokens {
			var tok int32
			if !retry("Next", func() error {
				var err error
				tok, _, _, err = s.Next()
				return err
			}) {
				break
			}
			ids = append(ids, tok)
		}
		if !equalIDs(ids, g.GeneratedIDs[:kTokens]) {
			t.Errorf("round %d: %v, want %v", round, ids, g.GeneratedIDs[:kTokens])
		}
	}
	atomic.StoreInt32(&stop, 1)
	<-done
	t.Logf("%d calls completed, %d cancelled, %d Cancel calls", nOK, nCancelled, atomic.LoadInt64(&nCancelCalls))
	if nCancelled == 0 {
		t.Errorf("no call was cancelled")
	}
	// The session is intact: the reference greedy continuation after a reset.
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := s.PromptTokens(g.PromptIDs); err != nil {
		t.Fatal(err)
	}
	if got := generate(s, 64); got.err != nil || !equalIDs(got.ids, g.GeneratedIDs[:64]) {
		t.Errorf("after cancelling: err %v, ids %v", got.err, got.ids)
	}
}

// (5) A Model closed or garbage collected before its sessions and tokenizers; finalizers free
// every handle.
func TestLifetimes(t *testing.T) {
	st := needStories(t)
	p := st.ref.Prompts[0]
	zero := func() bool {
		return liveCount(&liveModels) == 0 && liveCount(&liveTokenizers) == 0 && liveCount(&liveSessions) == 0
	}
	if !waitFor(zero) {
		t.Fatalf("handles of earlier tests still live: %d models, %d tokenizers, %d sessions",
			liveCount(&liveModels), liveCount(&liveTokenizers), liveCount(&liveSessions))
	}

	// The Model is dropped: only its sessions and tokenizer reference it.
	open := func() ([]*Session, *Tokenizer) {
		m := mustLoad(t, st.path)
		var ss []*Session
		for i := 0; i < 3; i++ {
			ss = append(ss, mustSession(t, m, 128*(i+1)))
		}
		tok, err := m.Tokenizer()
		if err != nil {
			t.Fatal(err)
		}
		return ss, tok
	}
	sessions, tok := open()
	if !waitFor(func() bool { return liveCount(&liveModels) == 0 }) {
		t.Fatalf("the dropped Model was never finalized")
	}
	for round := 0; round < 3; round++ {
		for i, s := range sessions {
			if err := s.Reset(); err != nil {
				t.Fatal(err)
			}
			if err := s.Prompt(p.Prompt); err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
			if got := generate(s, len(p.GeneratedIDs)); got.err != nil || !equalIDs(got.ids, p.GeneratedIDs) {
				t.Errorf("session %d after the model was collected: err %v ids %v", i, got.err, got.ids)
			}
			runtime.GC()
		}
		if ids, err := tok.Encode(p.Prompt, true, true); err != nil || !equalIDs(ids, p.PromptIDs) {
			t.Errorf("tokenizer after the model was collected: %v %v", ids, err)
		}
	}
	// Dropped sessions and tokenizer are finalized too.
	sessions, tok = nil, nil
	if !waitFor(zero) {
		t.Errorf("dropped handles were never finalized: %d tokenizers, %d sessions", liveCount(&liveTokenizers), liveCount(&liveSessions))
	}

	// Close in any order: the Model first, then the session keeps working.
	m := mustLoad(t, st.path)
	s := mustSession(t, m, 0)
	tok2, err := m.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	m.Close()
	if m.NVocab() != 0 || m.Architecture() != "" {
		t.Errorf("getters of a closed Model: %d %q", m.NVocab(), m.Architecture())
	}
	if _, err := m.NewSession(0); err != ErrClosed {
		t.Errorf("NewSession on a closed Model: %v", err)
	}
	if _, err := m.Tokenizer(); err != ErrClosed {
		t.Errorf("Tokenizer on a closed Model: %v", err)
	}
	runtime.GC()
	if err := s.Prompt(p.Prompt); err != nil {
		t.Fatal(err)
	}
	if got := generate(s, len(p.GeneratedIDs)); got.err != nil || got.text != p.GeneratedText {
		t.Errorf("after Model.Close: err %v text %q", got.err, got.text)
	}
	tok2.Close()
	s.Close()
	if !zero() {
		t.Errorf("Close left handles: %d models, %d tokenizers, %d sessions",
			liveCount(&liveModels), liveCount(&liveTokenizers), liveCount(&liveSessions))
	}
}
