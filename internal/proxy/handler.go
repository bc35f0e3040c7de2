package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/elazarl/goproxy"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/authority"
	"github.com/crewgate/crewgate/internal/creds"
	"github.com/crewgate/crewgate/internal/policy"
)

// maxPrefix is how much of a request body is read before it is sent: what
// placeholder checks, body rules and approval previews see.
const maxPrefix = policy.MaxBody

// maxPreview caps the masked body preview an approval prompt and the log
// show; previewLookahead is how much further the text is masked so that no
// secret across the cut survives in part.
const (
	maxPreview       = 2 << 10
	previewLookahead = 4 << 10
)

// Refusal kinds, sent in X-Crewgate-Error and the JSON body's "error".
const (
	errProxyAuth    = "proxy-auth-required"
	errEgress       = "egress-denied"
	errAddress      = "address-denied"
	errLeak         = "placeholder-leak"
	errLogin        = "login-required"
	errToken        = "credential-unavailable"
	errUpstream     = "upstream-unreachable"
	errNotAProxy    = "not-a-proxy-request"
	errRequestMask  = "request-masking-failed"
	errPolicy       = "policy-denied"
	errMisdirected  = "misdirected-request"
	errBadAuthority = "bad-authority"
)

// mitmConn is what an intercepted CONNECT fixed for every request inside it.
type mitmConn struct {
	route     *route
	authority authority.Authority
}

// sameAuthority checks that every authority the request names (its Host
// header and an absolute-form target) is want.
func sameAuthority(req *http.Request, want authority.Authority, defaultPort string) error {
	names := append([]string{req.Host, req.URL.Host}, req.Header.Values("Host")...)
	for _, hp := range names {
		if hp == "" {
			continue
		}
		a, err := authority.Parse(hp, defaultPort)
		if err != nil || a != want {
			return fmt.Errorf("the request names %s, but this connection is to %s; one connection serves one host and port", printableHost(hp), want)
		}
	}
	return nil
}

// printableHost quotes a crew-chosen host for a log line or refusal.
func printableHost(s string) string {
	if len(s) > 256 {
		s = s[:256] + "..."
	}
	return strconv.Quote(s)
}

// approvalErrors names the refusal for each way an approval can end in "no".
var approvalErrors = map[string]string{
	"denied":   "approval-denied",
	"timeout":  "approval-timeout",
	"headless": "approval-unavailable",
	"shutdown": "approval-shutdown",
}

// reqState follows one request from the request handler to the response
// handler.
type reqState struct {
	route   *route // nil: not intercepted
	ownResp bool   // the response is crewgate's own (a refusal or error)

	id       string    // the audit log's request id
	start    time.Time // when crewgate got the request
	rule     string    // the policy rule that decided, if any
	decision string    // audit.DecisionAllow or audit.DecisionApprove once allowed
	sent     *audit.BodyTap

	preview     string // the masked body preview, once made
	previewDone bool

	prefixRead bool
	body       []byte // the first maxPrefix bytes of the request body
	truncated  bool   // the body is longer than body
}

// prefix reads the first maxPrefix bytes of the request body once, and puts
// them back in front of the rest so the upstream still gets all of it.
func (st *reqState) prefix(req *http.Request) ([]byte, bool) {
	if st.prefixRead {
		return st.body, st.truncated
	}
	st.prefixRead = true
	if req.Body == nil || req.Body == http.NoBody {
		return nil, false
	}
	buf, _ := io.ReadAll(io.LimitReader(req.Body, maxPrefix+1))
	if len(buf) > maxPrefix {
		st.body, st.truncated = buf[:maxPrefix], true
	} else {
		st.body = buf
	}
	req.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
	return st.body, st.truncated
}

func (p *Proxy) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Verbose = false
	gp.Logger = log.New(io.Discard, "", 0)
	// NewProxyHttpServer wires crewgate's own HTTPS_PROXY into Tr and
	// ConnectDial; replace both so nothing is picked up by accident.
	gp.Tr = p.direct
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = nil
	gp.AllowHTTP2 = false
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRefusal(w, p.cfg.Session, http.StatusBadRequest, errNotAProxy, "", "crewgate is a proxy: send requests with an absolute URL or CONNECT")
	})
	gp.OnRequest().HandleConnectFunc(p.handleConnect)
	gp.OnRequest().DoFunc(p.handleRequest)
	return gp
}

