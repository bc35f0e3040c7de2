package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/authority"
	"github.com/crewgate/crewgate/internal/creds"
	"github.com/crewgate/crewgate/internal/policy"
	"github.com/crewgate/crewgate/internal/reqbody"
)

// Step names one step of the request pipeline. Every request, CONNECT,
// plain-HTTP proxy request and request inside an intercepted connection
// alike, and every `policy explain`, goes through the steps in this order
// (see pipeline); a refusal names the step that made it.
type Step string

// The pipeline's steps, in order.
const (
	StepAuth      Step = "proxy-auth" // the session's proxy credential
	StepRoute     Step = "route"      // upstream, default_action, address checks
	StepAuthority Step = "authority"  // the request names its connection's host and port
	StepLeak      Step = "leak"       // no placeholder of another upstream in the URL or headers, in any form
	StepBody      Step = "body"       // the body, read once, when the log, a leak check or a rule needs it
	StepRules     Step = "rules"      // the policy's first matching rule
	StepApproval  Step = "approval"   // a human, for an approve rule
	StepInject    Step = "inject"     // the upstream's credential is available
)

// kind is what sort of request the pipeline decides.
type kind int

const (
	kindConnect     kind = iota // a CONNECT: only its host and port are visible
	kindPlain                   // a plain-HTTP proxy request (absolute URL)
	kindIntercepted             // a request inside an intercepted CONNECT
)

// mode is whether the pipeline acts (run) or only says what it would do
// (policy explain: no proxy credential to check, nobody to ask, no
// credential to fetch).
type mode int

const (
	live mode = iota
	explain
)

// outcome is what the pipeline decided for one request.
type outcome struct {
	step     Step        // the last step run: where it was refused, or StepInject when allowed
	via      audit.Route // how the destination was routed
	route    *route      // the upstream, for an intercepted destination
	pattern  authority.Pattern
	dest     authority.Authority // the one authority the request goes to
	ips      []netip.Addr        // the checked addresses to dial, for tunnels
	refusal  *refused            // nil when allowed
	decision policy.Decision     // the rules' decision (Action "" when no rule ran)
	approved *approval.Verdict   // how an approval ended, when one was asked for
	token    string              // the credential to inject, for an upstream with a source
	explain  *policy.Explanation // explain mode: every rule's result
	// note is something the log should say about an allowed request (a
	// body let through by policy.oversize: allow).
	note string
	// unresolved is why the host's addresses could not be checked at the
	// route step; the dial checks them.
	unresolved error
	// watch says how the body is searched for placeholders as it streams,
	// when the body step could not search it whole.
	watch watch
}

// refused is a refusal of crewgate's own.
type refused struct {
	code               int
	kind, rule, reason string
	leaked             string // for a placeholder leak: the upstream whose placeholder it was
	where              string // and where it was: host, url, header, body
}

// refuse ends the outcome at its current step with a refusal.
func (o *outcome) refuse(code int, kind, rule, reason string) outcome {
	o.refusal = &refused{code: code, kind: kind, rule: rule, reason: reason}
	return *o
}

func (o *outcome) leak(upstream, where string) outcome {
	r := o.refuse(http.StatusForbidden, errLeak, "placeholder",
		"the request carries the placeholder of upstream "+upstream+", which belongs to its own host only")
	r.refusal.leaked, r.refusal.where = upstream, where
	return r
}

