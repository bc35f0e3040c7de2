package mask

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// plainShape carries the pieces as the data of events that are not JSON,
// a piece's newlines as data lines; a client appends the events' data.
func plainShape(pieces []string, ids bool) string {
	var b strings.Builder
	for i, p := range pieces {
		if ids {
			b.WriteString(": c\nid: " + strconv.Itoa(i) + "\n")
		}
		for _, l := range strings.Split(p, "\n") {
			b.WriteString("data: " + l + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// FuzzSSESplit checks the SSE masker on random text cut into events at
// random, with LF, CR, CRLF or mixed line ends, read in random pieces:
//   - the output does not depend on how the body was read (split invariance);
//   - it is well-formed SSE;
//   - the text of the stream, as a client reassembles it from the output's
//     events, is the one-shot masking of the text;
//   - OpenAI Responses sequence numbers stay unique and increasing.
//
// mode picks the shape (the JSON shapes of sse_test.go, or plain-text
// events), the line ends, a leading byte order mark, and extra cuts right
// after every CR.
func FuzzSSESplit(f *testing.F) {
	f.Add("Hello, world! "+awsKey+" jane@example.com", []byte{3, 1, 4, 1, 5, 9, 2, 6}, uint8(0))
	f.Add(corpus(), []byte{0, 0, 0, 7, 7, 7, 15, 15}, uint8(9))
	f.Add("pw hunter2hunter2 and "+pemKey+"\nEMP-123456", []byte{1, 2, 3}, uint8(21))
	f.Add(awsKey+"\r\n"+email+"\rend", []byte{5, 0, 5}, uint8(44))
	f.Add("{\"a\":1} [DONE] AKIAIOSF"+"ODNN7EXAMPLE", []byte{7, 0, 1}, uint8(255))
	e := mustEngine(f, Config{Custom: []Custom{{Name: "emp", Pattern: `EMP-\d{6}`}}, Literals: []Literal{{Value: "hunter2hunter2"}}})
	f.Fuzz(func(t *testing.T, text string, seed []byte, mode uint8) {
		if len(text) > 2048 || len(seed) > 256 {
			return
		}
		shape := int(mode) % (len(shapes) + 1)
		plain := shape == len(shapes)
		if plain {
			// A client's data holds no CR: it would end the line.
			text = strings.ReplaceAll(text, "\r", "\n")
		}
		pieces := piecesAt(text, cutsFrom(seed, len(text)))
		var body string
		if plain {
			body = plainShape(pieces, mode&0x40 != 0)
		} else {
			body = shapes[shape].build(pieces)
		}
		body = relineEnds(body, []string{"\n", "\r", "\r\n", "mix"}[mode>>3&3])
		if mode&0x20 != 0 {
			body = "\ufeff" + body
		}

		one := wrapChunks(t, e, body, "text/event-stream", nil)
		rev := make([]byte, len(seed))
		for i, b := range seed {
			rev[len(seed)-1-i] = b
		}
		cuts := cutsFrom(rev, len(body))
		if mode&0x80 != 0 {
			cuts = nil
			for i := range len(body) {
				if body[i] == '\r' {
					cuts = append(cuts, i+1)
				}
			}
		}
		if got := wrapChunks(t, e, body, "text/event-stream", cuts); got != one {
			t.Fatalf("output depends on the reads %v:\n body %q\n got  %q\n want %q", cuts, body, got, one)
		}
		checkSeq(t, one)

		want := e.MaskString(text)
		if plain {
			for _, p := range pieces {
				if s := strings.TrimLeft(p, " \t\n"); s != "" && (s[0] == '{' || s[0] == '[') {
					return // possibly JSON or [DONE]: not part of the text
				}
			}
			var got strings.Builder
			for _, ev := range parseSSE(t, one) {
				got.WriteString(ev.data)
			}
			if got.String() != want {
				t.Fatalf("plain text:\n pieces %q\n got  %q\n want %q", pieces, got.String(), want)
			}
			return
		}
		got, _ := streamedText(t, shapes[shape], one)
		// JSON round trips turn invalid UTF-8 into U+FFFD; compare like with like.
		if b, err := json.Marshal(want); err == nil {
			_ = json.Unmarshal(b, &want)
		}
		if got != want && !strings.ContainsRune(got, '\uFFFD') {
			t.Fatalf("%s:\n pieces %q\n got  %q\n want %q", shapes[shape].name, pieces, got, want)
		}
	})
}
