package reqbody

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/textproto"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"

	"github.com/crewgate/crewgate/internal/testenv"
)

// dropTable is DESIGN.md's example body rule.
var dropTable = regexp.MustCompile(`(?i)\bdrop\s+table\b`)

const limit8 = 8 << 20

// matched says which text or value of v re matches, "" when none does.
func matched(v *View, re *regexp.Regexp) string {
	for i := range v.NumTexts() {
		if re.Match(v.Text(i)) {
			return v.TextName(i)
		}
	}
	for i := range v.NumValues() {
		if re.Match(v.Value(i)) {
			return v.ValueKind(i).String()
		}
	}
	return ""
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func gz(b []byte) []byte { return testenv.Compress("gzip", b) }

func zl(b []byte) []byte { return testenv.Compress("deflate", b) }

func rawDeflate(b []byte) []byte { return testenv.Compress("raw-deflate", b) }

func br(b []byte) []byte { return testenv.Compress("br", b) }

func zs(b []byte) []byte { return testenv.Compress("zstd", b) }

func utf16le(s string, bom bool) []byte { return testenv.UTF16(s, unicode.LittleEndian, bom) }

func utf16be(s string) []byte { return testenv.UTF16(s, unicode.BigEndian, false) }

func utf32le(s string, bom bool) []byte {
	p := utf32.IgnoreBOM
	if bom {
		p = utf32.UseBOM
	}
	b, _ := utf32.UTF32(utf32.LittleEndian, p).NewEncoder().Bytes([]byte(s))
	return b
}

// multipartBody builds a multipart/form-data body with one part per
// (headers, body) pair, and its Content-Type.
func multipartBody(parts ...any) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(parts); i += 2 {
		h := textproto.MIMEHeader{"Content-Disposition": {fmt.Sprintf(`form-data; name="f%d"`, i)}}
		for k, v := range parts[i].(map[string]string) {
			h.Set(k, v)
		}
		p, _ := w.CreatePart(h)
		p.Write(parts[i+1].([]byte))
	}
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

func qp(s string) []byte {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	w.Write([]byte(s))
	w.Close()
	return buf.Bytes()
}

// Each way of hiding the words from a raw match is caught by the view, and
// the same encoding of clean text is read without a match or an error.
func TestDecodeCatchesEncodedWords(t *testing.T) {
	words, clean := "please DROP TABLE users now", "please summarise the quarterly drops in revenue by table"
	pad := strings.Repeat("lorem ipsum dolor sit amet ", (1<<20)/27+10) // past the old 1 MiB prefix
	prose := words8k()                                                  // so that br and zstd entropy-code their literals
	type enc func(string) (http.Header, []byte)
	tests := []struct {
		name string
		enc  enc
		want string // the reading or value kind that matches
	}{
		{`JSON \u0020`, func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/json"), []byte(`{"q":"` + strings.ReplaceAll(s, " ", `\u0020`) + `"}`)
		}, "JSON string"},
		{`JSON \u0044ROP`, func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/json"), []byte(`{"q":"` + strings.ReplaceAll(strings.ReplaceAll(s, "DROP", `\u0044ROP`), "drops", `\u0064rops`) + `"}`)
		}, "JSON string"},
		{`JSON key escaped, +json type`, func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/vnd.api+json"), []byte(`{"` + strings.ReplaceAll(s, " ", `\t`) + `":1}`)
		}, "JSON string"},
		{"NDJSON", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/x-ndjson"), []byte("{\"a\":1}\n{\"q\":\"" + strings.ReplaceAll(s, " ", `\n`) + "\"}\n")
		}, "JSON string"},
		{"JSON labelled text/plain is sniffed", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "text/plain"), []byte(` [1, "` + strings.ReplaceAll(s, " ", `\u0020`) + `"]`)
		}, "JSON string"},
		{"JSON that encoding/json rejects (NaN, comment)", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/json"), []byte(`{"n": NaN, /* c */ "q":"` + strings.ReplaceAll(s, " ", `\u0020`) + `",}`)
		}, "JSON string"},
		{"gzip", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "gzip"), gz([]byte(s))
		}, "body"},
		{"x-gzip, upper case", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "X-GZIP"), gz([]byte(s))
		}, "body"},
		{"deflate (zlib)", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "deflate"), zl([]byte(s))
		}, "body"},
		{"deflate (raw)", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "deflate"), rawDeflate([]byte(s))
		}, "body"},
		{"br", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "br"), br([]byte(prose + s))
		}, "body"},
		{"zstd", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "zstd"), zs([]byte(prose + s))
		}, "body"},
		{"gzip, br stacked", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "gzip, br"), br(gz([]byte(s)))
		}, "body"},
		{"gzip then br on two header lines, identity between", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "gzip", "Content-Encoding", "identity, br"), br(gz([]byte(s)))
		}, "body"},
		{"zstd of gzipped JSON with escapes", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "gzip,zstd", "Content-Type", "application/json"),
				zs(gz([]byte(`{"q":"` + strings.ReplaceAll(s, " ", `\u0020`) + `"}`)))
		}, "JSON string"},
		{"form DROP+TABLE", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/x-www-form-urlencoded"), []byte("a=1&q=" + strings.ReplaceAll(s, " ", "+"))
		}, "form field"},
		{"form %44ROP", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
				[]byte("q=" + strings.ReplaceAll(strings.ReplaceAll(s, "DROP", "%44ROP"), " ", "%20"))
		}, "form field"},
		{"form key, malformed escape after", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/x-www-form-urlencoded"), []byte(strings.ReplaceAll(s, " ", "%20") + "%zz=1")
		}, "form field"},
		{"multipart base64 part", func(s string) (http.Header, []byte) {
			b := base64.StdEncoding.EncodeToString([]byte(s))
			body, ct := multipartBody(map[string]string{"Content-Transfer-Encoding": "base64"}, []byte(b[:7]+"\r\n"+b[7:]))
			return hdr("Content-Type", ct), body
		}, "multipart part"},
		{"multipart quoted-printable part", func(s string) (http.Header, []byte) {
			body, ct := multipartBody(map[string]string{"Content-Transfer-Encoding": "Quoted-Printable"},
				[]byte(strings.ReplaceAll(string(qp(s)), " ", "=20")))
			return hdr("Content-Type", ct), body
		}, "multipart part"},
		{"multipart part of UTF-16LE JSON in base64", func(s string) (http.Header, []byte) {
			inner := utf16le(`{"q":"`+strings.ReplaceAll(s, " ", `\u0020`)+`"}`, false)
			body, ct := multipartBody(map[string]string{"Content-Transfer-Encoding": "base64",
				"Content-Type": "application/json; charset=utf-16le"}, []byte(base64.StdEncoding.EncodeToString(inner)))
			return hdr("Content-Type", ct), body
		}, "JSON string"},
		{"nested multipart", func(s string) (http.Header, []byte) {
			inner, ict := multipartBody(map[string]string{"Content-Transfer-Encoding": "base64"}, []byte(base64.StdEncoding.EncodeToString([]byte(s))))
			body, ct := multipartBody(map[string]string{"Content-Type": strings.Replace(ict, "form-data", "mixed", 1)}, inner)
			return hdr("Content-Type", ct), body
		}, "multipart part"},
		{"UTF-16LE with BOM", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "text/plain"), utf16le(s, true)
		}, "body as UTF-16LE"},
		{"UTF-16BE by charset", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "text/plain; charset=UTF-16BE"), utf16be(s)
		}, "body as UTF-16BE"},
		{"utf-16 without BOM read both ways", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", `text/plain; charset="utf-16"`), utf16le(s, false)
		}, "body as UTF-16LE"},
		{"UTF-32LE with BOM", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "text/plain"), utf32le(s, true)
		}, "body as UTF-32LE"},
		{"UTF-16LE JSON without label or BOM (RFC 4627)", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/json"), utf16le(`{"q":"`+strings.ReplaceAll(s, " ", `\u0020`)+`"}`, false)
		}, "JSON string"},
		{"charset Go cannot parse (repeated parameter)", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "text/plain; charset=utf-16le; charset=utf-16le"), utf16le(s, false)
		}, "body as UTF-16LE"},
		{"XML entity", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "application/soap+xml"), []byte(`<q a="x">` + strings.ReplaceAll(s, " ", "&#32;") + `</q>`)
		}, "XML text"},
		{"words after 1 MiB within 8 MiB", func(s string) (http.Header, []byte) {
			return hdr("Content-Type", "text/plain"), []byte(pad + s)
		}, "body"},
		{"gzip words after 1 MiB decoded", func(s string) (http.Header, []byte) {
			return hdr("Content-Encoding", "gzip", "Content-Type", "application/json"),
				gz([]byte(`{"pad":"` + pad + `","q":"` + strings.ReplaceAll(s, " ", `\u0020`) + `"}`))
		}, "JSON string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, raw := tt.enc(words)
			if dropTable.Match(raw[:min(len(raw), 1<<20)]) { // what rules saw before: a 1 MiB prefix
				t.Fatalf("the raw body already matches: the case shows nothing")
			}
			v, err := Decode(h, raw, limit8)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := matched(v, dropTable); got != tt.want {
				t.Errorf("matched in %q, want %q (%d texts, %d values)", got, tt.want, v.NumTexts(), v.NumValues())
			}
			h, raw = tt.enc(clean)
			v, err = Decode(h, raw, limit8)
			if err != nil {
				t.Fatalf("Decode of the clean body: %v", err)
			}
			if got := matched(v, dropTable); got != "" {
				t.Errorf("the clean body matches in %q", got)
			}
		})
	}
}

