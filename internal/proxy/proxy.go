// Package proxy is crewgate's localhost forward proxy: it authenticates the
// crew with the session's proxy credential, routes each host to interception,
// a blind tunnel or a refusal, injects the real credential for configured
// upstreams, and masks their responses as they stream.
//
// The proxy is built by a pure constructor from a Config (upstreams with their
// credential sources and masking configuration, the session CA, the proxy
// credential) and started separately with Serve. It is built on goproxy; the
// crew talks HTTP/1.1 to it, also inside intercepted TLS.
//
// Every refusal of crewgate's own is a 403 with a small JSON body (error,
// rule, reason, session) and an X-Crewgate-Error header; 407 asks for the
// proxy credential; 502 is an upstream or token failure.
package proxy

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/elazarl/goproxy"
	"golang.org/x/sync/semaphore"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/authority"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/mask"
	"github.com/crewgate/crewgate/internal/policy"
)

// CredentialSource yields the real credential value for one upstream.
type CredentialSource interface {
	Token(ctx context.Context) (string, error)
}

// CA issues the certificates the proxy presents for intercepted hosts.
type CA interface {
	TLSConfig(host string) (*tls.Config, error)
}

// Upstream is a service whose traffic crewgate intercepts.
type Upstream struct {
	Name  string
	Hosts []string // exact names or "*.suffix", each optionally with ":port" (see package authority)
	// Source yields the credential to inject; nil injects nothing.
	Source CredentialSource
	Header string // header that carries the credential; "" means Authorization
	Format string // text/template with {{.Token}}; "" means "Bearer {{.Token}}"
	// Placeholder is the value the crew holds instead of the credential; ""
	// when the upstream gives the crew none.
	Placeholder string
	// Address is a host:port to dial instead of resolving the host name.
	Address string
	// RootCAs verifies the upstream's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// ResponseMask configures response masking; RequestMask, when not nil,
	// masks request bodies on the way out.
	ResponseMask mask.Config
	RequestMask  *mask.Config
}

// Config is everything a Proxy needs.
type Config struct {
	Upstreams []Upstream
	// DefaultAction applies to hosts no upstream claims: "tunnel" (CONNECT
	// passed through uninspected) or "deny".
	DefaultAction string
	CA            CA
	// Credential is the proxy password the crew must present.
	Credential string
	Session    string
	// UpstreamProxy, when set, is the proxy crewgate itself must use to reach
	// the internet (its own HTTPS_PROXY, read once at start).
	UpstreamProxy *url.URL
	Logger        *slog.Logger
	// Resolver resolves host names before the deny check; nil means
	// net.DefaultResolver.
	Resolver Resolver
	// Policy decides each request; nil allows everything.
	Policy *policy.Policy
	// Identity is who the crew runs as, for the policy's identity
	// conditions and approval prompts; nil when nobody is logged in.
	Identity *identity.Identity
	// Approver asks a human about requests an approve rule matches; nil
	// denies them, since approval fails closed.
	Approver approval.Approver
	// Recorder keeps the audit log; nil records nothing.
	Recorder Recorder
	// BodyMemory bounds the request bodies held at once for rules to read
	// (the bytes as sent and their decoded views), across all requests
	// (mask.memory); 0 means 256 MiB.
	BodyMemory int64
	// HeaderTimeout bounds how long a request head may take to arrive, on
	// the outer port and inside intercepted connections; 0 means 30 s.
	HeaderTimeout time.Duration
}

// Resolver looks up host addresses.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Stats counts what the proxy did in this session.
type Stats struct {
	Requests int64 // requests seen, including refused ones and CONNECT tunnels
	Denied   int64 // refusals of crewgate's own (403)
	Masked   int64 // replacements made by masking
	Tunnels  int64 // CONNECT tunnels passed through uninspected
}

// Proxy is a running or ready-to-run crewgate proxy.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	gp     *goproxy.ProxyHttpServer
	routes []*route
	auth   []byte // the expected Proxy-Authorization value

	direct  *http.Transport     // for hosts no upstream claims
	foreign []*route            // upstreams with a placeholder: none may leave for another host
	leak    *leakFinder         // finds their placeholders, for hosts no upstream claims
	lits    *literals           // credentials injected so far, masked everywhere
	preview *maskers            // masks request bodies shown in approval prompts
	who     string              // the identity as prompts show it
	bodies  *semaphore.Weighted // bytes of bodies held for rules (Config.BodyMemory)

	requests, denied, masked, tunnels atomic.Int64

	mu     sync.Mutex
	srv    *http.Server
	conns  map[net.Conn]struct{} // intercepted connections, served outside srv
	closed bool
}

// route is one upstream, ready to serve.
type route struct {
	Upstream
	patterns  []authority.Pattern
	format    *template.Template
	transport *http.Transport
	resp      *maskers
	req       *maskers
	foreign   []*route // the other upstreams with a placeholder: it must not reach this one
	leak      *leakFinder
	last      atomic.Pointer[injected]
}

