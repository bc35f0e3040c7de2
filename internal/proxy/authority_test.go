package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// misdirectionSetup is an upstream a route claims by name and port, with no
// fixed address (so the dial follows the request, as in production), and a
// server of the crew's choosing on another port of the same machine, with a
// certificate the route's roots accept. Both record what reaches them.
type misdirectionSetup struct {
	h          *harness
	legit, bad *upstream
	name       string // the route's authority, "example.com:PORT"
}

func newMisdirection(t *testing.T, rules string) *misdirectionSetup {
	t.Helper()
	ok := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	s := &misdirectionSetup{legit: newUpstream(t, ok), bad: newUpstream(t, ok)}
	_, port, _ := net.SplitHostPort(s.legit.addr())
	s.name = "example.com:" + port
	// httptest servers share one certificate (example.com, 127.0.0.1), so
	// the roots that verify the upstream also verify the crew's server.
	cfg := Config{
		Upstreams: []Upstream{{
			Name: "llm", Hosts: []string{s.name}, Source: staticSource{token: realSecret},
			Placeholder: placeholder, RootCAs: s.legit.pool(),
		}},
		Resolver: fakeResolver{"example.com": "127.0.0.1", "evil.test": "127.0.0.1"},
	}
	if rules != "" {
		cfg.Policy = compileRules(t, rules)
	}
	s.h = start(t, cfg)
	return s
}

// rawInTunnel opens a CONNECT to target, speaks TLS (SNI serverName) with
// the session CA as the only root, writes raw as the request, and reads the
// response.
func rawInTunnel(t *testing.T, h *harness, target, serverName, raw string) *http.Response {
	t.Helper()
	return writeRaw(t, tunnelTLS(t, h, target, serverName), raw)
}

func writeRaw(t *testing.T, c net.Conn, raw string) *http.Response {
	t.Helper()
	resp, err := tryRaw(c, raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return resp
}

// tryRaw writes raw and reads the response; an error when the proxy closed
// the connection instead of answering.
func tryRaw(c net.Conn, raw string) (*http.Response, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp, nil
}

// tunnelTLS opens a CONNECT to target and speaks TLS in it with the session
// CA as the only root.
func tunnelTLS(t *testing.T, h *harness, target, serverName string) net.Conn {
	t.Helper()
	c := connectOnly(t, h, target)
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.Certificate())
	tc := tls.Client(c, &tls.Config{ServerName: serverName, RootCAs: roots})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS in CONNECT %s: %v", target, err)
	}
	return tc
}

// connectOnly sends an authenticated CONNECT and returns the connection
// once the proxy answers 200.
func connectOnly(t *testing.T, h *harness, target string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.url.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pw, _ := h.url.User.Password()
	req, _ := http.NewRequest("CONNECT", "http://"+target, nil)
	req.Host = target
	req.URL = nil
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target, basic("crewgate", pw))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	if br.Buffered() > 0 {
		t.Fatal("bytes after the CONNECT response")
	}
	return c
}