// handleConnect authenticates a CONNECT and routes its host.
// An intercepted CONNECT is not counted: the requests inside it are.
func (p *Proxy) handleConnect(hostport string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	if !p.authorized(ctx.Req.Header) {
		p.requests.Add(1)
		p.log.Warn("request refused", "kind", errProxyAuth, "method", "CONNECT", "host", hostport)
		return &goproxy.ConnectAction{Action: goproxy.ConnectProxyAuthHijack, Hijack: hijack407}, hostport
	}
	a, err := authority.Parse(hostport, authority.HTTPS)
	if err != nil {
		p.requests.Add(1)
		return p.rejectConnect(ctx, http.StatusBadRequest, errBadAuthority, "", err.Error()), hostport
	}
	host, port := a.Host, a.Port
	if r, _ := p.match(a, authority.HTTPS); r != nil {
		mc := &mitmConn{route: r, authority: a}
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: func(_ *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
			p.serveMITM(client, mc)
		}}, hostport
	}
	p.requests.Add(1)
	if p.cfg.DefaultAction == "deny" {
		return p.rejectConnect(ctx, http.StatusForbidden, errEgress, "default_action", host+" is not a configured upstream and default_action is deny"), hostport
	}
	ips, err := p.allowedIPs(ctx.Req.Context(), host)
	if err != nil {
		return p.rejectConnect(ctx, http.StatusForbidden, errAddress, "", err.Error()), hostport
	}
	// A tunnel shows crewgate only its host: rules on the host, the
	// CONNECT method and the identity decide it.
	preq := &policy.Request{Method: http.MethodConnect, Host: strings.ToLower(host), Header: http.Header{}}
	st := &reqState{id: p.nextID(), start: time.Now()}
	v := p.decide(ctx.Req.Context(), preq, "https://"+hostport, st, nil)
	if v.kind != "" {
		return p.rejectConnect(ctx, http.StatusForbidden, v.kind, v.rule, v.reason), hostport
	}
	p.record(p.requestEvent(ctx.Req, st, v.action, "", ""))
	ctx.Dialer = p.countTunnel(p.tunnelDialer(ips, port), hostport, st)
	p.tunnels.Add(1)
	return &goproxy.ConnectAction{Action: goproxy.ConnectAccept}, hostport
}

func (p *Proxy) rejectConnect(ctx *goproxy.ProxyCtx, code int, kind, rule, reason string) *goproxy.ConnectAction {
	p.denied.Add(1)
	p.log.Warn("request refused", "kind", kind, "method", "CONNECT", "host", ctx.Req.URL.Host, "reason", reason)
	ctx.Resp = refusal(ctx.Req, p.cfg.Session, code, kind, rule, reason)
	p.recordRefusal(ctx.Req, &reqState{id: p.nextID(), start: time.Now(), rule: rule}, ctx.Resp, kind, reason)
	return &goproxy.ConnectAction{Action: goproxy.ConnectReject}
}

// countTunnel wraps a tunnel's dialer so the tunnel is recorded, with its
// bytes each way, when it closes.
func (p *Proxy) countTunnel(dial func(context.Context, string, string) (net.Conn, error), hostport string, st *reqState) func(context.Context, string, string) (net.Conn, error) {
	if p.cfg.Recorder == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, done: func(up, down int64) {
			p.record(audit.Event{Type: audit.TypeTunnel, ID: st.id, Tunnel: &audit.Tunnel{
				Host: hostport, BytesUp: up, BytesDown: down, DurationMS: time.Since(st.start).Milliseconds(),
			}})
		}}, nil
	}
}