// pipeline decides req. For kindIntercepted, mc is the connection's fixed
// route and authority. It reads the body (StepBody) at most once, through
// st, and asks the approver only in live mode. Nothing after the approval
// step refuses for a reason known before it: the address checks run at the
// route step and the credential is checked for before the human is asked.
func (p *Proxy) pipeline(ctx context.Context, req *http.Request, k kind, mc *mitmConn, st *reqState, m mode) outcome {
	var o outcome
	defPort := authority.HTTPS
	if k == kindPlain {
		defPort = authority.HTTP
	}

	o.step = StepAuth
	if k != kindIntercepted && m == live {
		if !p.authorized(req.Header) {
			return o.refuse(http.StatusProxyAuthRequired, errProxyAuth, "", "send the proxy credential from HTTP_PROXY")
		}
		req.Header.Del("Proxy-Authorization")
	}

	o.step = StepRoute
	if k == kindIntercepted {
		o.dest, o.route, o.via = mc.authority, mc.route, audit.RouteIntercept
	} else if !p.routeStep(ctx, req, k, defPort, &o) {
		return o
	}
	if k == kindConnect && o.route != nil {
		return o // intercepted: the requests inside are decided one by one
	}

	if k != kindConnect {
		o.step = StepAuthority
		if err := sameAuthority(req, o.dest, defPort); err != nil {
			return o.refuse(http.StatusMisdirectedRequest, errMisdirected, "", err.Error())
		}
		o.step = StepLeak
		f := p.finderFor(o.route)
		if other := f.inURL(req); other != "" {
			return o.leak(other, "url")
		}
		if other := f.inHeader(req.Header); other != "" {
			return o.leak(other, "header")
		}
		o.step = StepBody
		if p.cfg.Recorder != nil || f != nil {
			if m == live && !p.holdPrefix(ctx, req) {
				return o.refuse(http.StatusForbidden, errUninspectable, "",
					"the request body must be read for the log and the placeholder check, and crewgate's memory for bodies (mask.memory) stayed full for "+bodyWait.String()+"; try again")
			}
			body, more := st.prefix(req, logPrefix)
			if !p.bodyLeaks(req, body, more, &o) {
				return o
			}
		}
	}

	o.step = StepRules
	if !p.rulesStep(ctx, req, k, st, m, &o) {
		return o
	}

	// The credential is fetched before a human is asked: asking about a
	// request that cannot go out wastes the human's attention.
	if o.route != nil && o.route.Source != nil && m == live {
		o.step = StepInject
		token, err := o.route.Source.Token(ctx)
		switch {
		case errors.Is(err, creds.ErrLoginRequired):
			return o.refuse(http.StatusBadGateway, errLogin, "", "the login has expired: run 'crewgate login', then restart the crew")
		case err != nil:
			return o.refuse(http.StatusBadGateway, errToken, "", "no credential for upstream "+o.route.Name+": "+err.Error())
		}
		o.token = token
	}

	if o.decision.Action == policy.Approve {
		o.step = StepApproval
		if m == explain {
			return o
		}
		v := p.ask(ctx, req, &o, st)
		o.approved = &v
		if !v.Allow {
			return o.refuse(http.StatusForbidden, approvalKind(v.How), o.decision.Rule, approvalWhy(v.How, o.decision))
		}
	}
	o.step = StepInject
	return o
}

// routeStep finds the upstream that claims the request's authority, or
// applies default_action, and checks the addresses it would dial. It
// reports false when it refused.
func (p *Proxy) routeStep(ctx context.Context, req *http.Request, k kind, defPort string, o *outcome) bool {
	o.via = audit.RouteRefused
	a, err := authority.Parse(req.URL.Host, defPort)
	if err != nil {
		o.refuse(http.StatusBadRequest, errBadAuthority, "", err.Error())
		return false
	}
	o.dest = a
	if o.route, o.pattern = p.match(a, defPort); o.route != nil {
		o.via = audit.RouteIntercept
	} else if p.cfg.DefaultAction == "deny" {
		o.refuse(http.StatusForbidden, errEgress, "default_action", a.Host+" is not a configured upstream and default_action is deny")
		return false
	}
	// A host name is looked up before anything else sees the request: a
	// placeholder in it would leave in the DNS query.
	if other := p.finderFor(o.route).find([]byte(a.Host), 0, nil); other != "" {
		o.leak(other, "host")
		return false
	}
	// An upstream's configured address is trusted; anything else is
	// checked now, before a rule or a human is asked about it. A name that
	// does not resolve now is not refused here: the dial resolves and
	// checks it again, and fails as unreachable.
	if o.route == nil || o.route.Address == "" {
		ips, err := p.allowedIPs(ctx, a.Host)
		switch {
		case errors.Is(err, errDeniedAddress):
			o.refuse(http.StatusForbidden, errAddress, "", err.Error())
			return false
		case err != nil:
			o.unresolved = err
		default:
			o.ips = ips
		}
	}
	if o.route == nil {
		o.via = audit.RouteDirect
		if k == kindConnect {
			o.via = audit.RouteTunnel
		}
	}
	return true
}

