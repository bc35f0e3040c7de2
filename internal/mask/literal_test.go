package mask

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/crewgate/crewgate/internal/testenv"
)

// injected stands for a credential crewgate injected; it has the characters
// real keys have (letters of both cases, digits, '-', '_').
const injected = "sk-Live_9fQ2xZ7pL4mN8rT1"

// literalForms are the ways a hostile upstream can hand injected back.
func literalForms() map[string]string { return testenv.Forms(injected) }

func TestLiteralEveryForm(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Value: injected}}})
	r := rand.New(rand.NewPCG(1, 2))
	for name, form := range literalForms() {
		if _, ok := testenv.Reveals([]byte(form), injected); !ok {
			t.Fatalf("%s: the checker does not see the key in %q", name, form)
		}
		body := "before " + form + " after"
		for _, ct := range []string{"text/plain", "application/x-ndjson", "text/event-stream", "application/json", "application/grpc"} {
			b := body
			switch ct {
			case "text/event-stream":
				b = "data: " + body + "\n\n"
			case "application/json":
				b = `{"k":"` + strings.ReplaceAll(strings.ReplaceAll(body, `\`, `\\`), `"`, `\"`) + `"}`
			}
			out, c := readAllWrap(t, e, []byte(b), ct, "")
			if f, ok := testenv.Reveals(out, injected); ok {
				t.Errorf("%s in %s: the key is still there (%s): %q", name, ct, f, out)
			}
			if c.ByDetector()["credential"] == 0 {
				t.Errorf("%s in %s: not counted: %v", name, ct, c.ByDetector())
			}
			if ct == "application/grpc" && len(out) != len(b) {
				t.Errorf("%s in %s: a binary body changed length: %d -> %d", name, ct, len(b), len(out))
			}
			for range 3 {
				if got := wrapChunks(t, e, b, ct, randomCuts(r, len(b))); got != string(out) {
					t.Fatalf("%s in %s: split changed the output:\n one %q\n cut %q", name, ct, out, got)
				}
			}
		}
		h := http.Header{"Location": {form}, "Set-Cookie": {"s=" + form + "; Path=/"}}
		var c Counts
		e.MaskHeader(h, &c)
		for k, v := range h {
			if f, ok := testenv.Reveals([]byte(strings.Join(v, "\n")), injected); ok {
				t.Errorf("%s in header %s: still there (%s): %q", name, k, f, v)
			}
			if strings.ContainsAny(v[0], "\r\n") {
				t.Errorf("%s in header %s: not one line: %q", name, k, v)
			}
		}
	}
}

// TestLiteralNearMisses keeps the encoded forms from masking what is not
// the value.
func TestLiteralNearMisses(t *testing.T) {
	e := mustEngine(t, Config{Detectors: []string{"none"}, Literals: []Literal{{Value: injected}}})
	for _, s := range []string{
		injected[:len(injected)-1] + "X",
		"%73%6b%2d" + "Live",
		`\u0073k-Live_9fQ2xZ7pL4mN8rT`,
		"&#115;k-Live_9fQ2xZ7pL4mN8rT",
		hex.EncodeToString([]byte(injected))[2:],
		"100% sure, 50%2 and &amp; \\u00e9 &#233;",
	} {
		if got := e.MaskString(s); got != s {
			t.Errorf("%q masked to %q", s, got)
		}
	}
}

func TestMaskHeaderName(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Value: injected}}})
	h := http.Header{"X-" + injected: {"1"}, "Content-Type": {"text/plain"}}
	var c Counts
	e.MaskHeader(h, &c)
	if len(h) != 1 || h.Get("Content-Type") != "text/plain" || c.Total() != 1 {
		t.Errorf("header %v counts %v", h, c.ByDetector())
	}
}

func TestReplacementMustFitAHeader(t *testing.T) {
	if _, err := New(Config{Replacement: "[MASKED\n{{.Name}}]"}); err == nil || !strings.Contains(err.Error(), "header line") {
		t.Errorf("err %v", err)
	}
}

// FuzzLiteralSplit: the literal forms stream like everything else.
func FuzzLiteralSplit(f *testing.F) {
	for _, form := range literalForms() {
		f.Add("x "+form+" y", []byte{1, 5, 3, 9})
	}
	e := mustEngine(f, Config{Literals: []Literal{{Value: injected}}})
	f.Fuzz(func(t *testing.T, text string, seed []byte) {
		if len(text) > 4096 {
			return
		}
		checkStreams(t, e, text, cutsFrom(seed, len(text)))
		one := wrapChunks(t, e, text, "application/octet-stream", nil)
		if got := wrapChunks(t, e, text, "application/octet-stream", cutsFrom(seed, len(text))); got != one || len(one) != len(text) {
			t.Fatalf("binary:\n in  %q\n one %q\n got %q", text, one, got)
		}
	})
}