// words8k is 8 KiB of made-up text, the same each run: words of a small
// vocabulary in a random order, which br and zstd compress as real prose.
func words8k() string {
	vocab := strings.Fields("the of and a to in is you that it he was for on are as with his they at be this have from " +
		"or one had by word but not what all were we when your can said there use an each which she do how their if")
	var b strings.Builder
	x := uint32(1)
	for b.Len() < 8<<10 {
		x = x*1664525 + 1013904223
		b.WriteString(vocab[x>>16%uint32(len(vocab))])
		b.WriteByte(' ')
	}
	return b.String()
}

// A legitimate body reads as itself: no error, the body as the first text,
// and the values a rule on them expects.
func TestDecodeLegitimateBodies(t *testing.T) {
	v, err := Decode(hdr("Content-Type", "application/json"), []byte(`{"model":"gpt","messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00"}]}`), limit8)
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for i := range v.NumValues() {
		vals = append(vals, string(v.Value(i)))
	}
	// The last value is the whole text with its escapes decoded.
	if got, want := strings.Join(vals, "|"), `model|gpt|messages|role|user|content|café 😀|{"model":"gpt","messages":[{"role":"user","content":"café 😀"}]}`; got != want {
		t.Errorf("values %q, want %q", got, want)
	}
	if v.NumTexts() != 1 || v.TextName(0) != "body" {
		t.Errorf("texts: %d, %q", v.NumTexts(), v.TextName(0))
	}

	// An empty body is one empty text; no Content-Type and plain text are
	// read as they are.
	for _, h := range []http.Header{{}, hdr("Content-Type", "text/plain; charset=iso-8859-1")} {
		v, err := Decode(h, nil, limit8)
		if err != nil || v.NumTexts() != 1 || len(v.Text(0)) != 0 || v.NumValues() != 0 {
			t.Errorf("empty body: %v, %d texts, %d values", err, v.NumTexts(), v.NumValues())
		}
	}
	// The body as sent is the first text, shared, not copied.
	raw := []byte("hello")
	v, _ = Decode(hdr("Content-Type", "text/plain"), raw, limit8)
	if &v.Text(0)[0] != &raw[0] {
		t.Error("identity body was copied")
	}
	// Empty values are left out, so '^$' does not match every JSON body.
	v, _ = Decode(hdr("Content-Type", "application/json"), []byte(`{"":""}`), limit8)
	if matched(v, regexp.MustCompile(`^$`)) != "" {
		t.Error("an empty JSON string matched '^$'")
	}
	// A binary body is one text.
	v, err = Decode(hdr("Content-Type", "image/png"), []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), limit8)
	if err != nil || v.NumTexts() != 1 || v.NumValues() != 0 {
		t.Errorf("binary body: %v, %d texts, %d values", err, v.NumTexts(), v.NumValues())
	}
	// A multipart upload with a plain file part: its name, filename and body.
	body, ct := multipartBody(map[string]string{"Content-Disposition": `form-data; name="file"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt`}, []byte("my résumé"))
	v, err = Decode(hdr("Content-Type", ct), body, limit8)
	if err != nil {
		t.Fatal(err)
	}
	vals = vals[:0]
	for i := range v.NumValues() {
		vals = append(vals, v.ValueKind(i).String()+"="+string(v.Value(i)))
	}
	if got, want := strings.Join(vals, "|"), "multipart part name=file|multipart part name=résumé.txt|multipart part=my résumé"; got != want {
		t.Errorf("values %q, want %q", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 2<<10)
	trailing := append(zl([]byte("ok")), []byte("&q=DROP+TABLE")...)
	noEnd, ct := multipartBody(map[string]string{}, []byte("x"))
	noEnd = noEnd[:len(noEnd)-10]
	tests := []struct {
		name string
		h    http.Header
		raw  []byte
		want string
	}{
		{"unknown Content-Encoding", hdr("Content-Encoding", "x-custom"), []byte("x"), "unknown Content-Encoding x-custom"},
		{"unknown coding in a stack", hdr("Content-Encoding", "gzip, compress"), gz([]byte("x")), "unknown Content-Encoding compress"},
		{"control characters are quoted", hdr("Content-Encoding", "x\x1b[31m"), []byte("x"), `unknown Content-Encoding "x\x1b[31m"`},
		{"corrupt gzip", hdr("Content-Encoding", "gzip"), []byte("not gzip at all"), "gzip body cannot be decoded: gzip: invalid header"},
		{"truncated zstd", hdr("Content-Encoding", "zstd"), zs(big)[:10], "zstd body cannot be decoded"},
		{"gzip after gzip mislabelled", hdr("Content-Encoding", "gzip, gzip"), gz([]byte("x")), "gzip, gzip body cannot be decoded"},
		{"data after a zlib stream", hdr("Content-Encoding", "deflate"), trailing, "deflate body cannot be decoded: data after the end of the deflate stream"},
		{"data after a brotli stream", hdr("Content-Encoding", "br"), append(br([]byte("ok")), 'x'), "br body cannot be decoded"},
		{"data after a gzip member", hdr("Content-Encoding", "gzip"), append(gz([]byte("ok")), "DROP TABLE"...), "gzip body cannot be decoded"},
		{"raw body over the limit", hdr(), bytes.Repeat([]byte("a"), 1<<10+1), "body larger than 1 KiB"},
		{"decoded body over the limit", hdr("Content-Encoding", "gzip"), gz(big), "gzip body larger than 1 KiB after decoding"},
		{"stacked decoded body over the limit", hdr("Content-Encoding", "gzip, br"), br(gz(big)), "gzip, br body larger than 1 KiB after decoding"},
		{"unknown charset", hdr("Content-Type", "text/plain; charset=utf-7"), []byte("+AEQ-ROP TABLE"), "unknown charset utf-7"},
		{"UTF-16 conversion over the limit", hdr("Content-Type", "text/plain; charset=utf-16le"), bytes.Repeat([]byte("\xac\x20"), 500), "body larger than 1 KiB as UTF-8 (read as UTF-16LE)"},
		{"multipart without boundary", hdr("Content-Type", "multipart/form-data"), []byte("--x\r\n\r\nDROP TABLE\r\n--x--"), "multipart body without a boundary parameter"},
		{"multipart without its end", hdr("Content-Type", ct), noEnd, "multipart body cannot be parsed: unexpected EOF"},
		{"multipart unknown transfer encoding", hdr("Content-Type", "multipart/mixed; boundary=b"),
			[]byte("--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n"), "multipart part with unknown Content-Transfer-Encoding x-uuencode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const limit = 1 << 10
			v, err := Decode(tt.h, tt.raw, limit)
			if !errors.Is(err, ErrUninspectable) {
				t.Fatalf("err = %v, want ErrUninspectable", err)
			}
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Reason, tt.want) {
				t.Errorf("reason %q, want it to start with %q", err, tt.want)
			}
			if v == nil || v.NumTexts() == 0 {
				t.Fatal("no partial view")
			}
			checkBounds(t, v, limit)
		})
	}
}