// New builds a proxy from cfg. It does not listen yet.
func New(cfg Config) (*Proxy, error) {
	if cfg.Credential == "" {
		return nil, errors.New("proxy: empty proxy credential")
	}
	if cfg.CA == nil {
		return nil, errors.New("proxy: no CA")
	}
	switch cfg.DefaultAction {
	case "":
		cfg.DefaultAction = "tunnel"
	case "tunnel", "deny":
	default:
		return nil, fmt.Errorf("proxy: default action %q is not tunnel or deny", cfg.DefaultAction)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.BodyMemory <= 0 {
		cfg.BodyMemory = 256 << 20
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = readHeaderTimeout
	}
	p := &Proxy{
		bodies: semaphore.NewWeighted(cfg.BodyMemory),
		cfg:    cfg,
		log:    cfg.Logger,
		auth:   []byte("Basic " + base64.StdEncoding.EncodeToString([]byte("crewgate:"+cfg.Credential))),
	}
	p.direct = p.newTransport(nil, "")
	p.lits = newLiterals()
	for _, u := range cfg.Upstreams {
		r := &route{Upstream: u}
		for _, h := range u.Hosts {
			pat, err := authority.ParsePattern(h)
			if err != nil {
				return nil, fmt.Errorf("proxy: upstream %s: %w", u.Name, err)
			}
			r.patterns = append(r.patterns, pat)
		}
		if r.Header == "" {
			r.Header = "Authorization"
		}
		if r.Format == "" {
			r.Format = "Bearer {{.Token}}"
		}
		t, err := template.New(u.Name).Option("missingkey=error").Parse(r.Format)
		if err != nil {
			return nil, fmt.Errorf("proxy: upstream %s: credential format: %w", u.Name, err)
		}
		r.format = t
		r.transport = p.newTransport(u.RootCAs, u.Address)
		respMask := u.ResponseMask
		respMask.Budget = bodyBudget{p.bodies}
		if r.resp, err = newMaskers(respMask, p.lits); err != nil {
			return nil, fmt.Errorf("proxy: upstream %s: response masking: %w", u.Name, err)
		}
		if u.RequestMask != nil {
			if r.req, err = newMaskers(*u.RequestMask, p.lits); err != nil {
				return nil, fmt.Errorf("proxy: upstream %s: request masking: %w", u.Name, err)
			}
		}
		p.routes = append(p.routes, r)
	}
	for _, r := range p.routes {
		if r.Placeholder == "" {
			continue
		}
		p.foreign = append(p.foreign, r)
		for _, other := range p.routes {
			if other != r {
				other.foreign = append(other.foreign, r)
			}
		}
	}
	p.leak = newLeakFinder(p.foreign)
	for _, r := range p.routes {
		r.leak = newLeakFinder(r.foreign)
	}
	var err error
	if p.preview, err = newMaskers(mask.Config{}, p.lits); err != nil {
		return nil, fmt.Errorf("proxy: preview masking: %w", err)
	}
	if id := cfg.Identity; id != nil {
		p.who = id.Subject
		if id.Email != "" {
			p.who += " <" + id.Email + ">"
		}
	}
	p.gp = p.newGoproxy()
	return p, nil
}

// newTransport is how crewgate reaches upstreams: TLS always verified,
// crewgate's own upstream proxy only when configured, never from the
// environment by accident, and address checks on every dial.
func (p *Proxy) newTransport(roots *x509.CertPool, address string) *http.Transport {
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           p.dialer(address),
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if p.cfg.UpstreamProxy != nil && address == "" {
		t.Proxy = http.ProxyURL(p.cfg.UpstreamProxy)
	}
	return t
}

// Serve accepts the crew's connections on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error {
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		return fmt.Errorf("proxy: refusing to listen on %s: loopback only", ln.Addr())
	}
	srv := &http.Server{Handler: p.gp, ReadHeaderTimeout: p.cfg.HeaderTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: slogErrorLog(p.log)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return http.ErrServerClosed
	}
	p.srv = srv
	p.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops accepting connections and closes idle upstream connections.
// Intercepted connections in flight are closed too.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	srv := p.srv
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Close()
	}
	p.direct.CloseIdleConnections()
	for _, r := range p.routes {
		r.transport.CloseIdleConnections()
	}
	return err
}

// Stats returns the session's counters so far.
func (p *Proxy) Stats() Stats {
	return Stats{Requests: p.requests.Load(), Denied: p.denied.Load(), Masked: p.masked.Load(), Tunnels: p.tunnels.Load()}
}

// authorized checks the proxy credential in constant time.
func (p *Proxy) authorized(h http.Header) bool {
	got := []byte(h.Get("Proxy-Authorization"))
	return subtle.ConstantTimeCompare(got, p.auth) == 1
}

// match finds the upstream that claims a, and the hosts entry that did;
// defaultPort is what an entry without a port stands for (authority.HTTPS
// for CONNECT, authority.HTTP for plain-HTTP proxy requests).
func (p *Proxy) match(a authority.Authority, defaultPort string) (*route, authority.Pattern) {
	for _, r := range p.routes {
		for _, h := range r.patterns {
			if h.Match(a, defaultPort) {
				return r, h
			}
		}
	}
	return nil, authority.Pattern{}
}