// rulesStep runs the rules, and when a rule in reach reads the body, reads
// it (StepBody) as the upstream will understand it and runs them again. It
// reports false when it refused.
func (p *Proxy) rulesStep(ctx context.Context, req *http.Request, k kind, st *reqState, m mode, o *outcome) bool {
	preq := &policy.Request{Method: req.Method, Host: o.dest.Host, Path: req.URL.Path, Header: req.Header, Query: req.URL.RawQuery}
	if k == kindConnect {
		// A tunnel shows crewgate its host only: rules see CONNECT, the
		// host and an empty body.
		preq.Method, preq.Path, preq.Header, preq.Query = http.MethodConnect, "", http.Header{}, ""
		preq.Body, _ = p.cfg.Policy.ViewBody(preq.Header, nil)
	}
	p.rules(preq, m, o)
	if o.decision.NeedsBody {
		o.step = StepBody
		n := p.bodyCost(req)
		if !p.reserve(ctx, n) {
			o.refuse(http.StatusForbidden, errUninspectable, o.decision.Rule,
				"rule "+o.decision.Rule+" must read the request body, and crewgate's memory for bodies (mask.memory) stayed full for "+bodyWait.String()+"; try again")
			return false
		}
		ok := p.viewBody(req, st, preq, o)
		if ok {
			o.step = StepRules
			p.rules(preq, m, o)
		}
		// The view is done with once the rules have run; an approval
		// that waits minutes must not hold the memory.
		preq.Body = nil
		p.bodies.Release(n)
		if !ok {
			return false
		}
	}
	if o.decision.Action == policy.Deny {
		reason := o.decision.Reason
		if reason == "" {
			reason = "denied by rule " + o.decision.Rule
		}
		o.refuse(http.StatusForbidden, errPolicy, o.decision.Rule, reason)
		return false
	}
	return true
}

// viewBody reads the body up to max_body and sets preq.Body to its view.
// It reports false when it refused: a body it cannot read (unless
// policy.oversize: allow), or a placeholder in what it read.
func (p *Proxy) viewBody(req *http.Request, st *reqState, preq *policy.Request, o *outcome) bool {
	raw, _ := st.prefix(req, p.cfg.Policy.MaxBody()+1)
	view, err := p.cfg.Policy.ViewBody(req.Header, raw)
	if err != nil {
		if !p.cfg.Policy.AllowOversize() {
			o.refuse(http.StatusForbidden, errUninspectable, o.decision.Rule,
				"rule "+o.decision.Rule+" must read the request body, and it cannot be read: "+err.Error()+
					" (policy.oversize: allow lets such bodies through, audited)")
			return false
		}
		o.note = "policy.oversize allow: " + err.Error()
	}
	// A body the body step could not search whole is searched in the view
	// too, so that a leak within max_body is refused before any human is
	// asked; leakBody still searches it as it streams.
	if o.watch != watchNone {
		if other := p.finderFor(o.route).inView(view, &scratch{}); other != "" {
			o.leak(other, "body")
			return false
		}
	}
	preq.Body = view
	return true
}

// bodyWait is how long a body a rule must read waits for memory.
const bodyWait = time.Second

// bodyCost is what reading req's body for the rules may hold: the bytes as
// sent (its Content-Length, or up to max_body) and the decoded view, which
// for a compressed body can grow to its bound whatever the raw size.
func (p *Proxy) bodyCost(req *http.Request) int64 {
	limit := int64(p.cfg.Policy.MaxBody()) + 1
	raw := limit
	if req.ContentLength >= 0 {
		raw = min(req.ContentLength, limit)
	}
	view := raw * reqbody.ViewFactor
	if ce := req.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(strings.TrimSpace(ce), "identity") {
		view = limit * reqbody.ViewFactor
	}
	return min(raw+view+1, p.cfg.BodyMemory)
}

