package policy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/text/encoding/unicode"

	"github.com/crewgate/crewgate/internal/reqbody"
	"github.com/crewgate/crewgate/internal/testenv"
)

const dropTableRule = `rules: [{name: no-drop-table, action: deny, match: {body: '(?i)\bdrop\s+table\b'}}]`

func multipartWith(cte string, body []byte) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.SetBoundary("crewgate-test-boundary")
	p, _ := w.CreatePart(textproto.MIMEHeader{"Content-Disposition": {`form-data; name="q"`}, "Content-Transfer-Encoding": {cte}})
	p.Write(body)
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

// Every encoding DESIGN.md lists: what a rule saw before (the raw bytes, a
// 1 MiB prefix) misses the words; the decoded view catches them, and the
// same encoding of innocent text is allowed.
func TestPolicyBodyEncodings(t *testing.T) {
	isolate(t)
	p := mustCompile(t, dropTableRule)
	filler := strings.Repeat("the crew reads the quarterly report and writes a short summary of it. ", 40)
	pad := strings.Repeat("x", 1<<20)
	u16le, _ := unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewEncoder().String("please DROP TABLE users")
	u16leClean, _ := unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewEncoder().String("please drop the tables")
	u16be, _ := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().String("please DROP TABLE users")
	u16beClean, _ := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().String("please drop the tables")
	b64, b64ct := multipartWith("base64", []byte(base64.StdEncoding.EncodeToString([]byte("DROP TABLE users"))))
	b64Clean, _ := multipartWith("base64", []byte(base64.StdEncoding.EncodeToString([]byte("DROPS in TABLEs"))))
	qp, qpct := multipartWith("quoted-printable", []byte("DROP=20TABLE users"))
	qpClean, _ := multipartWith("quoted-printable", []byte("DROP=20TABLES"))
	tests := []struct {
		name        string
		h           []string // header name, value, ...
		body, clean []byte
	}{
		{`JSON DROP\u0020TABLE`, []string{"Content-Type", "application/json"}, []byte(`{"q":"DROP\u0020TABLE t"}`), []byte(`{"q":"DROP\u0020TABLES"}`)},
		{`JSON \u0044ROP`, []string{"Content-Type", "application/json"}, []byte(`{"q":"\u0044ROP TABLE t"}`), []byte(`{"q":"\u0044ROPS TABLE"}`)},
		{"gzip", []string{"Content-Encoding", "gzip"}, testenv.Compress("gzip", []byte(filler+"DROP TABLE t")), testenv.Compress("gzip", []byte(filler+"DROPS TABLE"))},
		{"deflate (zlib)", []string{"Content-Encoding", "deflate"}, testenv.Compress("deflate", []byte(filler+"DROP TABLE t")), testenv.Compress("deflate", []byte(filler))},
		{"deflate (raw)", []string{"Content-Encoding", "deflate"}, testenv.Compress("raw-deflate", []byte(filler+"DROP TABLE t")), testenv.Compress("raw-deflate", []byte(filler))},
		{"br", []string{"Content-Encoding", "br"}, testenv.Compress("br", []byte(filler+"DROP TABLE t")), testenv.Compress("br", []byte(filler))},
		{"zstd", []string{"Content-Encoding", "zstd"}, testenv.Compress("zstd", []byte(filler+"DROP TABLE t "+filler)), testenv.Compress("zstd", []byte(filler))},
		{"gzip, br stacked", []string{"Content-Encoding", "gzip, br"},
			testenv.Compress("br", testenv.Compress("gzip", []byte(filler+"DROP TABLE t"))), testenv.Compress("br", testenv.Compress("gzip", []byte(filler)))},
		{"form DROP+TABLE", []string{"Content-Type", "application/x-www-form-urlencoded"}, []byte("q=DROP+TABLE+t"), []byte("q=DROP+TABLES")},
		{"form %44ROP", []string{"Content-Type", "application/x-www-form-urlencoded"}, []byte("q=%44ROP%20TABLE"), []byte("q=%44ROP%20TABLES")},
		{"multipart base64 part", []string{"Content-Type", b64ct}, b64, b64Clean},
		{"multipart quoted-printable part", []string{"Content-Type", qpct}, qp, qpClean},
		{"UTF-16LE with BOM", []string{"Content-Type", "text/plain"}, []byte(u16le), []byte(u16leClean)},
		{"UTF-16BE by charset", []string{"Content-Type", "text/plain; charset=utf-16be"}, []byte(u16be), []byte(u16beClean)},
		{"words after 1 MiB within 8 MiB", []string{"Content-Type", "text/plain"}, []byte(pad + " DROP TABLE t"), []byte(pad + " DROP TABLES")},
	}
	re := regexp.MustCompile(`(?i)\bdrop\s+table\b`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if re.Match(tt.body[:min(len(tt.body), 1<<20)]) {
				t.Fatal("the raw body already matches: the case shows nothing")
			}
			r := withBody(t, req("POST", "api.example.com", "/", tt.h...), string(tt.body))
			if d := p.Decide(r, nil); d.Rule != "no-drop-table" || d.Action != Deny {
				t.Errorf("Decide = %+v, want a deny by no-drop-table", d)
			}
			r = withBody(t, req("POST", "api.example.com", "/", tt.h...), string(tt.clean))
			if d := p.Decide(r, nil); d != (Decision{Action: Allow}) {
				t.Errorf("clean body: Decide = %+v", d)
			}
		})
	}
}

