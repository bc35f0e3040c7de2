package reqbody

import (
	"fmt"
	"strings"
	"testing"
)

// chatJSON is an OpenAI-style chat request of about n bytes, a few of its
// strings escaped.
func chatJSON(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"gpt-4o","messages":[`)
	for i := 0; b.Len() < n-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"role":"user","content":"Summarise the quarterly drops in revenue for region %d.\nKeep it short \u2014 thanks."}`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkDecode measures building the view: a 64 KiB JSON body, and a
// gzip body that decodes to 1 MiB (of text, and of JSON). Bytes are the
// decoded size.
func BenchmarkDecode(b *testing.B) {
	text := []byte(strings.Repeat(words8k(), 128)[:1<<20])
	js := chatJSON(1 << 20)
	for _, bc := range []struct {
		name    string
		h       map[string][]string
		raw     []byte
		decoded int
	}{
		{"json-64KiB", hdr("Content-Type", "application/json"), chatJSON(64 << 10), 64 << 10},
		{"gzip-text-1MiB", hdr("Content-Type", "text/plain", "Content-Encoding", "gzip"), gz(text), len(text)},
		{"gzip-json-1MiB", hdr("Content-Type", "application/json", "Content-Encoding", "gzip"), gz(js), len(js)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, err := Decode(bc.h, bc.raw, limit8); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(bc.decoded))
			b.ReportAllocs()
			for b.Loop() {
				Decode(bc.h, bc.raw, limit8)
			}
		})
	}
}
