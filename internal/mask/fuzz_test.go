package mask

import (
	"encoding/json"
	"strings"
	"testing"
)

// cutsFrom turns fuzz bytes into increasing cut points in [1, n).
func cutsFrom(seed []byte, n int) []int {
	var cuts []int
	p := 0
	for _, b := range seed {
		p += 1 + int(b%16)
		if p >= n {
			break
		}
		cuts = append(cuts, p)
	}
	return cuts
}

// checkStreams checks what every fuzz target of the package holds of its
// engine: masking text is idempotent, and streaming it cut at cuts, as
// plain text and as raw JSON, gives the one-shot output, which it returns.
func checkStreams(t *testing.T, e *Engine, text string, cuts []int) string {
	t.Helper()
	want := e.MaskString(text)
	if again := e.MaskString(want); again != want {
		t.Fatalf("not idempotent:\n in    %q\n once  %q\n twice %q", text, want, again)
	}
	if got, _ := streamMask(e, text, cuts, false); got != want {
		t.Fatalf("byte stream:\n in   %q\n cuts %v\n got  %q\n want %q", text, cuts, got, want)
	}
	wantEsc, _ := streamMask(e, text, nil, true)
	if got, _ := streamMask(e, text, cuts, true); got != wantEsc {
		t.Fatalf("raw JSON stream:\n in   %q\n cuts %v\n got  %q\n want %q", text, cuts, got, wantEsc)
	}
	return want
}

// piecesAt cuts text at cuts.
func piecesAt(text string, cuts []int) []string {
	var pieces []string
	prev := 0
	for _, c := range cuts {
		pieces = append(pieces, text[prev:c])
		prev = c
	}
	return append(pieces, text[prev:])
}

// FuzzSplit drives the core properties with random text and random cuts:
// streamed output equals one-shot output for byte streams (plain and raw
// JSON) and for the text of an SSE stream cut into events and into reads;
// masking is idempotent; SSE output stays well-formed.
func FuzzSplit(f *testing.F) {
	f.Add("Hello, world! "+awsKey+" jane@example.com", []byte{3, 1, 4, 1, 5, 9, 2, 6})
	f.Add(corpus(), []byte{0, 0, 0, 7, 7, 7, 15, 15})
	f.Add(pemKey+"\n4111 1111 1111 1111 123-45-6789", []byte{1})
	e := mustEngine(f, Config{Custom: []Custom{{Name: "emp", Pattern: `EMP-\d{6}`}}, Literals: []Literal{{Value: "hunter2hunter2"}}})
	f.Fuzz(func(t *testing.T, text string, seed []byte) {
		if len(text) > 4096 {
			return
		}
		want := checkStreams(t, e, text, cutsFrom(seed, len(text)))
		// SSE: the text cut into events by the seed, the body cut into reads by the reversed seed.
		pieces := piecesAt(text, cutsFrom(seed, len(text)))
		sh := shapes[int(len(seed))%len(shapes)]
		body := sh.build(pieces)
		rev := make([]byte, len(seed))
		for i, b := range seed {
			rev[len(seed)-1-i] = b
		}
		out := wrapChunks(t, e, body, "text/event-stream", cutsFrom(rev, len(body)))
		got, _ := streamedText(t, sh, out)
		// JSON round trips turn invalid UTF-8 into U+FFFD; compare like with like.
		wantSSE := want
		if b, err := json.Marshal(want); err == nil {
			var s string
			_ = json.Unmarshal(b, &s)
			wantSSE = s
		}
		if got != wantSSE && !strings.ContainsRune(got, '\uFFFD') {
			t.Fatalf("SSE %s:\n pieces %q\n got  %q\n want %q", sh.name, pieces, got, wantSSE)
		}
	})
}