// hijack407 completes the 407 status line goproxy has written.
func hijack407(_ *http.Request, conn net.Conn, _ *goproxy.ProxyCtx) {
	io.WriteString(conn, "Proxy-Authenticate: Basic realm=\"crewgate\"\r\nX-Crewgate-Error: "+errProxyAuth+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	conn.Close()
}

// handleRequest runs for plain-HTTP proxy requests and for every request
// inside an intercepted CONNECT.
func (p *Proxy) handleRequest(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	mc, inMITM := ctx.UserData.(*mitmConn)
	st := &reqState{id: p.nextID(), start: time.Now()}
	ctx.UserData = st
	refuse := func(code int, kind, rule, reason string) (*http.Request, *http.Response) {
		if code == http.StatusForbidden || code == http.StatusMisdirectedRequest {
			p.denied.Add(1)
		}
		st.ownResp = true
		st.rule = rule
		p.log.Warn("request refused", "kind", kind, "method", req.Method, "host", req.URL.Host, "path", req.URL.Path, "reason", reason)
		resp := refusal(req, p.cfg.Session, code, kind, rule, reason)
		p.recordRefusal(req, st, resp, kind, reason)
		return req, resp
	}

	p.requests.Add(1)
	var r *route
	var dest authority.Authority // the one authority the request goes to
	if inMITM {
		dest = mc.authority
		// One authority per connection: whatever the crew writes in Host or
		// an absolute-form target, the request goes to the CONNECT's host
		// and port, or nowhere.
		if err := sameAuthority(req, mc.authority, authority.HTTPS); err != nil {
			return refuse(http.StatusMisdirectedRequest, errMisdirected, "", err.Error())
		}
		r = mc.route
		req.URL.Scheme = "https" // also for plain HTTP inside the tunnel: never a credential in clear text
		req.URL.Host = mc.authority.Host
		if mc.authority.Port != authority.HTTPS {
			req.URL.Host = mc.authority.String()
		}
	} else {
		if !p.authorized(req.Header) {
			_, resp := refuse(http.StatusProxyAuthRequired, errProxyAuth, "", "send the proxy credential from HTTP_PROXY")
			resp.Header.Set("Proxy-Authenticate", `Basic realm="crewgate"`)
			return req, resp
		}
		req.Header.Del("Proxy-Authorization")
		a, err := authority.Parse(req.URL.Host, authority.HTTP)
		if err != nil {
			return refuse(http.StatusBadRequest, errBadAuthority, "", err.Error())
		}
		dest = a
		if err := sameAuthority(req, a, authority.HTTP); err != nil {
			return refuse(http.StatusMisdirectedRequest, errMisdirected, "", err.Error())
		}
		var pat authority.Pattern
		if r, pat = p.match(a, authority.HTTP); r != nil {
			// Never send a credential in clear text: talk TLS to the
			// upstream, on 443 unless the hosts entry names a port.
			req.URL.Scheme = "https"
			req.URL.Host = a.Host
			if pat.Port != "" {
				req.URL.Host = a.String()
			}
		}
	}
	st.route = r

	if p.cfg.Recorder != nil {
		st.prefix(req) // the log shows a masked preview of the body as sent
	}
	if other := p.leakedPlaceholder(req, r, st); other != "" {
		req2, resp := refuse(http.StatusForbidden, errLeak, "placeholder", "the request carries the placeholder of upstream "+other+", which belongs to its own host only")
		p.record(audit.Event{Type: audit.TypeLeak, ID: st.id, Leak: &audit.Leak{Upstream: other, To: req.URL.Host}})
		return req2, resp
	}
	if p.cfg.Policy != nil {
		preq := &policy.Request{Method: req.Method, Host: dest.Host, Path: req.URL.Path, Header: req.Header}
		if p.cfg.Policy.NeedsBody() {
			preq.Body, preq.BodyTruncated = st.prefix(req)
		}
		v := p.decide(req.Context(), preq, redactURL(req.URL), st, func() string { return p.previewOf(req, st) })
		if v.kind != "" {
			return refuse(http.StatusForbidden, v.kind, v.rule, v.reason)
		}
		st.rule, st.decision = v.rule, v.action
	}

	if r == nil {
		host := dest.Host
		if p.cfg.DefaultAction == "deny" {
			return refuse(http.StatusForbidden, errEgress, "default_action", host+" is not a configured upstream and default_action is deny")
		}
		if _, err := p.allowedIPs(req.Context(), host); err != nil {
			return refuse(http.StatusForbidden, errAddress, "", err.Error())
		}
		ctx.RoundTripper = p.roundTripper(p.direct, st)
		return req, nil
	}

	if r.Source != nil {
		token, err := r.Source.Token(req.Context())
		switch {
		case errors.Is(err, creds.ErrLoginRequired):
			return refuse(http.StatusBadGateway, errLogin, "", "the login has expired: run 'crewgate login', then restart the crew")
		case err != nil:
			return refuse(http.StatusBadGateway, errToken, "", "no credential for upstream "+r.Name+": "+err.Error())
		}
		p.inject(req, r, token)
	} else {
		stripPlaceholder(req.Header, r.Placeholder)
	}

	if r.req != nil && req.Body != nil && req.Body != http.NoBody {
		eng, err := r.req.engine()
		if err != nil {
			return refuse(http.StatusBadGateway, errRequestMask, "", err.Error())
		}
		body, counts := eng.Wrap(req.Body, req.Header.Get("Content-Type"), req.Header.Get("Content-Encoding"))
		req.Body = &countingBody{ReadCloser: body, counts: counts, total: &p.masked}
		req.ContentLength = -1
		req.Header.Del("Content-Length")
		if counts.Decoded() {
			req.Header.Del("Content-Encoding")
		}
	}
	ctx.RoundTripper = p.roundTripper(r.transport, st)
	return req, nil
}

// inject removes what the crew sent as credentials and sets the real one.
func (p *Proxy) inject(req *http.Request, r *route, token string) {
	req.Header.Del(r.Header)
	stripPlaceholder(req.Header, r.Placeholder)
	req.Header.Set(r.Header, p.headerValue(r, token))
}

// headerValue formats token for r's credential header. A token stays the
// same for many requests, so the value is kept until the token changes; a
// new token is also added to the values masking always hides.
func (p *Proxy) headerValue(r *route, token string) string {
	if last := r.last.Load(); last != nil && last.token == token {
		return last.value
	}
	p.lits.add(token)
	var b strings.Builder
	if err := r.format.Execute(&b, struct{ Token string }{token}); err != nil {
		b.Reset()
		b.WriteString(token)
	}
	r.last.Store(&injected{token: token, value: b.String()})
	return b.String()
}

// injected is the last credential a route injected, formatted.
type injected struct{ token, value string }

// stripPlaceholder removes every header that carries the placeholder.
func stripPlaceholder(h http.Header, placeholder string) {
	if placeholder == "" {
		return
	}
	for name, vals := range h {
		for _, v := range vals {
			if strings.Contains(v, placeholder) {
				h.Del(name)
				break
			}
		}
	}
}

// verdict is what decide concluded: a refusal kind, or "" to go on with
// action (audit's allow or approve).
type verdict struct{ kind, rule, reason, action string }

// decide applies the policy, and asks the approver when a rule wants that.
func (p *Proxy) decide(ctx context.Context, preq *policy.Request, url string, st *reqState, preview func() string) verdict {
	if p.cfg.Policy == nil {
		return verdict{action: audit.DecisionAllow}
	}
	d := p.cfg.Policy.Decide(preq, p.cfg.Identity)
	switch d.Action {
	case policy.Deny:
		reason := d.Reason
		if reason == "" {
			reason = "denied by rule " + d.Rule
		}
		return verdict{kind: errPolicy, rule: d.Rule, reason: reason}
	case policy.Approve:
		if p.cfg.Approver == nil {
			p.recordApproval(st.id, approval.Verdict{How: "headless"})
			return verdict{kind: approvalErrors["headless"], rule: d.Rule, reason: "rule " + d.Rule + " needs approval and nobody can be asked"}
		}
		ar := approval.Request{
			Session: p.cfg.Session, Method: preq.Method, URL: url, Host: preq.Host,
			Rule: d.Rule, Reason: d.Reason, Identity: p.who,
		}
		if preview != nil {
			ar.Preview = preview()
		}
		v := p.cfg.Approver.Ask(ctx, ar)
		p.recordApproval(st.id, v)
		if v.Allow {
			return verdict{rule: d.Rule, action: audit.DecisionApprove}
		}
		kind := approvalErrors[v.How]
		if kind == "" {
			kind = approvalErrors["denied"]
		}
		why := map[string]string{
			"denied":   "the request was denied at the approval prompt",
			"timeout":  "nobody approved the request in time",
			"headless": "rule " + d.Rule + " needs approval and there is no terminal to ask",
			"shutdown": "crewgate is shutting down",
		}[v.How]
		if why == "" {
			why = "the request was not approved"
		}
		if d.Reason != "" {
			why += " (" + d.Reason + ")"
		}
		return verdict{kind: kind, rule: d.Rule, reason: why}
	}
	return verdict{rule: d.Rule, action: audit.DecisionAllow}
}

// previewOf is the start of the request body as an approval prompt shows it:
// masked, and cut to maxPreview bytes.
//
// The text is masked before it is cut, with room to spare: cut first, a
// secret across the cut would show its first part unmasked, too short for
// any detector.
func (p *Proxy) previewOf(req *http.Request, st *reqState) string {
	if st.previewDone {
		return st.preview
	}
	st.previewDone = true
	body, truncated := st.prefix(req)
	if len(body) == 0 {
		return ""
	}
	eng, err := p.preview.engine()
	if err != nil {
		st.preview = "(preview unavailable)"
		return st.preview
	}
	text := eng.MaskString(string(body[:min(len(body), maxPreview+previewLookahead)]))
	if len(text) > maxPreview {
		cut := maxPreview
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text, truncated = text[:cut], true
	}
	if truncated {
		text += " [...]"
	}
	st.preview = text
	return text
}

// redactURL is the URL without any user:password in it.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// leakedPlaceholder returns the name of an upstream whose placeholder the
// request carries although it goes elsewhere: in its URL, headers or the
// first maxPrefix bytes of its body.
func (p *Proxy) leakedPlaceholder(req *http.Request, to *route, st *reqState) string {
	foreign := p.foreign
	if to != nil {
		foreign = to.foreign
	}
	if len(foreign) == 0 {
		return ""
	}
	url := req.URL.String()
	body, _ := st.prefix(req)
	for _, r := range foreign {
		if strings.Contains(url, r.Placeholder) || bytes.Contains(body, []byte(r.Placeholder)) || headersHold(req.Header, r.Placeholder) {
			return r.Name
		}
	}
	return ""
}

// headersHold reports whether any header value contains s.
func headersHold(h http.Header, s string) bool {
	for _, vals := range h {
		for _, v := range vals {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}

// roundTripper sends the request with t and turns a failure into crewgate's
// own 502, so the crew always gets an answer it can read.
func (p *Proxy) roundTripper(t http.RoundTripper, st *reqState) goproxy.RoundTripper {
	return goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		if p.cfg.Recorder != nil && req.Body != nil && req.Body != http.NoBody {
			st.sent = audit.NewBodyTap(0)
			req.Body = struct {
				io.Reader
				io.Closer
			}{io.TeeReader(req.Body, st.sent), req.Body}
		}
		resp, err := t.RoundTrip(req)
		if st.decision == "" {
			st.decision = audit.DecisionAllow
		}
		p.record(p.requestEvent(req, st, st.decision, "", ""))
		if err == nil {
			if st.route != nil {
				return p.maskResponse(resp, st), nil
			}
			if p.cfg.Recorder != nil {
				resp.Body = &recordingBody{ReadCloser: resp.Body, p: p, st: st, status: resp.StatusCode, header: resp.Header,
					stream: resp.ContentLength < 0}
			}
			return resp, nil
		}
		st.ownResp = true
		defer func() { p.recordResponse(st, http.StatusBadGateway, nil, 0, nil, nil, false, err) }()
		reason := "could not reach " + req.URL.Host + ": " + err.Error()
		if errors.Is(err, errDeniedAddress) {
			p.denied.Add(1)
			return refusal(req, p.cfg.Session, http.StatusForbidden, errAddress, "", err.Error()), nil
		}
		p.log.Warn("upstream failed", "kind", errUpstream, "method", req.Method, "host", req.URL.Host, "error", err.Error())
		return refusal(req, p.cfg.Session, http.StatusBadGateway, errUpstream, "", reason), nil
	})
}

// smallJSON is the largest JSON response sent with a Content-Length
// instead of chunked: the masker buffers JSON whole anyway, and a known
// length lets goproxy write the response in two writes instead of five.
const smallJSON = 256 << 10

// maskResponse masks an intercepted response as it streams. It runs inside
// the round trip, before goproxy sees the response: goproxy switches any
// body its response handlers replace to chunked encoding.
func (p *Proxy) maskResponse(resp *http.Response, st *reqState) *http.Response {
	eng, err := st.route.resp.engine()
	if err != nil {
		resp.Body.Close()
		st.ownResp = true
		return refusal(resp.Request, p.cfg.Session, http.StatusBadGateway, errUpstream, "", "masking is not available: "+err.Error())
	}
	length := resp.ContentLength
	counts := eng.WrapResponse(resp)
	hasBody := resp.Request == nil || resp.Request.Method != http.MethodHead
	// The log keeps what the crew got only as counts: a response body
	// preview would double the cost of recording (see docs/performance.md).
	var tap *audit.BodyTap
	if counts.Form() == "json" && hasBody && length >= 0 && length <= smallJSON {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		p.masked.Add(int64(counts.Total()))
		if tap != nil {
			tap.Write(body)
		}
		p.recordResponse(st, resp.StatusCode, resp.Header, int64(len(body)), counts, tap, false, err)
		if err != nil {
			st.ownResp = true
			return refusal(resp.Request, p.cfg.Session, http.StatusBadGateway, errUpstream, "", "reading the response: "+err.Error())
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return resp
	}
	resp.Body = &recordingBody{ReadCloser: resp.Body, p: p, st: st, status: resp.StatusCode, header: resp.Header,
		counts: counts, tap: tap, stream: counts.Form() == "sse" || length < 0}
	return resp
}

// refusal is crewgate's own answer: the JSON body DESIGN.md fixes, shaped
// like the OpenAI and Anthropic APIs' errors so that the crew's SDK puts
// the reason in its own error message, and X-Crewgate-Error.
func refusal(req *http.Request, session string, code int, kind, rule, reason string) *http.Response {
	body := refusalJSON(session, kind, rule, reason)
	h := http.Header{}
	setRefusalHeaders(h, kind)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		StatusCode:    code,
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// refusalBody is the JSON of a refusal.
type refusalBody struct {
	Type  string       `json:"type"` // "error"
	Error refusalError `json:"error"`
}

type refusalError struct {
	Type    string `json:"type"` // "crewgate_refusal"
	Code    string `json:"code"` // the refusal kind, as in X-Crewgate-Error
	Message string `json:"message"`
	Rule    string `json:"rule,omitempty"`
	Session string `json:"session"`
}

func refusalJSON(session, kind, rule, reason string) []byte {
	msg := "crewgate refused the request (" + kind + ")"
	if rule != "" {
		msg += " by rule " + rule
	}
	if reason != "" {
		msg += ": " + reason
	}
	body, _ := json.Marshal(refusalBody{Type: "error", Error: refusalError{
		Type: "crewgate_refusal", Code: kind, Message: msg, Rule: rule, Session: session,
	}})
	return append(body, '\n')
}

// setRefusalHeaders marks a refusal; the SDKs of OpenAI and Anthropic retry
// 5xx answers unless told not to, and a dead login or a missing credential
// does not heal by retrying.
func setRefusalHeaders(h http.Header, kind string) {
	h.Set("Content-Type", "application/json")
	h.Set("X-Crewgate-Error", kind)
	switch kind {
	case errLogin, errToken:
		h.Set("X-Should-Retry", "false")
	}
}

func writeRefusal(w http.ResponseWriter, session string, code int, kind, rule, reason string) {
	setRefusalHeaders(w.Header(), kind)
	w.WriteHeader(code)
	w.Write(refusalJSON(session, kind, rule, reason))
}

func splitHostPort(hostport, defaultPort string) (string, string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]"), defaultPort
	}
	return host, port
}

func slogErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}

// countingBody adds a body's masking count to the session's total once.
type countingBody struct {
	io.ReadCloser
	counts interface{ Total() int }
	total  interface{ Add(int64) int64 }
	done   bool
}

func (b *countingBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.done {
		b.done = true
		b.total.Add(int64(b.counts.Total()))
	}
	return err
}
