package frugal

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// sharedDir is the team's shared data folder: $FRUGAL_SHARED_DIR, else ../shared next to the
// repository, else /work/shared.
func sharedDir() string {
	if d := os.Getenv("FRUGAL_SHARED_DIR"); d != "" {
		return d
	}
	if d, err := filepath.Abs("../../../shared"); err == nil {
		if _, err := os.Stat(filepath.Join(d, "data")); err == nil {
			return d
		}
	}
	return "/work/shared"
}

type reference struct {
	GreedyFromBOS struct {
		PromptIDs    []int32 `json:"prompt_ids"`
		GeneratedIDs []int32 `json:"generated_ids"`
		Text         string  `json:"text"`
	} `json:"greedy_from_bos"`
	Prompts []struct {
		Prompt        string  `json:"prompt"`
		PromptIDs     []int32 `json:"prompt_ids"`
		GeneratedIDs  []int32 `json:"generated_ids"`
		GeneratedText string  `json:"generated_text"`
	} `json:"prompts"`
}

type stories struct {
	path string
	ref  reference
}

// needStories is the stories260K model and its reference.json, or a skip when ../shared is absent.
func needStories(t *testing.T) stories {
	t.Helper()
	dir := filepath.Join(sharedDir(), "data", "stories260K")
	st := stories{path: filepath.Join(dir, "stories260K.gguf")}
	raw, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Skipf("the shared data is absent (%v); set FRUGAL_SHARED_DIR", err)
	}
	if _, err := os.Stat(st.path); err != nil {
		t.Skipf("the shared data is absent (%v); set FRUGAL_SHARED_DIR", err)
	}
	if err := json.Unmarshal(raw, &st.ref); err != nil {
		t.Fatalf("reference.json: %v", err)
	}
	if len(st.ref.Prompts) == 0 || len(st.ref.GreedyFromBOS.GeneratedIDs) == 0 {
		t.Fatalf("reference.json: no prompts or greedy_from_bos")
	}
	return st
}

func mustLoad(t *testing.T, path string, opts ...ModelOption) *Model {
	t.Helper()
	m, err := LoadModel(path, opts...)
	if err != nil {
		t.Fatalf("LoadModel(%s): %v", path, err)
	}
	return m
}

// mustSession is a greedy session whose KV cache keeps F32 values, as the reference's forward
// pass did.
func mustSession(t *testing.T, m *Model, nCtx int) *Session {
	t.Helper()
	s, err := m.NewSessionWithOptions(SessionOptions{NCtx: nCtx, KVType: KVF32})
	if err != nil {
		t.Fatalf("NewSession(%d): %v", nCtx, err)
	}
	if err := s.SetTemperature(0); err != nil {
		t.Fatalf("SetTemperature(0): %v", err)
	}
	return s
}

type generated struct {
	ids  []int32
	text string
	done bool
	err  error
}

// generate pulls up to n tokens with Next, stopping at the end of generation or an error.
func generate(s *Session, n int) generated {
	var g generated
	for len(g.ids) < n {
		tok, text, done, err := s.Next()
		if err != nil {
			g.err = err
			return g
		}
		g.ids = append(g.ids, tok)
		g.text += text
		if done {
			g.done = true
			return g
		}
	}
	return g
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitFor runs the garbage collector until cond holds (finalizers run on their own goroutine),
// for at most 10 s.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