// The view as a whole stays within ViewFactor times the limit: the value
// that would pass it is dropped, and the error says so.
func TestDecodeBudget(t *testing.T) {
	v := &View{limit: 8, budget: 4 * 8}
	var err error
	for i := 0; err == nil; i++ {
		err = v.addValue([]byte("abcd"), JSONString)
		if i > 10 {
			t.Fatal("no error past the budget")
		}
	}
	if !errors.Is(err, ErrUninspectable) || err.Error() != "body decodes to more than 32 bytes of text and values (4 times the 8 bytes limit)" {
		t.Errorf("err = %v", err)
	}
	if v.Size() > 32 || v.NumValues() != 4 || len(v.values) != 16 {
		t.Errorf("size %d, %d values, %d bytes", v.Size(), v.NumValues(), len(v.values))
	}
	if err := v.addValue([]byte("123456789"), JSONString); !errors.Is(err, ErrUninspectable) {
		t.Errorf("a value over the limit: %v", err)
	}
}

func TestDecodeNestedTooDeep(t *testing.T) {
	deep, ct := []byte("DROP TABLE"), "text/plain"
	for range maxDepth + 1 {
		deep, ct = multipartBody(map[string]string{"Content-Type": ct}, deep)
		ct = strings.Replace(ct, "form-data", "mixed", 1)
	}
	_, err := Decode(hdr("Content-Type", ct), deep, limit8)
	if want := fmt.Sprintf("multipart body nested more than %d deep", maxDepth); err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

// checkBounds checks what the package promises of every view.
func checkBounds(t *testing.T, v *View, limit int) {
	t.Helper()
	size := 0
	for i := range v.NumTexts() {
		if n := len(v.Text(i)); n > limit {
			t.Fatalf("text %d (%s) holds %d bytes, over the limit %d", i, v.TextName(i), n, limit)
		}
		size += len(v.Text(i))
	}
	for i := range v.NumValues() {
		if n := len(v.Value(i)); n > limit || n == 0 {
			t.Fatalf("value %d holds %d bytes (limit %d)", i, n, limit)
		}
		if v.ValueKind(i) == 0 {
			t.Fatalf("value %d has no kind", i)
		}
		size += len(v.Value(i)) + 4
	}
	if size != v.Size() || size > ViewFactor*limit {
		t.Fatalf("Size() = %d, counted %d, bound %d", v.Size(), size, ViewFactor*limit)
	}
}

// A decompression bomb costs the limit, not its decoded size.
func TestDecodeBomb(t *testing.T) {
	const decoded, limit = 64 << 20, 1 << 20
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range decoded / len(zeros) {
		w.Write(zeros)
	}
	w.Close()
	bomb := buf.Bytes()
	h := hdr("Content-Encoding", "gzip")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v, err := Decode(h, bomb, limit)
	runtime.ReadMemStats(&after)
	if err == nil || err.Error() != "gzip body larger than 1 MiB after decoding" {
		t.Fatalf("err = %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*limit {
		t.Errorf("a %d-byte bomb of %d MiB allocated %d bytes, want at most %d", len(bomb), decoded>>20, got, 4*limit)
	}
	if v.NumTexts() != 1 || len(v.Text(0)) != limit {
		t.Errorf("partial view: %d texts, %d bytes", v.NumTexts(), len(v.Text(0)))
	}
}

func TestEncodings(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "identity": "", "gzip": "gzip", " GZip , br ": "gzip br", "x-gzip,identity,zstd": "x-gzip zstd", "deflate,": "deflate",
	} {
		got, err := Encodings(in)
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("Encodings(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Encodings("gzip, lzma"); !errors.Is(err, ErrUninspectable) {
		t.Errorf("lzma: %v", err)
	}
	if _, err := NewDecoder("lzma", strings.NewReader("")); err == nil {
		t.Error("NewDecoder of an unknown coding: no error")
	}
	// NewDecoder decodes what it is given and nothing more.
	for _, c := range []struct {
		coding string
		b      []byte
	}{{"gzip", gz([]byte("hi"))}, {"deflate", zl([]byte("hi"))}, {"deflate", rawDeflate([]byte("hi"))}, {"br", br([]byte("hi"))}, {"zstd", zs([]byte("hi"))}} {
		d, err := NewDecoder(c.coding, bytes.NewReader(c.b))
		if err != nil {
			t.Fatalf("%s: %v", c.coding, err)
		}
		out, err := io.ReadAll(d)
		if err != nil || string(out) != "hi" || d.Close() != nil {
			t.Errorf("%s: %q, %v", c.coding, out, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int]string{1: "1 byte", 100: "100 bytes", 1 << 10: "1 KiB", 8 << 20: "8 MiB", 3 << 19: "1.5 MiB", 1 << 30: "1 GiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