func basic(user, pw string) string {
	r, _ := http.NewRequest("GET", "http://x", nil)
	r.SetBasicAuth(user, pw)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// TestOneAuthorityPerConnection plays the crew: inside an intercepted
// CONNECT it names another host or port in Host or in an absolute-form
// target, hoping crewgate sends the injected credential there.
func TestOneAuthorityPerConnection(t *testing.T) {
	s := newMisdirection(t, "")
	_, badPort, _ := net.SplitHostPort(s.bad.addr())
	attacks := map[string]string{
		"Host names another server":   "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:" + badPort + "\r\n\r\n",
		"Host names another name":     "GET /v1/models HTTP/1.1\r\nHost: evil.test:" + badPort + "\r\n\r\n",
		"same name, another port":     "GET /v1/models HTTP/1.1\r\nHost: example.com:" + badPort + "\r\n\r\n",
		"same name, default port":     "GET /v1/models HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"absolute-form target":        "GET https://127.0.0.1:" + badPort + "/v1/models HTTP/1.1\r\nHost: " + s.name + "\r\n\r\n",
		"absolute-form, http scheme":  "GET http://evil.test:" + badPort + "/v1/models HTTP/1.1\r\nHost: " + s.name + "\r\n\r\n",
		"absolute-form, right Host":   "GET https://evil.test:" + badPort + "/ HTTP/1.1\r\nHost: evil.test:" + badPort + "\r\n\r\n",
		"authority with user info":    "GET /v1/models HTTP/1.1\r\nHost: " + s.name + "@127.0.0.1:" + badPort + "\r\n\r\n",
		"port with a leading plus":    "GET /v1/models HTTP/1.1\r\nHost: example.com:+" + strings.SplitN(s.name, ":", 2)[1] + "\r\n\r\n",
		"a second, different Host":    "GET /v1/models HTTP/1.1\r\nHost: " + s.name + "\r\nHost: 127.0.0.1:" + badPort + "\r\n\r\n",
		"placeholder to another host": "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:" + badPort + "\r\nAuthorization: Bearer " + placeholder + "\r\n\r\n",
	}
	var refused int64
	for name, raw := range attacks {
		t.Run(name, func(t *testing.T) {
			resp, err := tryRaw(tunnelTLS(t, s.h, s.name, "example.com"), raw)
			if err != nil {
				return // the parser refused it and the connection closed: nothing went anywhere
			}
			if resp.StatusCode == http.StatusMisdirectedRequest {
				refused++
			}
			if resp.StatusCode == 200 {
				t.Fatalf("got 200: the request went somewhere")
			}
			if resp.StatusCode == http.StatusMisdirectedRequest && refusalOf(t, resp).Error != errMisdirected {
				t.Errorf("421 without the misdirected-request refusal")
			}
			if resp.StatusCode != http.StatusMisdirectedRequest && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 421 (or 400 from the parser)", resp.StatusCode)
			}
		})
	}
	if n := len(s.bad.requests()); n != 0 {
		t.Errorf("the crew's server got %d requests", n)
	}
	if n := len(s.legit.requests()); n != 0 {
		t.Errorf("the upstream got %d misdirected requests", n)
	}

	// Controls: the connection's own authority, in any case, with a
	// trailing dot or in absolute form, is served, with the credential.
	for _, raw := range []string{
		"GET /v1/models HTTP/1.1\r\nHost: " + s.name + "\r\n\r\n",
		"GET /v1/models HTTP/1.1\r\nHost: EXAMPLE.com.:" + strings.SplitN(s.name, ":", 2)[1] + "\r\n\r\n",
		"GET https://" + s.name + "/v1/models HTTP/1.1\r\nHost: " + s.name + "\r\n\r\n",
	} {
		if resp := rawInTunnel(t, s.h, s.name, "example.com", raw); resp.StatusCode != 200 {
			t.Errorf("%q: %d", raw, resp.StatusCode)
		}
	}
	seen := s.legit.requests()
	if len(seen) != 3 {
		t.Fatalf("the upstream got %d requests, want 3", len(seen))
	}
	for _, r := range seen {
		if r.Header.Get("Authorization") != "Bearer "+realSecret {
			t.Errorf("the upstream got Authorization %q", r.Header.Get("Authorization"))
		}
	}
	if st := s.h.proxy.Stats(); st.Denied != refused {
		t.Errorf("stats %+v: want %d denied, once each", st, refused)
	}
}

