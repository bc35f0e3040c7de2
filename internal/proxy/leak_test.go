package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/encoding/unicode"

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/testenv"
)

const crmPlaceholder = "crewgate-crm-placeholder-0011223344556677"

// sink is a fake upstream that keeps every request it got as text: the
// request line, the headers and as much of the body as arrived.
type sink struct {
	mu    sync.Mutex
	got   [][]byte
	cases map[string][][]byte // by the X-Case header the tests send
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s\n", r.Method, r.RequestURI)
	r.Header.Write(&b)
	b.WriteString("\r\n")
	body, _ := io.ReadAll(r.Body) // a stopped body arrives in part
	b.Write(body)
	s.mu.Lock()
	s.got = append(s.got, b.Bytes())
	if s.cases == nil {
		s.cases = map[string][][]byte{}
	}
	s.cases[r.Header.Get("X-Case")] = append(s.cases[r.Header.Get("X-Case")], b.Bytes())
	s.mu.Unlock()
	io.WriteString(w, "ok")
}

func (s *sink) requests() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *sink) requestsOf(name string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cases[name])
}

// leakRig is the crew's proxy with two upstreams that each give the crew a
// placeholder (openai, crm) and a plain-HTTP server no upstream claims.
type leakRig struct {
	h        *harness
	rec      *memRecorder
	openai   *sink
	crm      *sink
	plain    *sink
	plainURL string
	// closeUpstreams stops the upstreams once every request they got has
	// been read.
	closeUpstreams func()
}

func newLeakRig(t *testing.T, resolver Resolver) *leakRig {
	rg := &leakRig{rec: &memRecorder{}, openai: &sink{}, crm: &sink{}, plain: &sink{}}
	openai := &upstream{Server: httptest.NewTLSServer(rg.openai)}
	crm := &upstream{Server: httptest.NewTLSServer(rg.crm)}
	plain := httptest.NewServer(rg.plain)
	rg.closeUpstreams = func() { openai.Close(); crm.Close(); plain.Close() }
	t.Cleanup(rg.closeUpstreams)
	rg.plainURL = plain.URL
	rg.h = start(t, Config{Recorder: rg.rec, Resolver: resolver, Upstreams: []Upstream{
		openaiUpstream(openai),
		{Name: "crm", Hosts: []string{"crm.example.com"}, Address: crm.addr(), RootCAs: crm.pool(),
			Source: staticSource{token: "crm-token"}, Placeholder: crmPlaceholder},
	}})
	return rg
}

// leakCase is one request that carries openai's placeholder.
type leakCase struct {
	name   string
	method string
	target string // path and query
	header []string
	body   []byte
	// For a body whose placeholder lies beyond what is read up front: the
	// body as the upstream reads it (decoded; nil: body), and where in it
	// the placeholder's form starts. The upstream may get the part before.
	plain []byte
	at    int
}

// streamed is a body with the placeholder's form at offset len(head).
func streamed(name string, header []string, head, form, tail string) leakCase {
	plain := []byte(head + form + tail)
	return leakCase{name: name, header: header, body: plain, plain: plain, at: len(head)}
}

