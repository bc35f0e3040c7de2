package reqbody

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"unicode/utf8"
)

// FuzzDecode feeds random headers and bodies to Decode: it never panics,
// every error wraps ErrUninspectable, and no text or value, nor the view as
// a whole, is ever larger than its bound, whatever the body decodes to.
// More seeds are in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	body, ct := multipartBody(map[string]string{"Content-Transfer-Encoding": "base64", "Content-Type": "application/json"},
		[]byte(base64.StdEncoding.EncodeToString([]byte(`{"q":"\u0044ROP"}`))))
	f.Add(ct, "", body)
	f.Add("application/json", "gzip", gz([]byte(`{"q":"DROP\u0020TABLE","a":[1,"\ud83d\ude00"]}`)))
	f.Add("application/x-www-form-urlencoded", "deflate", zl([]byte("q=%44ROP+TABLE&x=%zz")))
	f.Add("text/plain; charset=utf-16", "br", br(utf16le("DROP TABLE", true)))
	f.Add("application/soap+xml", "zstd", zs([]byte(`<a b="&amp;">DROP&#32;TABLE</a>`)))
	f.Add("", "gzip, br", br(gz(make([]byte, 64<<10))))
	f.Add("multipart/mixed; boundary=b", "", []byte("--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nDROP=20TABLE\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, ct, ce string, body []byte) {
		const limit = 4 << 10
		h := http.Header{}
		if ct != "" {
			h["Content-Type"] = []string{ct}
		}
		if ce != "" {
			h["Content-Encoding"] = []string{ce}
		}
		v, err := Decode(h, body, limit)
		if err != nil && (!errors.Is(err, ErrUninspectable) || err.Error() == "") {
			t.Fatalf("error %q (%T) does not wrap ErrUninspectable", err, err)
		}
		if v == nil || v.NumTexts() == 0 {
			t.Fatal("no view")
		}
		checkBounds(t, v, limit)
	})
}

// FuzzJSONString checks the lexical JSON scan against encoding/json: for
// every string encoding/json accepts, the scan finds where it ends and
// unescapes it the same way.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`DROP\u0020TABLE`, `\ud83d\ude00`, `\ud800`, `\ud800\u0041`, `a\\\"b`, `\/\b\f\n\r\t`, `\uDBFF\uDFFF`, `\u00e9`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := `"` + s + `"`
		var want string
		if !utf8.ValidString(s) || json.Unmarshal([]byte(lit), &want) != nil {
			return
		}
		if end := closingQuote([]byte(lit), 1); end != len(lit)-1 {
			t.Fatalf("%s: the string ends at %d, not %d", lit, end, len(lit)-1)
		}
		if got := string(appendJSONUnescaped(nil, []byte(s))); got != want {
			t.Fatalf("%s: unescaped %q, encoding/json %q", lit, got, want)
		}
	})
}

// FuzzFormField checks form decoding against net/url wherever net/url
// accepts the field.
func FuzzFormField(f *testing.F) {
	for _, s := range []string{"DROP+TABLE", "%44ROP%20TABLE", "%zz", "a%2", "%e2%82%ac", "+%2B+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := url.QueryUnescape(s)
		if err != nil {
			return
		}
		if got := string(appendFormUnescaped(nil, []byte(s))); got != want {
			t.Fatalf("%q: decoded %q, net/url %q", s, got, want)
		}
	})
}