// TestPlainHTTPInsideTunnelGoesOverTLS: a crew that speaks plain HTTP inside
// an intercepted CONNECT still gets its request sent over verified TLS.
func TestPlainHTTPInsideTunnelGoesOverTLS(t *testing.T) {
	s := newMisdirection(t, "")
	c := connectOnly(t, s.h, s.name)
	resp := writeRaw(t, c, "GET /v1/models HTTP/1.1\r\nHost: "+s.name+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	seen := s.legit.requests()
	if len(seen) != 1 || seen[0].TLS == nil {
		t.Fatalf("the upstream saw %d requests, over TLS: %v", len(seen), len(seen) == 1 && seen[0].TLS != nil)
	}
}

// TestRouteIsBoundToPort: a configured name on another port is not the
// upstream, so it gets no credential (here: a blind tunnel).
func TestRouteIsBoundToPort(t *testing.T) {
	bad := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "other") })
	_, badPort, _ := net.SplitHostPort(bad.addr())
	h := start(t, Config{
		Upstreams: []Upstream{{Name: "llm", Hosts: []string{"example.com"}, Source: staticSource{token: realSecret}, RootCAs: bad.pool()}},
		Resolver:  fakeResolver{"example.com": "127.0.0.1"},
	})
	// The crew trusts the real server here: a tunnel shows its certificate.
	resp, body := get(t, clientVia(h.url, bad.pool()), "https://example.com:"+badPort+"/v1/models")
	if resp.StatusCode != 200 || body != "other" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got := bad.requests()[0].Header.Get("Authorization"); got != "" {
		t.Errorf("a server on another port got Authorization %q", got)
	}
	if st := h.proxy.Stats(); st.Tunnels != 1 {
		t.Errorf("stats %+v, want one tunnel", st)
	}
}

// TestHostRulesBoundToAuthority: a deny on the upstream's host cannot be
// walked past by naming another host inside the tunnel.
func TestHostRulesBoundToAuthority(t *testing.T) {
	s := newMisdirection(t, `  - name: no-admin
    action: deny
    match: {hosts: [example.com], path: "/admin*"}
`)
	_, badPort, _ := net.SplitHostPort(s.bad.addr())
	for _, host := range []string{"evil.test:" + badPort, "127.0.0.1:" + badPort} {
		resp := rawInTunnel(t, s.h, s.name, "example.com", "GET /admin/users HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		if resp.StatusCode == 200 {
			t.Errorf("Host %s: the deny rule was walked past", host)
		}
	}
	resp := rawInTunnel(t, s.h, s.name, "example.com", "GET /admin/users HTTP/1.1\r\nHost: "+s.name+"\r\n\r\n")
	if resp.StatusCode != 403 || refusalOf(t, resp).Error != errPolicy {
		t.Errorf("the rule's own host: %d", resp.StatusCode)
	}
	if n := len(s.legit.requests()) + len(s.bad.requests()); n != 0 {
		t.Errorf("%d requests reached a server", n)
	}
}

// TestCurlCannotRedirectTheCredential is the one-line attack of the issue,
// with the real curl as the crew.
func TestCurlCannotRedirectTheCredential(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	s := newMisdirection(t, "")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.h.ca.Certificate().Raw}), 0o600)
	_, badPort, _ := net.SplitHostPort(s.bad.addr())
	run := func(extra ...string) string {
		args := append([]string{"-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", s.h.url.String(), "--cacert", caFile}, extra...)
		out, err := exec.Command(curl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", extra, err, out)
		}
		return string(out)
	}
	if code := run("-H", "Host: 127.0.0.1:"+badPort, "https://"+s.name+"/v1/models"); code != "421" {
		t.Errorf("curl with a foreign Host: %s, want 421", code)
	}
	if code := run("-H", "Host: evil.test:443", "https://"+s.name+"/v1/models"); code != "421" {
		t.Errorf("curl with Host evil.test:443: %s, want 421", code)
	}
	if n := len(s.bad.requests()) + len(s.legit.requests()); n != 0 {
		t.Errorf("%d requests reached a server", n)
	}
	if code := run("https://" + s.name + "/v1/models"); code != "200" {
		t.Errorf("control: %s", code)
	}
}