func (c leakCase) send(t *testing.T, client *http.Client, base string) (*http.Response, string) {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodGet
		if c.body != nil {
			method = http.MethodPost
		}
	}
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequest(method, base+c.target, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(c.header); i += 2 {
		req.Header.Add(c.header[i], c.header[i+1])
	}
	req.Header.Set("X-Case", c.name)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, base+c.target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func percentEach(s string, every func(int) bool, f string) string {
	var b strings.Builder
	for i := range len(s) {
		if every(i) {
			fmt.Fprintf(&b, f, s[i])
		} else {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func all(int) bool   { return true }
func odd(i int) bool { return i%2 == 1 }

// mimeBase64 is base64 in 76-character lines, as MIME writes it.
func mimeBase64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s)
	return out.String()
}

// noise is n bytes that do not compress.
func noise(n int) []byte {
	r := rand.NewChaCha8([32]byte{1})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// leakCases are openai's placeholder in every form DESIGN.md and issue 11
// name, each one a form the receiving host can decode.
func leakCases() []leakCase {
	p := placeholder
	json := "application/json"
	form := "application/x-www-form-urlencoded"
	pad := strings.Repeat("a ", 800<<10) // 1.6 MiB: past what is read up front
	// Compressible, so that no coding stores the placeholder as it is.
	text := []byte(strings.Repeat("the quick brown fox ", 20) + p)
	multipart := "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + mimeBase64([]byte("notes: "+p+"\n")) + "\r\n--b--\r\n"
	cases := []leakCase{
		{name: "header base64", header: []string{"X-Data", base64.StdEncoding.EncodeToString([]byte(p))}},
		{name: "header base64url unpadded", header: []string{"X-Data", base64.RawURLEncoding.EncodeToString([]byte("\xfb\xff" + p))}},
		{name: "header base64 offset 1 in a longer string", header: []string{"X-Data", base64.StdEncoding.EncodeToString([]byte("x" + p + "tail"))}},
		{name: "header base64 offset 2 in a longer string", header: []string{"X-Data", base64.URLEncoding.EncodeToString([]byte("xy" + p + "tail!"))}},
		{name: "Basic credentials", header: []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+p))}},
		{name: "Basic credentials with an escaped password", header: []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+percentEach(p, all, "%%%02X")))}},
		{name: "header percent-encoded", header: []string{"Cookie", "k=" + percentEach(p, odd, "%%%02x")}},
		{name: "header hex", header: []string{"X-Data", strings.ToUpper(hex.EncodeToString([]byte(p)))}},
		{name: "query every byte %XX", target: "/x?k=" + percentEach(p, all, "%%%02X")},
		{name: "query partial %XX", target: "/x?k=" + percentEach(p, odd, "%%%02x")},
		{name: "query double-encoded", target: "/x?k=" + strings.ReplaceAll(percentEach(p, odd, "%%%02X"), "%", "%25")},
		{name: "path %XX", target: "/x/" + percentEach(p, odd, "%%%02X") + "/y"},
		{name: "query base64", target: "/x?k=" + base64.RawURLEncoding.EncodeToString([]byte("k="+p))},
		{name: "gzip body", header: []string{"Content-Encoding", "gzip", "Content-Type", json}, body: testenv.Compress("gzip", []byte(`{"k":"`+p+`"}`))},
		{name: "deflate body", header: []string{"Content-Encoding", "deflate"}, body: testenv.Compress("deflate", text)},
		{name: "raw deflate body", header: []string{"Content-Encoding", "deflate"}, body: testenv.Compress("raw-deflate", text)},
		{name: "br body", header: []string{"Content-Encoding", "br"}, body: testenv.Compress("br", text)},
		{name: "zstd body", header: []string{"Content-Encoding", "zstd"}, body: testenv.Compress("zstd", text)},
		{name: "gzip then br body", header: []string{"Content-Encoding", "gzip, br"}, body: testenv.Compress("br", testenv.Compress("gzip", text))},
		{name: "JSON \\u escapes", header: []string{"Content-Type", json}, body: []byte(`{"k":"` + percentEach(p, all, `\u%04x`) + `"}`)},
		{name: "JSON \\u escapes, partial", header: []string{"Content-Type", json}, body: []byte(`{"k":"` + percentEach(p, odd, `\u%04X`) + `"}`)},
		{name: "JSON base64 value", header: []string{"Content-Type", json}, body: []byte(`{"k":"` + base64.StdEncoding.EncodeToString([]byte(" "+p)) + `"}`)},
		{name: "form %XX", header: []string{"Content-Type", form}, body: []byte("a=1&k=" + percentEach(p, all, "%%%02x"))},
		{name: "multipart base64 part", header: []string{"Content-Type", "multipart/form-data; boundary=b"}, body: []byte(multipart)},
		{name: "multipart quoted-printable part", header: []string{"Content-Type", "multipart/form-data; boundary=b"},
			body: []byte("--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + percentEach(p, odd, "=%02X") + "\r\n--b--\r\n")},
		{name: "UTF-16LE body", header: []string{"Content-Type", "text/plain; charset=utf-16le"}, body: testenv.UTF16(p, unicode.LittleEndian, false)},
		{name: "HTML references", header: []string{"Content-Type", "text/html"}, body: []byte(percentEach(p, odd, "&#%d;"))},
		{name: "gzip decoding past the first MiB", header: []string{"Content-Encoding", "gzip"},
			body: testenv.Compress("gzip", []byte(pad+pad+p))},
		streamed("after the first MiB", []string{"Content-Type", "text/plain"}, pad, p, ""),
		streamed("across the first MiB", []string{"Content-Type", "text/plain"}, pad[:logPrefix-10], p, pad),
		streamed("across a streamed window", []string{"Content-Type", "text/plain"}, pad[:logPrefix+3*(32<<10)-7], p, pad),
		streamed("after the first MiB, JSON \\u", []string{"Content-Type", json}, `{"pad":"`+pad+`","k":"`, percentEach(p, all, `\u%04x`), `"}`),
		streamed("after the first MiB, form %XX", []string{"Content-Type", form}, "pad="+pad+"&k=", percentEach(p, all, "%%%02X"), ""),
		streamed("after the first MiB, base64", []string{"Content-Type", "text/plain"}, pad, base64.StdEncoding.EncodeToString([]byte("x"+p)), ""),
	}
	// Too large to decode up front: decoded as it streams, and the
	// decoding is what the upstream gets.
	gz := streamed("after the first MiB, gzip", []string{"Content-Encoding", "gzip"}, string(noise(1536<<10)), p, "")
	gz.body = testenv.Compress("gzip", gz.plain)
	return append(cases, gz)
}