// holdPrefix reserves from mask.memory what the body step reads of req's
// body (up to logPrefix), until ctx, the request's, ends: the bytes read are
// held until the upstream has them, and the server cancels a request's
// context when its exchange is over, so the reservation cannot outlive it.
func (p *Proxy) holdPrefix(ctx context.Context, req *http.Request) bool {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return true
	}
	n := int64(logPrefix) + 1
	if req.ContentLength > 0 {
		n = min(req.ContentLength, n)
	}
	if !p.reserve(ctx, n) {
		return false
	}
	context.AfterFunc(ctx, func() { p.bodies.Release(n) })
	return true
}

// reserve takes n bytes of the body memory, waiting up to bodyWait.
func (p *Proxy) reserve(ctx context.Context, n int64) bool {
	ctx, cancel := context.WithTimeout(ctx, bodyWait)
	defer cancel()
	return p.bodies.Acquire(ctx, n) == nil
}

// rules runs the policy on preq: Decide, or Explain in explain mode.
func (p *Proxy) rules(preq *policy.Request, m mode, o *outcome) {
	if m == explain {
		ex := p.cfg.Policy.Explain(preq, p.cfg.Identity)
		o.explain, o.decision = &ex, ex.Decision
		return
	}
	o.decision = p.cfg.Policy.Decide(preq, p.cfg.Identity)
}

// ask puts the request before a human and records how that ended.
func (p *Proxy) ask(ctx context.Context, req *http.Request, o *outcome, st *reqState) approval.Verdict {
	if st.id == "" {
		st.id = p.nextID()
	}
	var v approval.Verdict
	if p.cfg.Approver == nil {
		v = approval.Verdict{How: approval.HowHeadless}
	} else {
		v = p.cfg.Approver.Ask(ctx, approval.Request{
			Session: p.cfg.Session, Method: req.Method, URL: redactURL(req.URL), Host: o.dest.Host,
			Port: port(o.dest), Path: req.URL.EscapedPath(),
			Rule: o.decision.Rule, Reason: o.decision.Reason, Identity: p.who, Preview: p.previewOf(req, st),
		})
	}
	p.recordApproval(st.id, v)
	return v
}

// approvalErrors names the refusal for each way an approval can end in "no".
var approvalErrors = map[approval.How]string{
	approval.HowDenied:   "approval-denied",
	approval.HowTimeout:  "approval-timeout",
	approval.HowHeadless: "approval-unavailable",
	approval.HowShutdown: "approval-shutdown",
}

func approvalKind(how approval.How) string {
	if k := approvalErrors[how]; k != "" {
		return k
	}
	return approvalErrors[approval.HowDenied]
}

func approvalWhy(how approval.How, d policy.Decision) string {
	why := map[approval.How]string{
		approval.HowDenied:   "the request was denied at the approval prompt",
		approval.HowTimeout:  "nobody approved the request in time",
		approval.HowHeadless: "rule " + d.Rule + " needs approval and there is no terminal to ask",
		approval.HowShutdown: "crewgate is shutting down",
	}[how]
	if why == "" {
		why = "the request was not approved"
	}
	if d.Reason != "" {
		why += " (" + d.Reason + ")"
	}
	return why
}

// decisionOf is how the log names an allowed outcome.
func (o *outcome) decisionOf() audit.Decision {
	if o.approved != nil && o.approved.Allow {
		return audit.DecisionApprove
	}
	return audit.DecisionAllow
}

