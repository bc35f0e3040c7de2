package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/crewgate/crewgate/internal/ca"
	"github.com/crewgate/crewgate/internal/creds"
)

const (
	realSecret  = "sk-real-upstream-secret-0123456789"
	placeholder = "crewgate-placeholder-openai-abcdef"
	proxyCred   = "test-proxy-credential"
)

type staticSource struct {
	token string
	err   error
}

func (s staticSource) Token(context.Context) (string, error) { return s.token, s.err }

// upstream is a stand-in HTTPS service that records what it saw.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	u := &upstream{}
	u.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.seen...)
}

func (u *upstream) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(u.Certificate())
	return p
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "https://") }

// harness is a running proxy and a client configured the way the crew is.
type harness struct {
	proxy  *Proxy
	url    *url.URL // with the credential
	ca     *ca.CA
	client *http.Client
}

func start(t testing.TB, cfg Config) *harness {
	t.Helper()
	var hosts []string
	for _, u := range cfg.Upstreams {
		hosts = append(hosts, u.Hosts...)
	}
	if len(hosts) == 0 {
		hosts = []string{"unused.test"}
	}
	sessionCA, err := ca.New(hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CA = sessionCA
	if cfg.Credential == "" {
		cfg.Credential = proxyCred
	}
	cfg.Session = "test-session"
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Close() })
	u := &url.URL{Scheme: "http", User: url.UserPassword("crewgate", proxyCred), Host: ln.Addr().String()}
	roots := x509.NewCertPool()
	roots.AddCert(sessionCA.Certificate())
	return &harness{proxy: p, url: u, ca: sessionCA, client: clientVia(u, roots)}
}

func clientVia(proxy *url.URL, roots *x509.CertPool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: roots}},
		Timeout:   10 * time.Second,
	}
}

func openaiUpstream(u *upstream) Upstream {
	return Upstream{
		Name: "openai", Hosts: []string{"openai.example.com"}, Source: staticSource{token: realSecret},
		Placeholder: placeholder, Address: u.addr(), RootCAs: u.pool(),
	}
}

func get(t *testing.T, c *http.Client, rawURL string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", rawURL, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestInjectsCredentialAndMasksResponse(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// An upstream that echoes what it got, plus a key of its own.
		fmt.Fprintf(w, `{"auth":%q,"note":"key AKIAIOSFODNN7EXAMPLE"}`, r.Header.Get("Authorization"))
	})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	resp, body := get(t, h.client, "https://openai.example.com/v1/models", "Authorization", "Bearer "+placeholder, "X-Api-Key", placeholder)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	seen := up.requests()
	if len(seen) != 1 || seen[0].Header.Get("Authorization") != "Bearer "+realSecret {
		t.Fatalf("upstream saw Authorization %q", seen[0].Header.Get("Authorization"))
	}
	if v := seen[0].Header.Get("X-Api-Key"); v != "" {
		t.Errorf("the placeholder reached the upstream in X-Api-Key: %q", v)
	}
	if seen[0].Header.Get("Proxy-Authorization") != "" {
		t.Error("the proxy credential reached the upstream")
	}
	if strings.Contains(body, realSecret) || strings.Contains(body, "AKIAIOSFODNN7EXAMPLE") {
		t.Errorf("the response was not masked: %s", body)
	}
	if !strings.Contains(body, "[MASKED:credential]") || !strings.Contains(body, "[MASKED:aws_access_key]") {
		t.Errorf("body = %s", body)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Errorf("masked JSON does not parse: %v", err)
	}
	if st := h.proxy.Stats(); st.Requests != 1 || st.Masked != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestProxyCredentialRequired(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	for _, user := range []*url.Userinfo{nil, url.UserPassword("crewgate", "wrong"), url.User("crewgate")} {
		u := *h.url
		u.User = user
		// CONNECT
		c := clientVia(&u, nil)
		if _, err := c.Get("https://openai.example.com/"); err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
			t.Errorf("CONNECT with %v: err = %v", user, err)
		}
		// Plain HTTP
		resp, err := c.Get("http://example.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("X-Crewgate-Error") != errProxyAuth {
			t.Errorf("plain HTTP with %v: %d %v", user, resp.StatusCode, resp.Header)
		}
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("the upstream got %d requests without the proxy credential", n)
	}
}

