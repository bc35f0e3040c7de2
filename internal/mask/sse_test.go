package mask

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Stream shapes: each builds an SSE body carrying pieces as the deltas of
// one text stream, and extracts that text from the data of output events.
type shape struct {
	name  string
	build func(pieces []string) string
	text  func(t *testing.T, data map[string]any) string
}

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var shapes = []shape{
	{
		name: "openai-chat",
		build: func(pieces []string) string {
			var b strings.Builder
			b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
			for _, p := range pieces {
				fmt.Fprintf(&b, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}`+"\n\n", jsonStr(p))
			}
			b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n")
			b.WriteString("data: [DONE]\n\n")
			return b.String()
		},
		text: func(t *testing.T, d map[string]any) string {
			for _, c := range d["choices"].([]any) {
				if s, ok := c.(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
					return s
				}
			}
			return ""
		},
	},
	{
		name: "openai-tool-args",
		build: func(pieces []string) string {
			var b strings.Builder
			b.WriteString(`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"send","arguments":""}}]}}]}` + "\n\n")
			for _, p := range pieces {
				fmt.Fprintf(&b, `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":%s}}]}}]}`+"\n\n", jsonStr(p))
			}
			b.WriteString(`data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\ndata: [DONE]\n\n")
			return b.String()
		},
		text: func(t *testing.T, d map[string]any) string {
			for _, c := range d["choices"].([]any) {
				tc, _ := c.(map[string]any)["delta"].(map[string]any)["tool_calls"].([]any)
				for _, x := range tc {
					if s, ok := x.(map[string]any)["function"].(map[string]any)["arguments"].(string); ok {
						return s
					}
				}
			}
			return ""
		},
	},
	{
		name: "anthropic",
		build: func(pieces []string) string {
			var b strings.Builder
			b.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"role\":\"assistant\"}}\n\n")
			b.WriteString("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
			for _, p := range pieces {
				fmt.Fprintf(&b, "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":%s}}\r\n\r\n", jsonStr(p))
			}
			b.WriteString("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n")
			b.WriteString("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
			return b.String()
		},
		text: func(t *testing.T, d map[string]any) string {
			if d["type"] != "content_block_delta" {
				return ""
			}
			s, _ := d["delta"].(map[string]any)["text"].(string)
			return s
		},
	},
	{
		name: "openai-responses",
		build: func(pieces []string) string {
			var b strings.Builder
			seq := 0
			for _, p := range pieces {
				fmt.Fprintf(&b, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":%d,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":%s}\n\n", seq, jsonStr(p))
				seq++
			}
			full := jsonStr(strings.Join(pieces, ""))
			fmt.Fprintf(&b, "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":%s}\n\n", full)
			fmt.Fprintf(&b, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"content\":[{\"type\":\"output_text\",\"text\":%s}]}]}}\n\n", full)
			return b.String()
		},
		text: func(t *testing.T, d map[string]any) string {
			if d["type"] != "response.output_text.delta" {
				return ""
			}
			return d["delta"].(string)
		},
	},
}

// sseEvents parses an SSE body into the data of its events and fails on
// anything that is not well-formed.
func sseEvents(t *testing.T, body string) []string {
	t.Helper()
	body = strings.ReplaceAll(body, "\r\n", "\n")
	if body != "" && !strings.HasSuffix(body, "\n\n") {
		t.Fatalf("body does not end with a blank line: %q", body[max(0, len(body)-40):])
	}
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		var data []string
		for _, l := range strings.Split(ev, "\n") {
			if v, ok := strings.CutPrefix(l, "data:"); ok {
				data = append(data, strings.TrimPrefix(v, " "))
			} else if !strings.HasPrefix(l, "event:") && !strings.HasPrefix(l, "id:") && !strings.HasPrefix(l, ":") {
				t.Fatalf("bad line %q in event %q", l, ev)
			}
		}
		out = append(out, strings.Join(data, "\n"))
	}
	return out
}

// streamedText checks every output event and returns the stream's text.
func streamedText(t *testing.T, sh shape, body string) (string, int) {
	t.Helper()
	var text strings.Builder
	evs := sseEvents(t, body)
	for _, d := range evs {
		if d == "[DONE]" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("event data is not JSON: %v: %q", err, d)
		}
		text.WriteString(sh.text(t, m))
	}
	return text.String(), len(evs)
}

func cutText(r *rand.Rand, s string) []string {
	var pieces []string
	for len(s) > 0 {
		n := min(len(s), 1+r.IntN(9))
		pieces = append(pieces, s[:n])
		s = s[n:]
	}
	return pieces
}

// TestSSESplitInvariance cuts one text into events in many ways, and each
// SSE body into reads in many ways: the text the client reassembles must be
// the one-shot masked text every time.
func TestSSESplitInvariance(t *testing.T) {
	e := mustEngine(t, Config{})
	text := corpus()
	want := e.MaskString(text)
	r := rand.New(rand.NewPCG(3, 4))
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			for n := range 40 {
				pieces := cutText(r, text)
				if n == 0 {
					pieces = []string{text}
				}
				in := sh.build(pieces)
				var cuts []int
				if n%2 == 1 {
					cuts = randomCuts(r, len(in))
				}
				out := wrapChunks(t, e, in, "text/event-stream", cuts)
				got, nev := streamedText(t, sh, out)
				if got != want {
					t.Fatalf("pieces %q:\n got %q\nwant %q", pieces, got, want)
				}
				inEv := len(sseEvents(t, in))
				if nev < inEv || nev > inEv+1 {
					t.Fatalf("%d events in, %d out: want the same plus at most one flush", inEv, nev)
				}
				if strings.Contains(out, awsKey[4:]) || strings.Contains(out, jwtToken[40:]) {
					t.Fatalf("key material in output")
				}
			}
		})
	}
}

// wrapChunks runs body through Wrap, the source delivering it in the given cuts.
func wrapChunks(t testing.TB, e *Engine, body, ct string, cuts []int) string {
	t.Helper()
	src := &chunkReader{data: []byte(body), cuts: cuts}
	rc, _, _ := e.Wrap(src, ct, "")
	var out bytes.Buffer
	if _, err := out.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	return out.String()
}

type chunkReader struct {
	data []byte
	cuts []int
	off  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.off >= len(c.data) {
		return 0, errEOF
	}
	end := len(c.data)
	for len(c.cuts) > 0 && c.cuts[0] <= c.off {
		c.cuts = c.cuts[1:]
	}
	if len(c.cuts) > 0 {
		end = c.cuts[0]
	}
	n := copy(p, c.data[c.off:end])
	c.off += n
	return n, nil
}

func (c *chunkReader) Close() error { return nil }

// TestSSEFirstEventNotHeld checks that an event whose text cannot start a
// secret comes out as soon as it is read, before the stream goes on.
func TestSSEFirstEventNotHeld(t *testing.T) {
	e := mustEngine(t, Config{})
	pr := newPipe()
	rc, _, _ := e.Wrap(pr, "text/event-stream", "")
	first := `data: {"choices":[{"index":0,"delta":{"content":"Hello, "}}]}` + "\n\n"
	pr.write(first)
	buf := make([]byte, 4096)
	n, err := rc.Read(buf)
	if err != nil || string(buf[:n]) != first {
		t.Fatalf("first read = %q, %v; want the first event unchanged", buf[:n], err)
	}
	// A word may still grow into an address: it is held until the next event.
	pr.write(`data: {"choices":[{"index":0,"delta":{"content":"jane"}}]}` + "\n\n")
	n, _ = rc.Read(buf)
	if !strings.Contains(string(buf[:n]), `"content":""`) {
		t.Fatalf("second event = %q, want its text held", buf[:n])
	}
	pr.write(`data: {"choices":[{"index":0,"delta":{"content":"@example.com, hi"}}]}` + "\n\n")
	n, _ = rc.Read(buf)
	if !strings.Contains(string(buf[:n]), `"content":"[MASKED:email], "`) {
		t.Fatalf("third event = %q", buf[:n])
	}
	pr.close()
	rc.Close()
}

func TestSSEOtherEvents(t *testing.T) {
	e := mustEngine(t, Config{JSONFields: []string{"api_key"}})
	in := ": keep-alive\n\n" +
		"event: status\nid: 7\ndata: {\"note\":\"key " + awsKey + "\",\"api_key\":{\"v\":1},\"n\":3}\n\n" +
		"data: plain " + email + "\ndata: second line\n\n" +
		"retry: 1000\n\n"
	out := wrapChunks(t, e, in, "text/event-stream; charset=utf-8", nil)
	want := ": keep-alive\n\n" +
		"event: status\nid: 7\ndata: {\"note\":\"key [MASKED:aws_access_key]\",\"api_key\":\"[MASKED:json_field]\",\"n\":3}\n\n" +
		"data: plain [MASKED:email]\ndata: second line\n\n" +
		"retry: 1000\n\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

// pipe is an in-memory body the test writes to while the masker reads.
type pipe struct {
	ch  chan []byte
	buf []byte
}

func newPipe() *pipe { return &pipe{ch: make(chan []byte, 16)} }

func (p *pipe) write(s string) { p.ch <- []byte(s) }
func (p *pipe) close()         { close(p.ch) }

func (p *pipe) Read(b []byte) (int, error) {
	if len(p.buf) == 0 {
		c, ok := <-p.ch
		if !ok {
			return 0, errEOF
		}
		p.buf = c
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

func (p *pipe) Close() error { return nil }

// TestSSEResponsesFlushSequence pins how a flush event is numbered in an
// OpenAI Responses stream: it is a copy of the last delta event, so it
// repeats that event's sequence_number; numbers never go down and no event
// after it is renumbered (see docs/masking.md).
func TestSSEResponsesFlushSequence(t *testing.T) {
	e := mustEngine(t, Config{})
	in := "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n" +
		"event: response.output_text.delta\nid: 1\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"write to \"}\n\n" +
		"event: response.output_text.delta\nid: 2\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"jane\"}\n\n" +
		"event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"write to jane\"}\n\n" +
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":4,\"response\":{}}\n\n"
	out := wrapChunks(t, e, in, "text/event-stream", nil)
	var types, deltas []string
	var seqs []float64
	for _, d := range sseEvents(t, out) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(d), &ev); err != nil {
			t.Fatalf("event %q: %v", d, err)
		}
		types = append(types, ev["type"].(string))
		seqs = append(seqs, ev["sequence_number"].(float64))
		s, _ := ev["delta"].(string)
		deltas = append(deltas, s)
	}
	wantTypes := []string{"response.created", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.delta", "response.output_text.done", "response.completed"}
	if !slices.Equal(types, wantTypes) || !slices.Equal(seqs, []float64{0, 1, 2, 2, 3, 4}) ||
		!slices.Equal(deltas, []string{"", "write to ", "", "jane", "", ""}) {
		t.Errorf("events:\n types  %q\n seqs   %v\n deltas %q\n%s", types, seqs, deltas, out)
	}
	// The flush event carries no id: line, so the client's last event id stays that of a real event.
	if strings.Count(out, "id: ") != 2 {
		t.Errorf("id lines changed:\n%s", out)
	}
}
