package mask

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

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
	e := mustEngine(t, Config{})
	body := []byte("id " + awsKey + "\n")
	for _, tt := range []struct {
		ct, form string
		scanned  bool
	}{
		{"text/plain", "bytes", true},
		{"", "bytes", true},
		{"application/x-ndjson", "json-bytes", true},
		{"application/vnd.api+json", "json", true},
		{"image/png", "none", false},
		{"application/octet-stream", "none", false},
	} {
		out, c := readAllWrap(t, e, body, tt.ct, "")
		if c.Form() != tt.form && !(tt.form == "json" && c.Form() == "json-bytes") || c.Scanned() != tt.scanned {
			t.Errorf("%q: form %q scanned %v", tt.ct, c.Form(), c.Scanned())
		}
		if masked := !bytes.Equal(out, body); masked != tt.scanned {
			t.Errorf("%q: masked=%v", tt.ct, masked)
		}
		if c.Scanned() && c.Total() != 1 || !c.Scanned() && c.Total() != 0 {
			t.Errorf("%q: total %d", tt.ct, c.Total())
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
	// An encoding crewgate cannot decode passes through, reported as not scanned.
	out, c := readAllWrap(t, e, plain, "application/json", "compress")
	if !bytes.Equal(out, plain) || c.Scanned() || c.Decoded() {
		t.Errorf("unknown encoding: %q scanned=%v", out, c.Scanned())
	}
	h := map[string][]string{"Content-Encoding": {"compress"}, "Content-Length": {"99"}}
	FixHeader(h, c)
	if len(h) != 2 {
		t.Errorf("headers changed for an unscanned body: %v", h)
	}
	// A corrupt body is an error, not unmasked text.
	rc, _ := e.Wrap(nopCloser(bytes.NewReader([]byte("not gzip"))), "text/plain", "gzip")
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
	c := e.WrapResponse(resp)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(out) != "echo: [MASKED:openai]" || resp.ContentLength != -1 || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Length") != "" {
		t.Errorf("out %q, length %d, header %v", out, resp.ContentLength, resp.Header)
	}
	if got := c.ByDetector(); got["openai"] != 1 {
		t.Errorf("counts after close = %v", got)
	}
}