// rawConnect sends a CONNECT by hand and returns the response, so tests can
// read a refusal's headers and body.
func rawConnect(t *testing.T, h *harness, target string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", h.url.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := &http.Request{Method: "CONNECT", URL: &url.URL{Host: target}, Host: target, Header: http.Header{}}
	pw, _ := h.url.User.Password()
	req.SetBasicAuth("crewgate", pw)
	req.Header["Proxy-Authorization"] = req.Header["Authorization"]
	delete(req.Header, "Authorization")
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// flatRefusal is what tests compare of a refusal.
type flatRefusal struct{ Error, Rule, Reason, Session string }

func refusalOf(t *testing.T, resp *http.Response) flatRefusal {
	t.Helper()
	var b refusalBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("refusal body: %v", err)
	}
	e := b.Error
	if b.Type != "error" || e.Type != "crewgate_refusal" || resp.Header.Get("X-Crewgate-Error") != e.Code || e.Session != "test-session" ||
		!strings.Contains(e.Message, e.Code) || e.Rule != "" && !strings.Contains(e.Message, e.Rule) {
		t.Errorf("refusal header %q, body %+v", resp.Header.Get("X-Crewgate-Error"), b)
	}
	return flatRefusal{Error: e.Code, Rule: e.Rule, Reason: e.Message, Session: e.Session}
}