// TestPlaceholderLeakDecodedForms plays a crew told to hand openai's
// placeholder to another host, in every form the receiving host can decode:
// each request is refused (403 placeholder-leak) and audited, and neither
// the other upstream nor a host no upstream claims ever gets the
// placeholder in any form. The same requests to openai itself go out, with
// the credential injected; and clean requests go out untouched.
func TestPlaceholderLeakDecodedForms(t *testing.T) {
	rg := newLeakRig(t, nil)
	plainClient := clientVia(rg.h.url, nil)
	for _, c := range leakCases() {
		for _, to := range []struct {
			name   string
			client *http.Client
			base   string
		}{{"to crm", rg.h.client, "https://crm.example.com"}, {"to a host no upstream claims", plainClient, rg.plainURL}} {
			t.Run(c.name+"/"+to.name, func(t *testing.T) {
				before := len(leakEvents(rg.rec))
				resp, body := c.send(t, to.client, to.base)
				if resp.StatusCode != 403 || resp.Header.Get("X-Crewgate-Error") != errLeak {
					t.Fatalf("%d %q: %s", resp.StatusCode, resp.Header.Get("X-Crewgate-Error"), body)
				}
				if !strings.Contains(body, "placeholder of upstream openai") {
					t.Errorf("refusal: %s", body)
				}
				where := "header"
				switch {
				case c.target != "":
					where = "url"
				case c.body != nil:
					where = "body"
				}
				if evs := leakEvents(rg.rec); len(evs) != before+1 || *evs[len(evs)-1].Leak != (audit.Leak{Upstream: "openai", To: host(to.base), Where: where}) {
					t.Errorf("leak events: %s", rg.rec.json(t))
				}
			})
		}
	}

	t.Run("own upstream", func(t *testing.T) {
		for _, c := range leakCases() {
			c.header = append(c.header, "Authorization", "Bearer "+placeholder)
			if strings.HasPrefix(c.name, "Basic") {
				continue // the credential header is replaced
			}
			if resp, body := c.send(t, rg.h.client, "https://openai.example.com"); resp.StatusCode != 200 {
				t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
			}
		}
		for _, got := range rg.openai.requests() {
			if !bytes.Contains(got, []byte("Authorization: Bearer "+realSecret+"\r\n")) {
				t.Errorf("not injected: %.300q", got)
			}
		}
	})

	t.Run("clean requests", func(t *testing.T) {
		big := []byte(strings.Repeat("a ", 800<<10))
		clean := []leakCase{
			{name: "JSON", header: []string{"Content-Type", "application/json", "Authorization", "Bearer " + crmPlaceholder},
				body: []byte(`{"model":"m","messages":[{"role":"user","content":"Hello,\nworld \u00e9 50% off = 10&lt;20"}]}`)},
			{name: "Basic of other credentials", header: []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+realSecret))}},
			{name: "base64 data", header: []string{"Content-Type", "application/json"},
				body: []byte(`{"image":"` + base64.StdEncoding.EncodeToString(noise(64<<10)) + `"}`)},
			{name: "gzip", header: []string{"Content-Encoding", "gzip"}, body: testenv.Compress("gzip", []byte("hello "+crmPlaceholder))},
			{name: "large text", header: []string{"Content-Type", "text/plain"}, body: big},
			{name: "large form", header: []string{"Content-Type", "application/x-www-form-urlencoded"}, body: []byte("a=%41%42&pad=" + string(big))},
		}
		for _, c := range clean {
			n := len(rg.crm.requests())
			resp, body := c.send(t, rg.h.client, "https://crm.example.com")
			if resp.StatusCode != 200 || body != "ok" {
				t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
				continue
			}
			got := rg.crm.requests()
			if len(got) != n+1 || !bytes.HasSuffix(got[n], c.body) {
				t.Errorf("%s: the body did not arrive as sent", c.name)
			}
		}
		// A compressed body too large to decode up front goes out decoded.
		data := append(noise(1536<<10), " no placeholder here"...)
		c := leakCase{name: "large gzip", header: []string{"Content-Encoding", "gzip"}, body: testenv.Compress("gzip", data)}
		n := len(rg.crm.requests())
		if resp, body := c.send(t, rg.h.client, "https://crm.example.com"); resp.StatusCode != 200 {
			t.Fatalf("large gzip: %d %s", resp.StatusCode, body)
		}
		if got := rg.crm.requests(); len(got) != n+1 || !bytes.HasSuffix(got[n], data) || bytes.Contains(got[n], []byte("Content-Encoding")) {
			t.Errorf("large gzip: the decoded body did not arrive")
		}
	})

	rg.closeUpstreams()
	for _, c := range leakCases() {
		for name, s := range map[string]*sink{"crm": rg.crm, "the host no upstream claims": rg.plain} {
			t.Run(c.name+"/what "+name+" got", func(t *testing.T) { c.check(t, s.requestsOf(c.name)) })
		}
	}
}

