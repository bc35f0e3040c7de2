package mask

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The benchmark corpus is generated, deterministically, so the figures in
// docs/performance.md can be reproduced: LLM-like JSON (chat completions
// whose content is English prose, Markdown and code, with ids, timestamps
// and token counts) with about one secret or address per 16 KiB.

var words = strings.Fields(`the a of to and in is that for it as with was on be by this are
from at or an have not which but can all will one has were when there their more also
model response token request function value return error string number service data user
system context prompt output input stream agent crew task tool result summary analysis
however therefore because although meanwhile specifically quickly carefully approximately`)

var codeLines = []string{
	"```go\nfunc add(a, b int) int { return a + b }\n```",
	"```python\nfor i, row in enumerate(rows):\n    print(i, row[\"name\"])\n```",
	"| region | p50 | p99 |\n|---|---|---|\n| eu-west-1 | 12.5 | 48.0 |",
}

var benchSecrets = []string{awsKey, githubToken, email, visa, jwtToken, openaiKey, ssn}

// genLLMCorpus returns about n bytes of newline-separated chat completion objects.
func genLLMCorpus(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	var out bytes.Buffer
	id := 0
	next := 16 << 10
	for out.Len() < n {
		var text strings.Builder
		for text.Len() < 400+r.IntN(1600) {
			switch k := r.IntN(40); {
			case k == 0:
				text.WriteString(codeLines[r.IntN(len(codeLines))])
			case k < 3:
				fmt.Fprintf(&text, "%d.%d%% ", r.IntN(100), r.IntN(10))
			default:
				text.WriteString(words[r.IntN(len(words))])
			}
			if r.IntN(12) == 0 {
				text.WriteString(". ")
			} else {
				text.WriteByte(' ')
			}
			if out.Len()+text.Len() > next {
				text.WriteString(benchSecrets[r.IntN(len(benchSecrets))] + " ")
				next += 16 << 10
			}
		}
		obj := map[string]any{
			"id": fmt.Sprintf("chatcmpl-%08x", id), "object": "chat.completion", "created": 1718000000 + id,
			"model": "gpt-4o-2024-08-06",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": text.String()}}},
			"usage": map[string]any{"prompt_tokens": 100 + r.IntN(900), "completion_tokens": text.Len() / 4},
		}
		b, _ := json.Marshal(obj)
		out.Write(b)
		out.WriteByte('\n')
		id++
	}
	return out.Bytes()
}

var (
	benchCorpus = genLLMCorpus(4<<20, 1)
	naiveRes    = func() []*regexp.Regexp {
		var res []*regexp.Regexp
		for _, p := range naivePatterns {
			res = append(res, regexp.MustCompile(p))
		}
		return res
	}()
)

func streamThrough(e *Engine, data []byte, ct string) int {
	rc, _, _ := e.Wrap(io.NopCloser(bytes.NewReader(data)), ct, "")
	n, _ := io.Copy(io.Discard, rc)
	rc.Close()
	return int(n)
}

// BenchmarkMask measures the default set on the corpus as a byte stream
// (NDJSON) and as one JSON document, and reports in the same run the
// throughput of the naive baseline and the ratio to it.
func BenchmarkMask(b *testing.B) {
	// As a session masks: the default set and one injected credential.
	e := mustEngine(b, Config{Literals: []Literal{{Value: "sk-real-upstream-secret-0123456789"}}})
	doc := append(append([]byte("["), bytes.ReplaceAll(bytes.TrimSpace(benchCorpus), []byte("\n"), []byte(","))...), ']')
	for _, bc := range []struct {
		name, ct string
		data     []byte
	}{
		{"ndjson", "application/x-ndjson", benchCorpus},
		{"text", "text/plain", benchCorpus},
		{"json", "application/json", doc},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			for b.Loop() {
				streamThrough(e, bc.data, bc.ct)
			}
			mbs := float64(len(bc.data)) * float64(b.N) / b.Elapsed().Seconds() / 1e6
			start := time.Now()
			naiveMask(naiveRes, bc.data)
			naive := float64(len(bc.data)) / time.Since(start).Seconds() / 1e6
			b.ReportMetric(naive, "naive-MB/s")
			b.ReportMetric(mbs/naive, "x-naive")
		})
	}
	// The byte stream without the gitleaks rules, in the same process: the
	// ratio to ndjson is what the rules cost.
	bi := mustEngine(b, Config{Detectors: builtinNames})
	b.Run("builtin-ndjson", func(b *testing.B) {
		b.SetBytes(int64(len(benchCorpus)))
		for b.Loop() {
			streamThrough(bi, benchCorpus, "application/x-ndjson")
		}
	})
}

// BenchmarkNaive is the baseline alone: one stdlib regexp per detector over the whole buffer.
func BenchmarkNaive(b *testing.B) {
	b.SetBytes(int64(len(benchCorpus)))
	for b.Loop() {
		naiveMask(naiveRes, benchCorpus)
	}
}

// sseBody builds an OpenAI chat stream of n events of a few words each.
func sseBody(n int) []byte {
	r := rand.New(rand.NewPCG(7, 7))
	var b bytes.Buffer
	for i := range n {
		var tok strings.Builder
		for range 1 + r.IntN(4) {
			tok.WriteString(" " + words[r.IntN(len(words))])
		}
		if i%500 == 499 {
			tok.WriteString(" " + awsKey)
		}
		fmt.Fprintf(&b, `data: {"id":"chatcmpl-A1b2C3","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}`+"\n\n", jsonStr(tok.String()))
	}
	b.WriteString(`data: {"id":"chatcmpl-A1b2C3","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n")
	return b.Bytes()
}

// BenchmarkSSEEvent reports the masker's cost per SSE event, against
// passing the same stream through a plain reader.
func BenchmarkSSEEvent(b *testing.B) {
	const events = 2000
	body := sseBody(events)
	e := mustEngine(b, Config{})
	b.Run("masked", func(b *testing.B) {
		for b.Loop() {
			streamThrough(e, body, "text/event-stream")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events)/1e3, "µs/event")
	})
	// The same without the gitleaks rules, in the same process: the ratio of
	// the two is what the rules cost per event.
	bi := mustEngine(b, Config{Detectors: builtinNames})
	b.Run("builtin", func(b *testing.B) {
		for b.Loop() {
			streamThrough(bi, body, "text/event-stream")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events)/1e3, "µs/event")
	})
	b.Run("passthrough", func(b *testing.B) {
		for b.Loop() {
			io.Copy(io.Discard, bytes.NewReader(body))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events)/1e3, "µs/event")
	})
}

// BenchmarkTTFE measures the time from wrapping a stream to reading its
// first event, when that event holds no possible secret prefix.
func BenchmarkTTFE(b *testing.B) {
	e := mustEngine(b, Config{})
	first := []byte(`data: {"id":"chatcmpl-A1b2C3","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"Sure! "},"finish_reason":null}]}` + "\n\n")
	buf := make([]byte, 4096)
	for b.Loop() {
		rc, _, _ := e.Wrap(io.NopCloser(bytes.NewReader(first)), "text/event-stream", "")
		if n, _ := rc.Read(buf); n != len(first) {
			b.Fatalf("first read %d bytes", n)
		}
		rc.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/first-event")
}

// BenchmarkNew is the engine's start-up cost with the default set.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(Config{Custom: []Custom{{Name: "emp", Pattern: `EMP-\d{6}`}}}); err != nil {
			b.Fatal(err)
		}
	}
}