func TestRouting(t *testing.T) {
	other := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tunnelled AKIAIOSFODNN7EXAMPLE") })

	t.Run("tunnel", func(t *testing.T) {
		h := start(t, Config{DefaultAction: "tunnel"})
		// Through a tunnel the crew talks to the real server: it sees its certificate, not the session CA's.
		c := clientVia(h.url, other.pool())
		resp, body := get(t, c, other.URL+"/")
		if resp.StatusCode != 200 || body != "tunnelled AKIAIOSFODNN7EXAMPLE" {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
		if st := h.proxy.Stats(); st.Tunnels != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("deny", func(t *testing.T) {
		h := start(t, Config{DefaultAction: "deny"})
		resp := rawConnect(t, h, other.addr())
		if resp.StatusCode != 403 || refusalOf(t, resp).Error != errEgress {
			t.Errorf("CONNECT: %d", resp.StatusCode)
		}
		resp, _ = get(t, clientVia(h.url, nil), "http://"+other.addr()+"/")
		if resp.StatusCode != 403 || resp.Header.Get("X-Crewgate-Error") != errEgress {
			t.Errorf("plain HTTP: %d", resp.StatusCode)
		}
	})
	t.Run("metadata", func(t *testing.T) {
		h := start(t, Config{DefaultAction: "tunnel", Resolver: fakeResolver{"metadata.google.internal": "169.254.169.254"}})
		for _, target := range []string{"169.254.169.254:80", "[fe80::1]:443", "metadata.google.internal:80",
			"[fe80::1%25lo]:443", "[64:ff9b::a9fe:a9fe]:443", "[64:ff9b::169.254.169.254]:80"} {
			resp := rawConnect(t, h, target)
			if resp.StatusCode != 403 || refusalOf(t, resp).Error != errAddress {
				t.Errorf("CONNECT %s: %d", target, resp.StatusCode)
			}
		}
		for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"} {
			resp, _ := get(t, clientVia(h.url, nil), u)
			if resp.StatusCode != 403 || resp.Header.Get("X-Crewgate-Error") != errAddress {
				t.Errorf("plain HTTP %s: %d", u, resp.StatusCode)
			}
		}
	})
}

type fakeResolver map[string]string

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if ip, ok := f[host]; ok {
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestPlaceholderLeakIsBlocked(t *testing.T) {
	openai := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	crm := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	h := start(t, Config{Upstreams: []Upstream{
		openaiUpstream(openai),
		{Name: "crm", Hosts: []string{"crm.example.com"}, Address: crm.addr(), RootCAs: crm.pool(), Source: staticSource{token: "crm-token"}},
	}})
	cases := []struct {
		name string
		do   func() *http.Response
	}{
		{"header to another upstream", func() *http.Response {
			resp, _ := get(t, h.client, "https://crm.example.com/x", "X-Forward-Key", placeholder)
			return resp
		}},
		{"query to another upstream", func() *http.Response {
			resp, _ := get(t, h.client, "https://crm.example.com/x?key="+placeholder)
			return resp
		}},
		{"body to another upstream", func() *http.Response {
			resp, err := h.client.Post("https://crm.example.com/x", "application/json", strings.NewReader(`{"k":"`+placeholder+`"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}},
		{"plain HTTP to the internet", func() *http.Response {
			resp, _ := get(t, clientVia(h.url, nil), "http://127.0.0.1:9/?k="+placeholder)
			return resp
		}},
	}
	for _, tc := range cases {
		resp := tc.do()
		if resp.StatusCode != 403 || resp.Header.Get("X-Crewgate-Error") != errLeak {
			t.Errorf("%s: %d %q", tc.name, resp.StatusCode, resp.Header.Get("X-Crewgate-Error"))
		}
	}
	if n := len(crm.requests()); n != 0 {
		t.Errorf("crm received %d requests carrying the placeholder", n)
	}
	// The placeholder on its own upstream is fine.
	if resp, _ := get(t, h.client, "https://openai.example.com/", "Authorization", "Bearer "+placeholder); resp.StatusCode != 200 {
		t.Errorf("own upstream: %d", resp.StatusCode)
	}
}

func TestUpstreamTLSIsVerified(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	u := openaiUpstream(up)
	u.RootCAs = x509.NewCertPool() // trusts nothing: the upstream's certificate must be refused
	h := start(t, Config{Upstreams: []Upstream{u}})
	resp, body := get(t, h.client, "https://openai.example.com/")
	if resp.StatusCode != 502 || resp.Header.Get("X-Crewgate-Error") != errUpstream || !strings.Contains(body, "certificate") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if len(up.requests()) != 0 {
		t.Error("the credential went to an unverified upstream")
	}
}

func TestLoginRequiredAnswers502(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	u := openaiUpstream(up)
	u.Source = staticSource{err: fmt.Errorf("refresh: %w", creds.ErrLoginRequired)}
	h := start(t, Config{Upstreams: []Upstream{u}})
	resp, body := get(t, h.client, "https://openai.example.com/")
	if resp.StatusCode != 502 || resp.Header.Get("X-Crewgate-Error") != errLogin || !strings.Contains(body, "run 'crewgate login'") ||
		resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	u.Source = staticSource{err: errors.New("provider down")}
	h = start(t, Config{Upstreams: []Upstream{u}})
	if resp, _ := get(t, h.client, "https://openai.example.com/"); resp.StatusCode != 502 || resp.Header.Get("X-Crewgate-Error") != errToken ||
		resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("%d", resp.StatusCode)
	}
}

func TestPlainHTTPToUpstreamIsUpgradedToTLS(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	resp, body := get(t, h.client, "http://openai.example.com/v1")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if seen := up.requests(); seen[0].TLS == nil || seen[0].Header.Get("Authorization") != "Bearer "+realSecret {
		t.Errorf("upstream saw TLS=%v", seen[0].TLS != nil)
	}
}

// TestSSEStreamsThrough proves events reach the crew while the upstream is
// still generating: the upstream waits for the client to see each event.
func TestSSEStreamsThrough(t *testing.T) {
	next := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word%d \"}}]}\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	resp, err := h.client.Get("https://openai.example.com/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	got := 0
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: {") {
			if !strings.Contains(line, fmt.Sprintf("word%d", got)) {
				t.Errorf("event %d = %s", got, line)
			}
			got++
			next <- struct{}{}
		}
	}
	if got != 3 {
		t.Errorf("got %d events", got)
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	p, err := New(Config{Credential: "x", CA: fakeCA{}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	if err := p.Serve(ln); err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Errorf("Serve on %s: %v", ln.Addr(), err)
	}
}

type fakeCA struct{}

func (fakeCA) TLSConfig(string) (*tls.Config, error) { return nil, errors.New("no") }

// TestUpstreamProxyChain: crewgate's own proxy is used only when configured,
// never picked up from the environment by accident.
func TestUpstreamProxyChain(t *testing.T) {
	target := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	var connects sync.Map
	corp := goproxy.NewProxyHttpServer()
	corp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		connects.Store(host, true)
		return goproxy.OkConnect, host
	})
	corpSrv := httptest.NewServer(corp)
	defer corpSrv.Close()
	corpURL, _ := url.Parse(corpSrv.URL)

	// An HTTPS_PROXY in crewgate's environment that would break everything if used.
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	h := start(t, Config{DefaultAction: "tunnel"})
	if resp, body := get(t, clientVia(h.url, target.pool()), target.URL+"/"); resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("without a configured chain: %d %q", resp.StatusCode, body)
	}

	h = start(t, Config{DefaultAction: "tunnel", UpstreamProxy: corpURL})
	if resp, body := get(t, clientVia(h.url, target.pool()), target.URL+"/"); resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("through the chain: %d %q", resp.StatusCode, body)
	}
	if _, ok := connects.Load(target.addr()); !ok {
		t.Error("the tunnel did not go through the configured upstream proxy")
	}
}