// check looks at what the upstream got of c: nothing, or for a streamed
// body, the request and a part of the body that ends before the
// placeholder's form starts.
func (c leakCase) check(t *testing.T, got [][]byte) {
	t.Helper()
	if c.at == 0 && len(got) > 0 || len(got) > 1 {
		t.Fatalf("the upstream got %d requests: %.300q", len(got), got)
	}
	for _, g := range got {
		head, body, _ := bytes.Cut(g, []byte("\r\n\r\n"))
		if !bytes.HasPrefix(c.plain, body) || len(body) > c.at {
			t.Errorf("the upstream got %d bytes of the body; the placeholder starts at %d", len(body), c.at)
		}
		// The body is a part of c.plain before the form: only the head
		// could hold the placeholder.
		if form, ok := testenv.Reveals(head, placeholder); ok {
			t.Errorf("the upstream got the placeholder (%s)", form)
		}
	}
}

// host is the host:port of a base URL, as leak events name it.
func host(base string) string {
	u, _ := url.Parse(base)
	if u.Port() == "" {
		return u.Host + ":443"
	}
	return u.Host
}

func leakEvents(rec *memRecorder) []audit.Event {
	var out []audit.Event
	for _, e := range rec.all() {
		if e.Type == audit.TypeLeak {
			out = append(out, e)
		}
	}
	return out
}

// lookups is a resolver that remembers what it was asked.
type lookups struct {
	mu    sync.Mutex
	names []string
}

func (l *lookups) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, host)
	return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
}