// handleConnect decides a CONNECT: interception, a tunnel or a refusal. An
// intercepted CONNECT is not counted: the requests inside it are.
func (p *Proxy) handleConnect(hostport string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	st := &reqState{start: time.Now()}
	o := p.pipeline(ctx.Req.Context(), ctx.Req, kindConnect, nil, st, live)
	if o.refusal == nil && o.via == audit.RouteIntercept {
		mc := &mitmConn{route: o.route, authority: o.dest}
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: func(_ *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
			p.serveMITM(client, mc)
		}}, hostport
	}
	p.requests.Add(1)
	if st.id == "" {
		st.id = p.nextID()
	}
	if r := o.refusal; r != nil {
		if r.kind == errProxyAuth {
			p.log.Warn("request refused", "kind", errProxyAuth, "method", "CONNECT", "host", hostport)
			return &goproxy.ConnectAction{Action: goproxy.ConnectProxyAuthHijack, Hijack: hijack407}, hostport
		}
		p.denied.Add(1)
		p.log.Warn("request refused", "kind", r.kind, "method", "CONNECT", "host", hostport, "reason", r.reason)
		ctx.Resp = refusal(ctx.Req, p.cfg.Session, r.code, r.kind, r.rule, r.reason)
		st.rule = r.rule
		p.recordRefusal(ctx.Req, st, o.via, ctx.Resp, r.kind, r.reason)
		if r.kind == errLeak {
			p.record(audit.Event{Type: audit.TypeLeak, ID: st.id, Leak: &audit.Leak{Upstream: r.leaked, To: hostport, Where: r.where}})
		}
		return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, hostport
	}
	st.rule = o.decision.Rule
	p.record(p.requestEvent(ctx.Req, st, o.via, o.decisionOf(), "", ""))
	ctx.Dialer = p.countTunnel(p.tunnelDialer(o.ips, o.dest.Port), o.dest.String(), st)
	p.tunnels.Add(1)
	return &goproxy.ConnectAction{Action: goproxy.ConnectAccept}, hostport
}

// handleRequest runs for plain-HTTP proxy requests and for every request
// inside an intercepted CONNECT.
func (p *Proxy) handleRequest(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	mc, inMITM := ctx.UserData.(*mitmConn)
	k := kindPlain
	if inMITM {
		k = kindIntercepted
	}
	st := &reqState{id: p.nextID(), start: time.Now()}
	ctx.UserData = st
	p.requests.Add(1)

	o := p.pipeline(req.Context(), req, k, mc, st, live)
	st.route, st.rule = o.route, o.decision.Rule
	if r := o.refusal; r != nil {
		if r.code == http.StatusForbidden || r.code == http.StatusMisdirectedRequest {
			p.denied.Add(1)
		}
		st.ownResp = true
		st.rule = r.rule
		p.log.Warn("request refused", "kind", r.kind, "method", req.Method, "host", req.URL.Host, "path", req.URL.Path, "reason", r.reason)
		resp := refusal(req, p.cfg.Session, r.code, r.kind, r.rule, r.reason)
		if r.kind == errProxyAuth {
			resp.Header.Set("Proxy-Authenticate", `Basic realm="crewgate"`)
		}
		p.recordRefusal(req, st, o.via, resp, r.kind, r.reason)
		if r.kind == errLeak {
			p.record(audit.Event{Type: audit.TypeLeak, ID: st.id, Leak: &audit.Leak{Upstream: r.leaked, To: o.dest.String(), Where: r.where}})
		}
		return req, resp
	}

	lb := p.watchBody(req, &o, st)
	r := o.route
	if r == nil {
		p.record(p.requestEvent(req, st, o.via, o.decisionOf(), "", o.note))
		ctx.RoundTripper = p.roundTripper(p.guard(p.direct, lb), st)
		return req, nil
	}
	// The one authority, also for plain HTTP inside the tunnel or to an
	// upstream: never a credential in clear text, TLS on 443 unless the
	// hosts entry names a port.
	req.URL.Scheme = "https"
	req.URL.Host = o.dest.Host
	if (k == kindIntercepted && o.dest.Port != authority.HTTPS) || o.pattern.Port != "" {
		req.URL.Host = o.dest.String()
	}
	if r.Source != nil {
		p.inject(req, r, o.token)
	} else {
		stripPlaceholder(req.Header, r.Placeholder)
	}
	if r.req != nil && req.Body != nil && req.Body != http.NoBody {
		eng, err := r.req.engine()
		if err != nil {
			st.ownResp = true
			resp := refusal(req, p.cfg.Session, http.StatusBadGateway, errRequestMask, "", err.Error())
			p.recordRefusal(req, st, o.via, resp, errRequestMask, err.Error())
			return req, resp
		}
		body, counts, err := eng.Wrap(req.Body, req.Header.Get("Content-Type"), req.Header.Get("Content-Encoding"))
		if err != nil {
			st.ownResp = true
			reason := "the request body cannot be masked (mask.request): " + err.Error()
			resp := refusal(req, p.cfg.Session, http.StatusForbidden, errUninspectable, "", reason)
			p.recordRefusal(req, st, o.via, resp, errUninspectable, reason)
			return req, resp
		}
		req.Body = &countingBody{ReadCloser: body, counts: counts, total: &p.masked}
		req.ContentLength = -1
		req.Header.Del("Content-Length")
		if counts.Decoded() {
			req.Header.Del("Content-Encoding")
		}
	}
	// The decision is on disk before the request goes out: a crewgate
	// killed mid-request still leaves it in the log.
	p.record(p.requestEvent(req, st, o.via, o.decisionOf(), "", o.note))
	ctx.RoundTripper = p.roundTripper(p.guard(r.transport, lb), st)
	return req, nil
}