func TestDeniedAddressForms(t *testing.T) {
	for _, c := range []struct {
		ip     string
		denied bool
	}{
		{"169.254.169.254", true},
		{"fe80::1%lo", true},
		{"fe80::1%25eth0", true},
		{"::ffff:169.254.169.254", true},
		{"64:ff9b::a9fe:a9fe", true},       // NAT64 well-known prefix
		{"64:ff9b:1:a9fe:a9:fe00::", true}, // NAT64 local-use, /48 layout
		{"64:ff9b:1::a9fe:a9fe", true},     // NAT64 local-use, /96 layout
		{"2002:a9fe:a9fe::1", true},        // 6to4
		{"2001:0:1:2:0:0:5601:5601", true}, // Teredo client 169.254.169.254 (inverted)
		{"::169.254.169.254", true},        // IPv4-compatible
		{"fd00:ec2::254", true},            // AWS over IPv6
		{"100.100.100.200", true},          // Alibaba
		{"0.0.0.0", true},
		{"::", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"93.184.216.34", false},
		{"64:ff9b::5db8:d822", false}, // NAT64 of a public address
		{"2606:4700::1111", false},
	} {
		ip, err := netip.ParseAddr(c.ip)
		if err != nil {
			t.Fatalf("%s: %v", c.ip, err)
		}
		if got := deniedIP(ip); got != c.denied {
			t.Errorf("deniedIP(%s) = %v, want %v", c.ip, got, c.denied)
		}
	}
}

// TestBoundsInsideTunnels: a huge head inside an intercepted connection is
// refused (it would otherwise be forwarded with the credential), and a head
// that trickles in is dropped, as on the outer port.
func TestBoundsInsideTunnels(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := Config{Upstreams: []Upstream{openaiUpstream(up)}, HeaderTimeout: 300 * time.Millisecond}
	h := start(t, cfg)

	huge := "GET /v1/models HTTP/1.1\r\nHost: openai.example.com\r\nX-Pad: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"
	for name, conn := range map[string]func() net.Conn{
		"outer port": func() net.Conn {
			c, err := net.Dial("tcp", h.url.Host)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
		"intercepted": func() net.Conn { return tunnelTLS(t, h, "openai.example.com:443", "openai.example.com") },
	} {
		t.Run(name+", huge head", func(t *testing.T) {
			c := conn()
			go io.WriteString(c, huge)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer to a 2 MiB head: %v", err)
			}
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("status %d, want 431", resp.StatusCode)
			}
		})
		t.Run(name+", slow head", func(t *testing.T) {
			c := conn()
			io.WriteString(c, "GET /v1/models HTTP/1.1\r\nHost: openai")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			_, err := c.Read(make([]byte, 1024))
			if err == nil {
				// net/http may answer 408 before it closes; then the close follows.
				_, err = c.Read(make([]byte, 1024))
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the slow head was still open after %v", time.Since(start))
			}
		})
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
	// Control: a normal request on a new intercepted connection still works.
	if resp, _ := get(t, h.client, "https://openai.example.com/v1/models"); resp.StatusCode != 200 {
		t.Errorf("control: %d", resp.StatusCode)
	}
}

// TestPlainHTTPHostHeaderNeverLeaves: Go's server drops a Host header that
// disagrees with an absolute-form target before crewgate sees it, so the
// request goes to the target's authority and the crew's Host goes nowhere.
func TestPlainHTTPHostHeaderNeverLeaves(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = append(seen, r.Host) }))
	t.Cleanup(srv.Close)
	h := start(t, Config{DefaultAction: "tunnel"})
	c, err := net.Dial("tcp", h.url.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pw, _ := h.url.User.Password()
	target := strings.TrimPrefix(srv.URL, "http://")
	resp := writeRaw(t, c, "GET http://"+target+"/x HTTP/1.1\r\nHost: evil.test\r\nProxy-Authorization: Basic "+basic("crewgate", pw)+"\r\n\r\n")
	if resp.StatusCode != 200 || len(seen) != 1 || seen[0] != target {
		t.Errorf("status %d, the server saw Host %q, want %q", resp.StatusCode, seen, target)
	}
}