// TestPlaceholderInHostName: a placeholder in a host name would leave in
// the DNS query and the TLS SNI; it is refused before the name is looked
// up, in a CONNECT and in plain HTTP.
func TestPlaceholderInHostName(t *testing.T) {
	res := &lookups{}
	rg := newLeakRig(t, res)
	for _, host := range []string{placeholder + ".example.net", strings.ToUpper(placeholder) + ".example.net"} {
		resp := rawConnect(t, rg.h, host+":443")
		if resp.StatusCode != 403 || refusalOf(t, resp).Error != errLeak {
			t.Errorf("CONNECT %s: %d", host, resp.StatusCode)
		}
		resp, _ = get(t, clientVia(rg.h.url, nil), "http://"+host+"/")
		if resp.StatusCode != 403 || resp.Header.Get("X-Crewgate-Error") != errLeak {
			t.Errorf("GET http://%s/: %d", host, resp.StatusCode)
		}
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	if len(res.names) > 0 {
		t.Errorf("looked up %q", res.names)
	}
	if evs := leakEvents(rg.rec); len(evs) != 4 || evs[0].Leak.Where != "host" {
		t.Errorf("leak events: %s", rg.rec.json(t))
	}
}

// TestPlaceholderLeakUndecodableBodies: a body crewgate cannot decode could
// hide a placeholder from it, so with placeholders in play it is refused
// (body-uninspectable), never passed on unread.
func TestPlaceholderLeakUndecodableBodies(t *testing.T) {
	rg := newLeakRig(t, nil)
	large := testenv.Compress("gzip", noise(1536<<10))
	for _, c := range []leakCase{
		{name: "unknown encoding", header: []string{"Content-Encoding", "x-custom"}, body: []byte("scrambled")},
		{name: "unknown encoding after gzip", header: []string{"Content-Encoding", "gzip, x-custom"}, body: []byte("scrambled")},
		{name: "corrupt gzip", header: []string{"Content-Encoding", "gzip"}, body: []byte("not gzip at all")},
		{name: "truncated gzip", header: []string{"Content-Encoding", "gzip"}, body: testenv.Compress("gzip", []byte("hello"))[:12]},
		{name: "large gzip, truncated", header: []string{"Content-Encoding", "gzip"}, body: large[:len(large)-100]},
	} {
		resp, body := c.send(t, rg.h.client, "https://crm.example.com")
		if resp.StatusCode != 403 || resp.Header.Get("X-Crewgate-Error") != errUninspectable {
			t.Errorf("%s: %d %q %s", c.name, resp.StatusCode, resp.Header.Get("X-Crewgate-Error"), body)
		}
	}
	for _, got := range rg.crm.requests() {
		if !bytes.Contains(got, []byte("POST")) || bytes.Contains(got, []byte("scrambled")) {
			t.Errorf("crm got %.200q", got)
		}
	}
}

// BenchmarkLeakCheck measures the pipeline (leak, body and inject steps)
// for a clean 1 KiB chat request, with no other upstream's placeholder in
// play and with one.
func BenchmarkLeakCheck(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"` +
		strings.Repeat("Summarise the report, please. ", 30) + `"}],"temperature":0.2,"stream":true}`)
	for _, bc := range []struct {
		name string
		ups  []Upstream
	}{
		{"one upstream", []Upstream{{Name: "openai", Hosts: []string{"openai.example.com"}, Source: staticSource{token: realSecret}, Placeholder: placeholder}}},
		{"two upstreams", []Upstream{
			{Name: "openai", Hosts: []string{"openai.example.com"}, Source: staticSource{token: realSecret}, Placeholder: placeholder},
			{Name: "crm", Hosts: []string{"crm.example.com"}, Source: staticSource{token: "t"}, Placeholder: crmPlaceholder}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := New(Config{Credential: "x", CA: fakeCA{}, Upstreams: bc.ups})
			if err != nil {
				b.Fatal(err)
			}
			mc := &mitmConn{route: p.routes[0]}
			mc.authority.Host, mc.authority.Port = "openai.example.com", "443"
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				req, _ := http.NewRequest("POST", "https://openai.example.com/v1/chat/completions?api-version=2024-06-01", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+placeholder)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("User-Agent", "OpenAI/Python 1.40.0")
				req.Header.Set("X-Stainless-Package-Version", "1.40.0")
				req.Header.Set("Accept", "application/json")
				o := p.pipeline(context.Background(), req, kindIntercepted, mc, &reqState{}, live)
				if o.refusal != nil {
					b.Fatal(o.refusal.reason)
				}
			}
		})
	}
}

