package mask

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

func TestJSONBody(t *testing.T) {
	e := mustEngine(t, Config{JSONFields: []string{"Password", "token"}})
	in := `{"user":{"email":"` + email + `","PASSWORD":"hunter2","nested":[{"Token":{"a":[1,2]}},{"token":null}]},` +
		`"note":"key: \"` + awsKey + `\"\n","pem":` + jsonStr(pemKey) + `,"n":1.5e3,"ok":true}`
	out, c := readAllWrap(t, e, []byte(in), "application/json; charset=utf-8", "")
	if !json.Valid(out) {
		t.Fatalf("output is not JSON: %s", out)
	}
	want := `{"user":{"email":"[MASKED:email]","PASSWORD":"[MASKED:json_field]","nested":[{"Token":"[MASKED:json_field]"},{"token":null}]},` +
		`"note":"key: \"[MASKED:aws_access_key]\"\n","pem":"[MASKED:private_key]","n":1.5e3,"ok":true}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	if got := c.ByDetector(); got["json_field"] != 2 || got["email"] != 1 || got["aws_access_key"] != 1 || got["private_key"] != 1 {
		t.Errorf("counts = %v", got)
	}
	if c.Form() != "json" || !c.Scanned() {
		t.Errorf("form %q scanned %v", c.Form(), c.Scanned())
	}
}

func TestJSONOverCapAndInvalid(t *testing.T) {
	e := mustEngine(t, Config{JSONMaxBytes: 64})
	big := `{"a":"` + strings.Repeat("x ", 100) + awsKey + `"}`
	out, c := readAllWrap(t, e, []byte(big), "application/json", "")
	if c.Form() != "json-bytes" || !json.Valid(out) || strings.Contains(string(out), awsKey) {
		t.Errorf("over cap: form %q valid %v out %s", c.Form(), json.Valid(out), out)
	}
	out, c = readAllWrap(t, e, []byte(`{"a": `+awsKey), "application/json", "")
	if c.Form() != "json-bytes" || string(out) != `{"a": [MASKED:aws_access_key]` {
		t.Errorf("invalid: form %q out %s", c.Form(), out)
	}
}

func TestForms(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Value: "Lit-Value-123"}}})
	body := []byte("id " + awsKey + " Lit-Value-123\n")
	for _, tt := range []struct {
		ct, form string
		want     string
	}{
		{"text/plain", "bytes", "id [MASKED:aws_access_key] [MASKED:credential]\n"},
		{"", "bytes", "id [MASKED:aws_access_key] [MASKED:credential]\n"},
		{"application/x-ndjson", "json-bytes", "id [MASKED:aws_access_key] [MASKED:credential]\n"},
		{"application/vnd.api+json", "json", "id [MASKED:aws_access_key] [MASKED:credential]\n"},
		{"application/octet-stream; charset=utf-8", "bytes", "id [MASKED:aws_access_key] [MASKED:credential]\n"},
		// Binary types: the literals only, with a same-length fill.
		{"image/png", "binary", "id " + awsKey + " *************\n"},
		{"application/octet-stream", "binary", "id " + awsKey + " *************\n"},
		{"application/grpc", "binary", "id " + awsKey + " *************\n"},
	} {
		out, c := readAllWrap(t, e, body, tt.ct, "")
		if c.Form() != tt.form && !(tt.form == "json" && c.Form() == "json-bytes") || !c.Scanned() {
			t.Errorf("%q: form %q scanned %v", tt.ct, c.Form(), c.Scanned())
		}
		if string(out) != tt.want {
			t.Errorf("%q: got %q, want %q", tt.ct, out, tt.want)
		}
	}
}

func TestCompressed(t *testing.T) {
	e := mustEngine(t, Config{})
	plain := []byte(`{"msg":"` + awsKey + `"}`)
	var gz, zl, br, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(plain)
	gw.Close()
	zw := zlib.NewWriter(&zl)
	zw.Write(plain)
	zw.Close()
	bw := brotli.NewWriter(&br)
	bw.Write(plain)
	bw.Close()
	sw, _ := zstd.NewWriter(&zs)
	sw.Write(plain)
	sw.Close()
	for enc, body := range map[string][]byte{"gzip": gz.Bytes(), "deflate": zl.Bytes(), "br": br.Bytes(), "zstd": zs.Bytes()} {
		out, c := readAllWrap(t, e, body, "application/json", enc)
		if string(out) != `{"msg":"[MASKED:aws_access_key]"}` || !c.Decoded() {
			t.Errorf("%s: %q decoded=%v", enc, out, c.Decoded())
		}
		h := map[string][]string{"Content-Encoding": {enc}, "Content-Length": {"99"}}
		FixHeader(h, c)
		if len(h) != 0 {
			t.Errorf("%s: headers left %v", enc, h)
		}
	}
	// An encoding crewgate cannot decode is refused, never passed through.
	for _, enc := range []string{"compress", "x-custom", "gzip, x-custom"} {
		if _, _, err := e.Wrap(nopCloser(bytes.NewReader(plain)), "application/json", enc); !errors.Is(err, ErrUninspectable) {
			t.Errorf("%s: err %v, want ErrUninspectable", enc, err)
		}
	}
	// A corrupt body is an error, not unmasked text.
	rc, _, _ := e.Wrap(nopCloser(bytes.NewReader([]byte("not gzip"))), "text/plain", "gzip")
	if _, err := rc.Read(make([]byte, 10)); err == nil {
		t.Error("corrupt gzip: no error")
	}
}

func TestWrapResponse(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Name: "openai", Value: "sk-real-credential-value"}}})
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write([]byte("echo: sk-real-credential-value"))
	gw.Close()
	resp := &http.Response{
		Header:        http.Header{"Content-Type": {"text/plain"}, "Content-Encoding": {"gzip"}, "Content-Length": {"50"}},
		ContentLength: 50,
		Body:          io.NopCloser(&gz),
	}
	c, _ := e.WrapResponse(resp)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(out) != "echo: [MASKED:openai]" || resp.ContentLength != -1 || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Length") != "" {
		t.Errorf("out %q, length %d, header %v", out, resp.ContentLength, resp.Header)
	}
	if got := c.ByDetector(); got["openai"] != 1 {
		t.Errorf("counts after close = %v", got)
	}
}

// maskDecoded is the slow path the json form must agree with: the document
// decoded whole, every string value masked as text, every non-null value
// of a json_fields key replaced. Keys are compared in ASCII lower case, as
// the engine does.
func maskDecoded(e *Engine, v any, c *Counts) any {
	switch v := v.(type) {
	case string:
		return string(e.maskString([]byte(v), c))
	case []any:
		for i := range v {
			v[i] = maskDecoded(e, v[i], c)
		}
	case map[string]any:
		// Keys are masked for the literals (the second, literal-only pass).
		m := map[string]any{}
		for k, x := range v {
			mk := string(e.lit.maskString([]byte(k), c))
			if e.fields[asciiLower(k)] && x != nil {
				c.add(JSONFieldName)
				m[mk] = string(e.fieldRp)
				continue
			}
			m[mk] = maskDecoded(e, x, c)
		}
		return m
	}
	return v
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func decodeJSON(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}

// checkJSONForm masks doc in the json form, in one read and in the given
// cuts, and checks the output against the slow path: valid JSON whose
// decoded value (and counts, unless doc may repeat a key) equal those of
// masking the decoded document.
func checkJSONForm(t testing.TB, e *Engine, doc []byte, cuts []int, counts bool) {
	t.Helper()
	out, c := readAllWrap(t, e, doc, "application/json", "")
	if got := wrapChunks(t, e, string(doc), "application/json", cuts); got != string(out) {
		t.Fatalf("split changed the output:\n doc  %s\n one  %s\n cut  %s", doc, out, got)
	}
	if c.Form() != "json" {
		return // deeper than the walker goes; masked as json-bytes
	}
	if !json.Valid(out) {
		t.Fatalf("output is not JSON:\n doc %s\n out %s", doc, out)
	}
	ref := newCounts("", true, false)
	want := maskDecoded(e, decodeJSON(t, doc), ref)
	if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path differs from the slow path:\n doc  %s\n out  %s\n want %#v", doc, out, want)
	}
	if got, want := c.ByDetector(), ref.ByDetector(); counts && !maps.Equal(got, want) {
		t.Fatalf("counts %v, slow path %v\n doc %s", got, want, doc)
	}
	if c.Total() == 0 && !bytes.Equal(out, doc) {
		t.Fatalf("nothing masked but the body changed:\n doc %s\n out %s", doc, out)
	}
}

// jsonAtoms are the pieces random string values are made of: secrets whole,
// secrets split by escapes that decode to nothing special, near misses.
var jsonAtoms = []string{
	"the ", "model ", "42 ", "12.5% ", "\n", "\t", `"`, `\`, "/", "é", "→", "\u2028", "\x01",
	awsKey, githubToken, openaiKey, stripeKey, stripeKey[1:], email, "jane@", "@example.com", visa, ssn, jwtToken, pemKey,
	"AKIA", "IOSFODNN7EXAMPLE", "sk-", "4111 ", "1111 ", "EMP-123456", "hunter2hunter2",
}

// randJSONString returns a JSON string literal with random contents, each
// character written plainly or escaped (\uXXXX, \/, short escapes).
func randJSONString(r *rand.Rand) string {
	var text strings.Builder
	for range r.IntN(6) {
		text.WriteString(jsonAtoms[r.IntN(len(jsonAtoms))])
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, ch := range text.String() {
		switch {
		case ch == '"' || ch == '\\':
			b.WriteString(`\` + string(ch))
		case ch == '\n' && r.IntN(2) == 0:
			b.WriteString(`\n`)
		case ch < 0x20 || r.IntN(10) == 0:
			if ch > 0xffff {
				b.WriteString(string(ch))
			} else {
				fmt.Fprintf(&b, `\u%04x`, ch)
			}
		case ch == '/' && r.IntN(2) == 0:
			b.WriteString(`\/`)
		default:
			b.WriteRune(ch)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func randJSON(r *rand.Rand, b *strings.Builder, depth int) {
	ws := func() {
		if r.IntN(4) == 0 {
			b.WriteString([]string{" ", "\n", "\t", "\r\n  "}[r.IntN(4)])
		}
	}
	ws()
	switch k := r.IntN(10); {
	case k < 2 && depth < 5:
		b.WriteByte('{')
		seen := map[string]bool{} // duplicate keys would make the decoded oracle drop values
		for range r.IntN(4) {
			key := []string{`"a"`, `"token"`, `"Password"`, `"pass\u0077ord"`, `"content"`, randJSONString(r)}[r.IntN(6)]
			var k string
			_ = json.Unmarshal([]byte(key), &k)
			if seen[k] {
				continue
			}
			if len(seen) > 0 {
				b.WriteByte(',')
			}
			seen[k] = true
			ws()
			b.WriteString(key)
			ws()
			b.WriteByte(':')
			randJSON(r, b, depth+1)
		}
		ws()
		b.WriteByte('}')
	case k < 4 && depth < 5:
		b.WriteByte('[')
		for i := range r.IntN(4) {
			if i > 0 {
				b.WriteByte(',')
			}
			randJSON(r, b, depth+1)
		}
		b.WriteByte(']')
	case k == 4:
		b.WriteString([]string{"0", "-1.5e3", "4111111111111111", "1718000000", "true", "false", "null"}[r.IntN(7)])
	default:
		b.WriteString(randJSONString(r))
	}
	ws()
}

// TestJSONFastPathMatchesSlowPath compares the json form, which rewrites
// only the string literals whose text changes, with masking the decoded
// document, on random documents.
func TestJSONFastPathMatchesSlowPath(t *testing.T) {
	e := mustEngine(t, Config{JSONFields: []string{"password", "TOKEN"},
		Custom: []Custom{{Name: "emp", Pattern: `EMP-\d{6}`}}, Literals: []Literal{{Value: "hunter2hunter2"}}})
	r := rand.New(rand.NewPCG(5, 6))
	changed := 0
	for range 3000 {
		var b strings.Builder
		randJSON(r, &b, 0)
		doc := []byte(b.String())
		if !json.Valid(doc) {
			t.Fatalf("generator made invalid JSON: %s", doc)
		}
		checkJSONForm(t, e, doc, randomCuts(r, len(doc)), true)
		if out, _ := readAllWrap(t, e, doc, "application/json", ""); !bytes.Equal(out, doc) {
			changed++
		}
	}
	if changed < 500 {
		t.Errorf("only %d of 3000 documents had anything to mask", changed)
	}
}

// TestJSONCountsOnInvalid checks that a body found not to be JSON after
// some strings matched is counted once, as json-bytes.
func TestJSONCountsOnInvalid(t *testing.T) {
	e := mustEngine(t, Config{JSONFields: []string{"token"}})
	doc := `{"a":"` + awsKey + `","token":"x","b": ` + awsKey
	out, c := readAllWrap(t, e, []byte(doc), "application/json", "")
	if c.Form() != "json-bytes" || strings.Contains(string(out), awsKey) {
		t.Fatalf("form %q out %s", c.Form(), out)
	}
	if got := c.ByDetector(); got["aws_access_key"] != 2 || got[JSONFieldName] != 0 {
		t.Errorf("counts %v, want 2 aws_access_key only", got)
	}
}

// FuzzJSON checks the json form against the slow path on arbitrary
// documents, and that its output does not depend on how the body is read.
func FuzzJSON(f *testing.F) {
	f.Add(`{"a":"`+awsKey+`","token":{"x":[1,2]},"n":null}`, []byte{3, 9, 1})
	f.Add(`["\u0041KIAIOSFODNN7EXAMPLE","\\rk_live_4eC39HqLyjWDarjtT1zdp7dc","jane\u0040example.com"]`, []byte{1, 1, 1, 1})
	f.Add(`{"Pass\u0077ord":"hunter2hunter2","c":"4111 1111 1111 1111\n123-45-6789"}`, []byte{0, 15})
	e := mustEngine(f, Config{JSONFields: []string{"password", "token"},
		Custom: []Custom{{Name: "emp", Pattern: `EMP-\d{6}`}}, Literals: []Literal{{Value: "hunter2hunter2"}}})
	f.Fuzz(func(t *testing.T, doc string, seed []byte) {
		if len(doc) > 4096 {
			return
		}
		cuts := cutsFrom(seed, len(doc))
		if !json.Valid([]byte(doc)) || !utf8.ValidString(doc) {
			one, _ := readAllWrap(t, e, []byte(doc), "application/json", "")
			if got := wrapChunks(t, e, doc, "application/json", cuts); got != string(one) {
				t.Fatalf("split changed the output:\n doc  %q\n one  %q\n cut  %q", doc, one, got)
			}
			return
		}
		checkJSONForm(t, e, []byte(doc), cuts, false)
	})
}