// Explanation is what the pipeline decides for one request, for `crewgate
// policy explain`: the same steps run takes, without a proxy credential to
// check, a human to ask or a credential to fetch.
type Explanation struct {
	Via      audit.Route
	Upstream string // the upstream that claims the host, if any
	Step     Step   // where it was refused, or the last step run
	Refusal  string // the refusal kind; "" when the request would go out
	Status   int    // the refusal's status
	Reason   string
	Rule     string
	// Rules is every rule's result, when the rules ran.
	Rules *policy.Explanation
	// Tunnel: the host is passed through uninspected, so the rules saw only
	// CONNECT and the host, never the method, path, headers or body.
	Tunnel bool
	// Approve: a rule wants a human; run asks and refuses unless allowed.
	Approve bool
	// Unresolved: the host did not resolve now, so its addresses were not
	// checked; run checks them when it dials.
	Unresolved bool
}

// Explain runs req (an absolute http or https URL) through the pipeline as
// run would: an https URL as a CONNECT first, then, when intercepted, as a
// request inside it.
func (p *Proxy) Explain(ctx context.Context, req *http.Request) Explanation {
	var o outcome
	if req.URL.Scheme == "https" {
		a, err := authority.Parse(req.URL.Host, authority.HTTPS)
		hostport := req.URL.Host
		if err == nil {
			hostport = a.String()
		}
		connect := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: hostport}, Host: hostport, Header: http.Header{}}
		o = p.pipeline(ctx, connect, kindConnect, nil, &reqState{}, explain)
		if o.refusal == nil && o.via == audit.RouteIntercept {
			req.Host = req.URL.Host
			o = p.pipeline(ctx, req, kindIntercepted, &mitmConn{route: o.route, authority: o.dest}, &reqState{}, explain)
		}
	} else {
		o = p.pipeline(ctx, req, kindPlain, nil, &reqState{}, explain)
	}
	ex := Explanation{Via: o.via, Step: o.step, Rules: o.explain, Rule: o.decision.Rule, Reason: o.decision.Reason,
		Tunnel: o.via == audit.RouteTunnel, Approve: o.refusal == nil && o.decision.Action == policy.Approve,
		Unresolved: o.unresolved != nil}
	if o.route != nil {
		ex.Upstream = o.route.Name
	}
	if r := o.refusal; r != nil {
		ex.Refusal, ex.Status, ex.Reason, ex.Rule = r.kind, r.code, r.reason, r.rule
	}
	return ex
}

// port is a's port as a number (authority.Parse checked it).
func port(a authority.Authority) int {
	n, _ := strconv.Atoi(a.Port)
	return n
}