// BenchmarkRequest1KiBTwoUpstreams is BenchmarkRequest1KiB with a second
// upstream that gives the crew a placeholder too, so that every request is
// searched for it, and a 1 KiB JSON request body.
func BenchmarkRequest1KiBTwoUpstreams(b *testing.B) {
	up := httptest.NewTLSServer(bench1KiBHandler())
	b.Cleanup(up.Close)
	u := &upstream{Server: up}
	h := start(b, Config{Upstreams: []Upstream{
		{Name: "bench", Hosts: []string{benchHost}, Source: staticSource{token: realSecret}, Placeholder: placeholder, Address: u.addr(), RootCAs: u.pool()},
		{Name: "crm", Hosts: []string{"crm.example.com"}, Source: staticSource{token: "t"}, Placeholder: crmPlaceholder, Address: u.addr(), RootCAs: u.pool()},
	}})
	r := &benchRig{up: up, proxyURL: h.url, sessionCA: h.ca, direct: up.Client()}
	r.proxied = r.client(false)
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("Summarise the report, please. ", 32) + `"}]}`
	post := func(c *http.Client, rawURL string) time.Duration {
		start := time.Now()
		req, _ := http.NewRequest("POST", rawURL, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+placeholder)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || int(n) != len(body1KiB) {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
		return time.Since(start)
	}
	for range 50 {
		post(r.direct, r.directURL("/v1/chat"))
		post(r.proxied, r.proxiedURL("/v1/chat"))
	}
	var direct, proxied []time.Duration
	for b.Loop() {
		direct = append(direct, post(r.direct, r.directURL("/v1/chat")))
		proxied = append(proxied, post(r.proxied, r.proxiedURL("/v1/chat")))
	}
	reportAdded(b, direct, proxied)
}

// placeholderEncoders write a placeholder the ways FuzzLeakFinder hides it.
var placeholderEncoders = []func(string) string{
	func(p string) string { return p },
	strings.ToUpper,
	func(p string) string { return base64.StdEncoding.EncodeToString([]byte("k" + p)) },
	func(p string) string { return base64.RawURLEncoding.EncodeToString([]byte("\xff\xfe" + p)) },
	func(p string) string { return strings.ToUpper(hex.EncodeToString([]byte(p))) },
	func(p string) string { return percentEach(p, all, "%%%02X") },
	func(p string) string { return strings.ReplaceAll(percentEach(p, odd, "%%%02x"), "%", "%25") },
	func(p string) string { return percentEach(p, all, `\u%04x`) },
	func(p string) string { return percentEach(p, odd, `\x%02x`) },
	func(p string) string { return percentEach(p, all, "&#%d;") },
	func(p string) string { return percentEach(p, odd, "=%02X") },
	func(p string) string { return string(testenv.UTF16(p, unicode.LittleEndian, false)) },
	func(p string) string { return mimeBase64([]byte(strings.Repeat("z", 60) + p)) },
}

// FuzzLeakFinder hides openai's placeholder, in each form, at any place in
// any text (set off by spaces, which no form uses and no escape takes), and
// the finder must find it, searching the text whole and as a stream read in
// pieces of any size.
func FuzzLeakFinder(f *testing.F) {
	f.Add([]byte("hello world"), uint16(5), uint8(0), uint16(7))
	f.Add([]byte(`{"k":"\u00e9 %2 &# =4 \\"}`), uint16(9), uint8(7), uint16(1))
	f.Add(bytes.Repeat([]byte("a="), 17<<10), uint16(32760), uint8(5), uint16(4096)) // across a window
	p, err := New(Config{Credential: "x", CA: fakeCA{}, Upstreams: []Upstream{
		{Name: "openai", Hosts: []string{"openai.example.com"}, Placeholder: placeholder},
		{Name: "crm", Hosts: []string{"crm.example.com"}, Placeholder: crmPlaceholder},
	}})
	if err != nil {
		f.Fatal(err)
	}
	finder := p.routes[1].leak // for crm: openai's placeholder is foreign
	f.Fuzz(func(t *testing.T, text []byte, at uint16, form uint8, piece uint16) {
		enc := placeholderEncoders[int(form)%len(placeholderEncoders)](placeholder)
		cut := int(at) % (len(text) + 1)
		body := slices.Concat(text[:cut], []byte(" "+enc+" "), text[cut:])
		if got := finder.scan(body, &scratch{}); got != "openai" {
			t.Fatalf("scan: %q in %.200q", got, body)
		}
		lb := newLeakBody(io.NopCloser(iotestPieces(body, int(piece)%8192+1)), nil, finder)
		io.Copy(io.Discard, lb)
		if r := lb.refusal(); r == nil || r.leaked != "openai" {
			t.Fatalf("streamed: %+v", r)
		}
	})
}

// iotestPieces reads b n bytes at a time.
func iotestPieces(b []byte, n int) io.Reader {
	return &pieces{b: b, n: n}
}

type pieces struct {
	b []byte
	n int
}

func (r *pieces) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}
