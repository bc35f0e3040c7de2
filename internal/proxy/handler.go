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

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/authority"
	"github.com/crewgate/crewgate/internal/mask"
)

// logPrefix is how much of a request body the body step reads for the log's
// preview and the placeholder check; body rules read up to the policy's
// max_body (policy.max_body) instead.
const logPrefix = 1 << 20

// maxPreview caps the masked body preview an approval prompt and the log
// show; previewLookahead is how much further the text is masked so that no
// secret across the cut survives in part.
const (
	maxPreview       = 2 << 10
	previewLookahead = 4 << 10
)

// Refusal kinds, sent in X-Crewgate-Error and the JSON body's "error".
const (
	errProxyAuth     = "proxy-auth-required"
	errEgress        = "egress-denied"
	errAddress       = "address-denied"
	errLeak          = "placeholder-leak"
	errLogin         = "login-required"
	errToken         = "credential-unavailable"
	errUpstream      = "upstream-unreachable"
	errNotAProxy     = "not-a-proxy-request"
	errRequestMask   = "request-masking-failed"
	errUninspectable = "body-uninspectable"
	// errRespUninspectable: a response crewgate cannot mask is refused,
	// never passed through.
	errRespUninspectable = "response-uninspectable"
	errPolicy            = "policy-denied"
	errMisdirected       = "misdirected-request"
	errBadAuthority      = "bad-authority"
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

// reqState follows one request from the request handler to the response
// handler.
type reqState struct {
	route   *route // nil: not intercepted
	ownResp bool   // the response is crewgate's own (a refusal or error)

	id    string    // the audit log's request id
	start time.Time // when crewgate got the request
	rule  string    // the policy rule that decided, if any

	preview     string // the masked body preview, once made
	previewDone bool

	prefixRead bool
	body       []byte        // the first bytes of the request body, as read by prefix
	ended      bool          // body is all of it
	crew       io.ReadCloser // the crew's own body, read up to len(body)
}

// prefix returns the first n bytes of the request body (fewer when it is
// shorter) and whether there is more, reading only what earlier calls did
// not; what was read is put back in front of the rest, so the upstream
// still gets the body as sent.
func (st *reqState) prefix(req *http.Request, n int) (body []byte, more bool) {
	if !st.prefixRead {
		st.prefixRead = true
		if req.Body == nil || req.Body == http.NoBody {
			st.ended = true
			return nil, false
		}
		st.crew = req.Body
	}
	if !st.ended && len(st.body) <= n {
		// One byte past n says whether there is more.
		rest, _ := io.ReadAll(io.LimitReader(st.crew, int64(n+1-len(st.body))))
		st.body = append(st.body, rest...)
		st.ended = len(st.body) <= n
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(st.body), st.crew), st.crew}
	}
	return st.body[:min(n, len(st.body))], len(st.body) > n || !st.ended
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
	body, truncated := st.prefix(req, logPrefix)
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

// roundTripper sends the request with t and turns a failure into crewgate's
// own 502, so the crew always gets an answer it can read.
func (p *Proxy) roundTripper(t http.RoundTripper, st *reqState) goproxy.RoundTripper {
	return goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		if st.route != nil && req.Header.Get("Sec-WebSocket-Extensions") != "" {
			// permessage-deflate would hide the frames from the masker.
			req.Header.Del("Sec-WebSocket-Extensions")
		}
		resp, err := t.RoundTrip(req)
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

type readCloser struct {
	io.Reader
	io.Closer
}

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
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return p.maskUpgrade(resp, st, eng)
	}
	counts, err := eng.WrapResponse(resp)
	if err != nil {
		resp.Body.Close()
		st.ownResp = true
		reason := "the response of " + resp.Request.URL.Host + " cannot be masked: " + err.Error()
		p.log.Warn("response refused", "kind", errRespUninspectable, "host", resp.Request.URL.Host, "error", err.Error())
		r := refusal(resp.Request, p.cfg.Session, http.StatusBadGateway, errRespUninspectable, "", reason)
		p.recordResponse(st, r.StatusCode, r.Header, 0, nil, nil, false, errors.New(reason))
		return r
	}
	hasBody := resp.Request == nil || resp.Request.Method != http.MethodHead
	// The log keeps what the crew got only as counts: a response body
	// preview would double the cost of recording (see docs/performance.md).
	var tap *audit.BodyTap
	if counts.Form() == "json" && hasBody {
		// The masker holds a JSON document whole before it writes a byte,
		// so it is read here, inside the round trip: one it cannot hold
		// (mask.memory, with json_fields to mask) is refused before the
		// head goes out, and the rest get a Content-Length.
		body, whole, err := mask.Preread(resp.Body)
		if err != nil {
			resp.Body.Close()
			st.ownResp = true
			kind, reason := errUpstream, "reading the response: "+err.Error()
			if errors.Is(err, mask.ErrUninspectable) {
				kind, reason = errRespUninspectable, "the response of "+resp.Request.URL.Host+" cannot be masked: "+err.Error()
			}
			r := refusal(resp.Request, p.cfg.Session, http.StatusBadGateway, kind, "", reason)
			p.recordResponse(st, r.StatusCode, r.Header, 0, counts, nil, false, err)
			return r
		}
		if whole {
			p.masked.Add(int64(counts.Total()))
			p.recordResponse(st, resp.StatusCode, resp.Header, int64(len(body)), counts, tap, false, nil)
			// Closing the masker gives its budget back: only once the
			// crew has the document.
			resp.Body = readCloser{bytes.NewReader(body), resp.Body}
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return resp
		}
		// Too large to hold: the rest is masked as it streams (json-bytes).
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
	}
	resp.Body = &recordingBody{ReadCloser: resp.Body, p: p, st: st, status: resp.StatusCode, header: resp.Header,
		counts: counts, tap: tap, stream: counts.Form() == "sse" || length < 0}
	return resp
}

// maskUpgrade masks an upgraded connection's head, and what the upstream
// sends on it: a WebSocket frame by frame, anything else as a binary stream.
func (p *Proxy) maskUpgrade(resp *http.Response, st *reqState, eng *mask.Engine) *http.Response {
	rw, ok := resp.Body.(io.ReadWriteCloser)
	counts := &mask.Counts{}
	eng.MaskHeader(resp.Header, counts)
	var err error
	if ok {
		var r io.Reader
		if strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
			r = eng.WebSocket(rw, counts)
		} else {
			var body io.ReadCloser
			body, _, err = eng.Wrap(io.NopCloser(rw), "application/octet-stream", "")
			r = body
		}
		resp.Body = upgraded{Reader: r, Writer: rw, Closer: rw}
	}
	p.recordResponse(st, resp.StatusCode, resp.Header, 0, counts, nil, false, err)
	return resp
}

// upgraded is an upgraded connection whose upstream side is read masked.
type upgraded struct {
	io.Reader
	io.Writer
	io.Closer
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
	case errLogin, errToken, errRespUninspectable:
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