// Decide reads the body only when a rule that needs it is reached first.
func TestPolicyTwoPhase(t *testing.T) {
	isolate(t)
	p := mustCompile(t, `
rules:
  - {name: health, action: allow, match: {path: /health}}
  - {name: sql, action: deny, match: {hosts: [db.example.com], methods: [POST], body: '(?i)drop\s+table'}}
  - {name: deletes, action: approve, match: {methods: [DELETE]}}
  - {name: rest, action: deny, match: {body: 'secret'}}
`)
	tests := []struct {
		name string
		r    *Request
		want Decision
	}{
		{"an earlier rule decides without the body", req("POST", "db.example.com", "/health"), Decision{Action: Allow, Rule: "health"}},
		{"a body rule whose other conditions fail is passed", req("DELETE", "db.example.com", "/x"), Decision{Action: Approve, Rule: "deletes"}},
		{"a body rule in reach needs the body", req("POST", "db.example.com", "/x"), needs("sql")},
		{"the last rule needs the body", req("PUT", "api.example.com", "/x"), needs("rest")},
		{"with the body: the body rule decides", withBody(t, req("POST", "db.example.com", "/x"), "DROP  TABLE t"), Decision{Action: Deny, Rule: "sql"}},
		{"with the body: it does not match, the next needs no body", withBody(t, req("POST", "db.example.com", "/x", "X-HTTP-Method-Override", "DELETE"), "select 1"),
			Decision{Action: Approve, Rule: "deletes"}},
		{"with the body: nothing matches", withBody(t, req("PUT", "api.example.com", "/x"), "hello"), Decision{Action: Allow}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.r, nil)
			if d != tt.want {
				t.Errorf("Decide = %+v, want %+v", d, tt.want)
			}
			ex := p.Explain(tt.r, nil)
			if ex.Decision != d {
				t.Errorf("Explain = %+v, Decide = %+v", ex.Decision, d)
			}
			if d.NeedsBody {
				res := ex.Rules[ex.Decided]
				if res.Name != d.Rule || !res.NeedsBody || res.Matched || res.Condition != "body" || !strings.HasPrefix(res.Why, "not read yet") {
					t.Errorf("explained as %+v", res)
				}
			}
		})
	}
	// A caller that overlooks NeedsBody refuses the request.
	if d := p.Decide(req("POST", "db.example.com", "/x"), nil); d.Action != Deny {
		t.Errorf("NeedsBody with action %q", d.Action)
	}
}

// The path without a body rule in reach allocates nothing, and matching a
// view allocates nothing either.
func TestPolicyDecideDoesNotAllocate(t *testing.T) {
	isolate(t)
	p := mustCompile(t, tenRules+`  - {name: sql, action: deny, match: {hosts: [db.example.com], body: '(?i)\bdrop\s+table\b'}}
`)
	override := req("POST", "api.openai.com", "/v1/fine_tuning/jobs", "X-Http-Method-Override", "GET, PATCH")
	for name, r := range map[string]*Request{"no body rule in reach": benchReq, "override headers": override} {
		if n := testing.AllocsPerRun(100, func() { p.Decide(r, bob) }); n != 0 {
			t.Errorf("%s: %v allocations per Decide", name, n)
		}
	}
	body := withBody(t, req("POST", "db.example.com", "/", "Content-Type", "application/json"), `{"q":"select \u0044ROPS from t","a":["x","y"]}`)
	if d := p.Decide(body, bob); d.Rule != "" {
		t.Fatalf("decided %+v", d)
	}
	if n := testing.AllocsPerRun(100, func() { p.Decide(body, bob) }); n != 0 {
		t.Errorf("body rule over a view: %v allocations per Decide", n)
	}
}

