// Command generate streams a completion from a GGUF model through the frugal Go package.
//
//	generate -m MODEL.gguf [-p PROMPT] [-n 128] [-temp 0.8] [-seed N] [-threads N] [-ctx N]
//	generate -m MODEL.gguf -chat -p QUESTION [-system TEXT] [-hide-reasoning]
//
// Build with CGO_CFLAGS / CGO_LDFLAGS pointing at frugal.h and libfrugal (see
// bindings/go/README.md). Ctrl-C cancels the running call from the signal goroutine.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"frugal.dev/frugal"
)

func main() {
	modelPath := flag.String("m", "", "model file (GGUF); also the first argument")
	prompt := flag.String("p", "", "prompt (default: start from BOS)")
	nPredict := flag.Int("n", 128, "tokens to generate")
	temp := flag.Float64("temp", -1, "temperature, 0 = greedy (default: the model's)")
	seed := flag.Int64("seed", -1, "sampler seed (default: the library's)")
	threads := flag.Int("threads", 0, "threads (0 = physical cores)")
	nCtx := flag.Int("ctx", 0, "context size (0 = min(training context, 4096))")
	chat := flag.Bool("chat", false, "send the prompt as a user message through the chat template")
	system := flag.String("system", "", "system message (with -chat)")
	hideReasoning := flag.Bool("hide-reasoning", false, "do not print the reasoning (with -chat)")
	flag.Parse()
	if *modelPath == "" && flag.NArg() > 0 {
		*modelPath = flag.Arg(0)
	}
	if *modelPath == "" {
		fmt.Fprintln(os.Stderr, "usage: generate -m MODEL.gguf [-p PROMPT] [-n N] [-temp T] [-chat]")
		flag.PrintDefaults()
		os.Exit(2)
	}
	os.Exit(run(*modelPath, *prompt, *nPredict, *temp, *seed, *threads, *nCtx, *chat, *system, *hideReasoning))
}

func fail(what string, err error) int {
	fmt.Fprintf(os.Stderr, "generate: %s: %v\n", what, err)
	var fe *frugal.Error
	if errors.As(err, &fe) && fe.Status == frugal.StatusIO {
		return 3
	}
	return 1
}

func run(path, prompt string, nPredict int, temp float64, seed int64, threads, nCtx int,
	chat bool, system string, hideReasoning bool) int {
	if frugal.VersionNumber() != frugal.HeaderVersionNumber {
		fmt.Fprintf(os.Stderr, "generate: libfrugal %s differs from the header this was built with\n", frugal.Version())
	}
	model, err := frugal.LoadModel(path, frugal.WithThreads(threads))
	if err != nil {
		return fail("load", err)
	}
	session, err := model.NewSession(nCtx)
	if err != nil {
		model.Close()
		return fail("session", err)
	}
	defer session.Close()
	var tok *frugal.Tokenizer
	if chat {
		if tok, err = model.Tokenizer(); err != nil {
			return fail("tokenizer", err)
		}
		defer tok.Close()
	}
	bos := model.TokenBOS()
	model.Close() // the session (and the tokenizer) keep the weights alive

	if temp >= 0 {
		if err := session.SetTemperature(float32(temp)); err != nil {
			return fail("temperature", err)
		}
	}
	if seed >= 0 {
		if err := session.SetSeed(seed); err != nil {
			return fail("seed", err)
		}
	}

	// Ctrl-C: Cancel is the one Session method safe from another goroutine.
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, os.Interrupt)
	defer signal.Stop(interrupts)
	go func() {
		for range interrupts {
			session.Cancel()
		}
	}()

	start := time.Now()
	switch {
	case chat:
		var msgs []frugal.Message
		if system != "" {
			msgs = append(msgs, frugal.Message{Role: "system", Content: system})
		}
		msgs = append(msgs, frugal.Message{Role: "user", Content: prompt})
		text, err := tok.ApplyChatTemplate(msgs, true, "")
		if err != nil {
			return fail("chat template", err)
		}
		err = session.Prompt(text)
	case prompt != "":
		err = session.Prompt(prompt)
		fmt.Print(prompt)
	case bos >= 0:
		err = session.PromptTokens([]int32{bos})
	}
	if err != nil {
		return fail("prompt", err)
	}
	promptTime := time.Since(start)

	start = time.Now()
	n := 0
	for n < nPredict {
		var text string
		var done bool
		if chat {
			var part frugal.Part
			part, done, err = session.NextPart()
			if part.Kind == frugal.PartReasoning {
				if !hideReasoning {
					fmt.Fprint(os.Stderr, part.Text)
				}
			} else {
				text = part.Text
			}
		} else {
			_, text, done, err = session.Next()
		}
		if errors.Is(err, frugal.ErrCancelled) {
			fmt.Fprintln(os.Stderr, "\ngenerate: cancelled")
			return 130
		}
		if err != nil {
			fmt.Println()
			return fail("next", err)
		}
		fmt.Print(text)
		n++
		if done {
			break
		}
	}
	fmt.Println()
	decode := time.Since(start)
	fmt.Fprintf(os.Stderr, "generate: prompt %.1f ms, %d tokens in %.1f ms (%.1f tokens/s)\n",
		float64(promptTime.Microseconds())/1000, n, float64(decode.Microseconds())/1000,
		float64(n)/decode.Seconds())
	return 0
}