func TestPolicyMethodOverride(t *testing.T) {
	isolate(t)
	p := mustCompile(t, `rules: [{name: confirm-deletes, action: approve, match: {hosts: [crm.example.com], methods: [DELETE]}}]`)
	approve := Decision{Action: Approve, Rule: "confirm-deletes"}
	tests := []struct {
		name string
		kv   []string
		want Decision
		note string
	}{
		{"no override", nil, Decision{Action: Allow}, ""},
		{"X-HTTP-Method-Override", []string{"X-HTTP-Method-Override", "DELETE"}, approve, "methods: DELETE from X-HTTP-Method-Override"},
		{"lower case", []string{"x-http-method-override", "delete"}, approve, "methods: DELETE from X-HTTP-Method-Override"},
		{"X-HTTP-Method, a list", []string{"X-HTTP-Method", "GET , Delete"}, approve, "methods: DELETE from X-HTTP-Method"},
		{"X-Method-Override, a second line", []string{"X-Method-Override", "PUT", "X-Method-Override", "DELETE"}, approve, "methods: DELETE from X-Method-Override"},
		{"another method", []string{"X-HTTP-Method-Override", "PUT"}, Decision{Action: Allow}, ""},
		{"an unrelated header", []string{"X-Override", "DELETE"}, Decision{Action: Allow}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req("POST", "crm.example.com", "/contacts/7", tt.kv...)
			if d := p.Decide(r, nil); d != tt.want {
				t.Errorf("Decide = %+v, want %+v", d, tt.want)
			}
			ex := p.Explain(r, nil)
			if got := strings.Join(ex.Rules[0].Notes, "; "); got != tt.note {
				t.Errorf("notes %q, want %q", got, tt.note)
			}
		})
	}
	ex := p.Explain(req("POST", "crm.example.com", "/", "X-HTTP-Method-Override", "PUT"), nil)
	if got := ex.Rules[0].Failure(); got != `methods: POST (X-HTTP-Method-Override: "PUT") not in [DELETE]` {
		t.Errorf("Failure = %q", got)
	}
}

func TestPolicyExplainBody(t *testing.T) {
	isolate(t)
	p := mustCompile(t, dropTableRule)
	r := withBody(t, req("POST", "h", "/", "Content-Type", "application/json"), `{"a":"x","q":"DROP\u0020TABLE"}`)
	ex := p.Explain(r, nil)
	if got := ex.Rules[0].Notes; !slices.Equal(got, []string{"body: matched a decoded JSON string (value 4 of 5)"}) {
		t.Errorf("notes %q", got)
	}
	r = withBody(t, req("POST", "h", "/", "Content-Type", "text/plain; charset=utf-16le"), "D\x00R\x00O\x00P\x00 \x00T\x00A\x00B\x00L\x00E\x00")
	if got := p.Explain(r, nil).Rules[0].Notes; !slices.Equal(got, []string{"body: matched the body as UTF-16LE"}) {
		t.Errorf("notes %q", got)
	}
	r = withBody(t, req("POST", "h", "/", "Content-Type", "application/json"), `{"a":"x","q":"y"}`)
	if got := p.Explain(r, nil).Rules[0].Failure(); got != `body: no match for '(?i)\bdrop\s+table\b' in the 17-byte body or its 4 decoded values` {
		t.Errorf("Failure = %q", got)
	}
}

// policy.max_body and policy.oversize reach the compiled policy.
func TestPolicyBodyLimits(t *testing.T) {
	isolate(t)
	var nilPolicy *Policy
	if nilPolicy.MaxBody() != 8<<20 || nilPolicy.AllowOversize() {
		t.Errorf("nil policy: %d, %v", nilPolicy.MaxBody(), nilPolicy.AllowOversize())
	}
	p := mustCompile(t, dropTableRule)
	if p.MaxBody() != 8<<20 || p.AllowOversize() {
		t.Errorf("defaults: %d, %v", p.MaxBody(), p.AllowOversize())
	}
	p = mustCompile(t, dropTableRule+"\npolicy: {max_body: 2KiB, oversize: allow}\n")
	if p.MaxBody() != 2<<10 || !p.AllowOversize() {
		t.Errorf("configured: %d, %v", p.MaxBody(), p.AllowOversize())
	}
	// Over the limit: an error, and the view of what could be read.
	raw := []byte(strings.Repeat("a", 2<<10) + " DROP TABLE t")
	v, err := p.ViewBody(http.Header{}, raw)
	if !errors.Is(err, reqbody.ErrUninspectable) || err.Error() != "body larger than 2 KiB" {
		t.Errorf("err = %v", err)
	}
	if d := p.Decide(&Request{Method: "POST", Path: "/", Body: v}, nil); d.Rule != "" {
		t.Errorf("the words past the limit were seen: %+v", d)
	}
	// Within it, after the old 1 MiB prefix.
	p = mustCompile(t, dropTableRule)
	raw = []byte(strings.Repeat("a ", 3<<20) + " DROP TABLE t")
	if v, err = p.ViewBody(http.Header{}, raw); err != nil {
		t.Fatal(err)
	}
	if d := p.Decide(&Request{Method: "POST", Path: "/", Body: v}, nil); d.Rule != "no-drop-table" {
		t.Errorf("Decide = %+v", d)
	}
}
