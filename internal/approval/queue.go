// Package approval puts a human in the loop for requests that policy marks
// "approve": a FIFO queue of pending requests, session grants per (rule,
// method, host, port, path), timeouts, and the control socket through which
// `crewgate approve` answers from another terminal.
//
// Approval fails closed (DESIGN.md invariant 6): a timeout, nobody to ask
// (headless) and shutdown all deny, and only a human outside the crew can say
// yes: the control socket refuses the crew and its descendants. A waiting
// request costs no CPU: it blocks on channels and a timer, and nothing is left
// behind when it returns.
package approval

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultTimeout is how long a request waits for a decision when
// Options.Timeout is zero.
const DefaultTimeout = 120 * time.Second

// MaxPreview bounds Request.Preview; Ask cuts longer previews (on a UTF-8
// boundary) so that a pending list always stays small.
const MaxPreview = 8 << 10

// Request is one request waiting for a human decision.
type Request struct {
	ID       string    `json:"id"`       // unique in the session, set by Ask when empty
	Session  string    `json:"session"`  // the crewgate session
	Method   string    `json:"method"`   // HTTP method
	URL      string    `json:"url"`      // the full URL
	Host     string    `json:"host"`     // lower-case, no port; Ask takes it from URL when empty
	Port     int       `json:"port"`     // Ask takes it from Host or URL (or the scheme's default) when 0
	Path     string    `json:"path"`     // the URL's path as sent, no query; Ask takes it from URL when empty
	Rule     string    `json:"rule"`     // the policy rule that asked for approval
	Reason   string    `json:"reason"`   // the rule's reason, shown to the human
	Identity string    `json:"identity"` // who the crew runs as, e.g. "alice <alice@example.com>"
	Preview  string    `json:"preview"`  // masked body preview (the caller masks it), at most MaxPreview bytes
	Asked    time.Time `json:"asked"`    // set by Ask
	Deadline time.Time `json:"deadline"` // set by Ask: when the timeout denies the request
}

// Choice is a human's answer to a pending request.
type Choice string

// The answers a human can give.
const (
	AllowOnce    Choice = "once"    // allow this request only
	AllowSession Choice = "session" // allow it and later ones with the same grant key (see Request.SessionScope)
	Deny         Choice = "deny"    // refuse it
)

// How is how an approval ended.
type How string

// The ways an approval ends.
const (
	HowOnce     How = "once"     // a human allowed this request
	HowSession  How = "session"  // a human allowed it and later ones for the same target
	HowGrant    How = "grant"    // an earlier session grant applied
	HowDenied   How = "denied"   // a human refused it
	HowTimeout  How = "timeout"  // nobody answered in time
	HowHeadless How = "headless" // nobody could be asked
	HowShutdown How = "shutdown" // crewgate was stopping
)

// Verdict is the outcome of Ask.
type Verdict struct {
	Allow bool
	How   How // how the verdict came about
	// By names who decided: "terminal", "approve:<user>@<host> pid N" for the
	// control socket, "" for automatic outcomes.
	By     string
	Waited time.Duration
}

// Options configure a Queue.
type Options struct {
	Timeout  time.Duration // how long a request waits; 0 means DefaultTimeout
	GrantTTL time.Duration // how long a session grant lasts; 0 means until the session ends
	// Headless means nobody can be asked right now: Ask denies at once with
	// How "headless", unless a grant applies or an approver is attached.
	Headless bool
	Now      func() time.Time // the clock for Asked, Waited and grant expiry; nil means time.Now
}

// Approver is what the proxy needs from approval: a blocking Ask that always
// returns a verdict. *Queue implements it.
type Approver interface {
	Ask(ctx context.Context, r Request) Verdict
}

// ErrNotPending is returned by Decide for an ID that is unknown or already
// decided (or timed out).
var ErrNotPending = errors.New("no such pending request")

// Queue holds the pending requests of one session and its grants. It is safe
// for concurrent use.
type Queue struct {
	timeout  time.Duration
	grantTTL time.Duration
	now      func() time.Time

	mu         sync.Mutex
	pending    []*waiter // FIFO, oldest first
	byID       map[string]*waiter
	grants     map[grantKey]time.Time // expiry; zero means until the session ends
	headless   bool
	approvers  int // attached remote approvers (control socket watchers)
	closed     bool
	changed    chan struct{}
	seq        uint64
	onDecision func(Request, Verdict)

	cbMu sync.Mutex // serialises onDecision calls
}

// grantKey is what a session grant covers: the same rule, method, host,
// port and path. Anything wider would let one approved DELETE of a record
// pass the DELETE of a whole tenant unasked.
type grantKey struct {
	rule, method, host string
	port               int
	path               string
}

func keyOf(r Request) grantKey { return grantKey{r.Rule, r.Method, r.Host, r.Port, r.Path} }

// SessionScope says what "allow for the session" covers for r, the way the
// prompts show it: "DELETE crm.example.com:443/v1/records/42" (the rule is
// part of the grant too). It is meant for requests that Ask has filled in,
// such as those Pending returns.
func (r Request) SessionScope() string {
	return r.Method + " " + net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) + r.Path
}

// waiter is one pending Ask. verdict is written once, under Queue.mu, before
// done is closed.
type waiter struct {
	req     Request
	done    chan struct{}
	verdict Verdict
}

// NewQueue returns an empty queue.
func NewQueue(opts Options) *Queue {
	q := &Queue{
		timeout:  opts.Timeout,
		grantTTL: opts.GrantTTL,
		now:      opts.Now,
		byID:     map[string]*waiter{},
		grants:   map[grantKey]time.Time{},
		headless: opts.Headless,
		changed:  make(chan struct{}),
	}
	if q.timeout <= 0 {
		q.timeout = DefaultTimeout
	}
	if q.now == nil {
		q.now = time.Now
	}
	return q
}

// OnDecision sets f to be called once per verdict that Ask returns, with the
// request (ID and Asked set) and the verdict: for the audit recorder. Calls
// are serialised. Set it before the queue is used.
func (q *Queue) OnDecision(f func(Request, Verdict)) {
	q.mu.Lock()
	q.onDecision = f
	q.mu.Unlock()
}

// Ask blocks until the request is decided. A session grant for the same
// rule, method, host, port and path allows at once; otherwise the request
// waits in FIFO order for Decide, the timeout (deny, How "timeout"), ctx
// cancellation or Close (deny, How "shutdown"). When the queue is headless
// and no approver is attached, it denies at once (How "headless").
func (q *Queue) Ask(ctx context.Context, r Request) Verdict {
	fillTarget(&r)
	r.Preview = truncate(r.Preview, MaxPreview)

	q.mu.Lock()
	r.Asked = q.now()
	r.Deadline = r.Asked.Add(q.timeout)
	if r.ID == "" || q.byID[r.ID] != nil {
		q.seq++
		r.ID = strconv.FormatUint(q.seq, 10)
		for q.byID[r.ID] != nil { // a caller chose this ID before
			q.seq++
			r.ID = strconv.FormatUint(q.seq, 10)
		}
	}
	var v *Verdict
	switch {
	case q.closed || ctx.Err() != nil:
		v = &Verdict{How: HowShutdown}
	case q.granted(r):
		v = &Verdict{Allow: true, How: HowGrant}
	case q.headless && q.approvers == 0:
		v = &Verdict{How: HowHeadless}
	}
	if v != nil {
		q.mu.Unlock()
		return q.report(r, *v)
	}
	w := &waiter{req: r, done: make(chan struct{})}
	q.pending = append(q.pending, w)
	q.byID[r.ID] = w
	q.notifyLocked()
	q.mu.Unlock()

	timer := time.NewTimer(q.timeout)
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		q.settle(w, Verdict{How: HowTimeout})
	case <-ctx.Done():
		q.settle(w, Verdict{How: HowShutdown})
	}
	<-w.done
	return q.report(w.req, w.verdict)
}

// report fills in Waited and tells the recorder.
func (q *Queue) report(r Request, v Verdict) Verdict {
	v.Waited = max(q.now().Sub(r.Asked), 0)
	q.mu.Lock()
	f := q.onDecision
	q.mu.Unlock()
	if f != nil {
		q.cbMu.Lock()
		defer q.cbMu.Unlock()
		f(r, v)
	}
	return v
}

// settle decides w with v unless something decided it first.
func (q *Queue) settle(w *waiter, v Verdict) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.settleLocked(w, v)
}

func (q *Queue) settleLocked(w *waiter, v Verdict) bool {
	if q.byID[w.req.ID] != w {
		return false
	}
	delete(q.byID, w.req.ID)
	for i, p := range q.pending {
		if p == w {
			q.pending = append(q.pending[:i], q.pending[i+1:]...)
			break
		}
	}
	w.verdict = v
	close(w.done)
	q.notifyLocked()
	return true
}

// granted reports whether a live session grant covers r, and forgets
// expired grants it meets.
func (q *Queue) granted(r Request) bool {
	k := keyOf(r)
	exp, ok := q.grants[k]
	if !ok {
		return false
	}
	if !exp.IsZero() && !q.now().Before(exp) {
		delete(q.grants, k)
		return false
	}
	return true
}

// Decide answers the pending request id. AllowSession also records a grant
// for the request's rule, method, host, port and path. by names who decided
// (see Verdict.By). An unknown or already decided id gives an error wrapping
// ErrNotPending.
func (q *Queue) Decide(id string, c Choice, by string) error {
	var v Verdict
	switch c {
	case AllowOnce:
		v = Verdict{Allow: true, How: HowOnce, By: by}
	case AllowSession:
		v = Verdict{Allow: true, How: HowSession, By: by}
	case Deny:
		v = Verdict{How: HowDenied, By: by}
	default:
		return fmt.Errorf("unknown choice %q (want %q, %q or %q)", c, AllowOnce, AllowSession, Deny)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.byID[id]
	if w == nil {
		return fmt.Errorf("request %q: %w", id, ErrNotPending)
	}
	if c == AllowSession {
		var exp time.Time
		if q.grantTTL > 0 {
			exp = q.now().Add(q.grantTTL)
		}
		q.grants[keyOf(w.req)] = exp
	}
	q.settleLocked(w, v)
	return nil
}

// Pending returns the waiting requests, oldest first.
func (q *Queue) Pending() []Request {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Request, len(q.pending))
	for i, w := range q.pending {
		out[i] = w.req
	}
	return out
}

// Changed returns a channel that is closed at the next change: a new pending
// request, a decision of any kind, a headless switch or Close. Call it again
// for the change after that. Take the channel before reading Pending so that
// no change falls between the two.
func (q *Queue) Changed() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.changed
}

func (q *Queue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// SetHeadless says whether anybody can be asked (e.g. the TUI turns it off
// while it can show a prompt). It affects later Asks; requests already
// waiting keep waiting for a decision or their timeout.
func (q *Queue) SetHeadless(headless bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.headless != headless {
		q.headless = headless
		q.notifyLocked()
	}
}

// Attach registers an approver outside the session's own terminal, such as
// a `crewgate approve` client watching through the control socket: while at
// least one is attached, a headless queue lets requests wait for a decision
// instead of denying them at once. Call detach when the approver leaves; it
// is safe to call more than once.
func (q *Queue) Attach() (detach func()) {
	q.mu.Lock()
	q.approvers++
	q.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			q.approvers--
			q.mu.Unlock()
		})
	}
}

// Close denies everything pending and makes later Asks deny at once, all
// with How "shutdown". It is safe to call more than once.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	for len(q.pending) > 0 {
		q.settleLocked(q.pending[0], Verdict{How: HowShutdown})
	}
	q.notifyLocked()
}

// Closed reports whether Close was called.
func (q *Queue) Closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// fillTarget completes and normalises what a grant is keyed on, so that
// grants match however the caller spelled the host, and a caller that gives
// only the URL still gets grants no wider than its path.
func fillTarget(r *Request) {
	u, _ := url.Parse(r.URL)
	if u == nil {
		u = &url.URL{}
	}
	h := strings.TrimSpace(r.Host)
	if h == "" {
		h = u.Host
	}
	h = strings.ToLower(h)
	port := ""
	if host, p, err := net.SplitHostPort(h); err == nil {
		h, port = host, p
	}
	r.Host = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	if r.Port == 0 {
		if port == "" {
			port = u.Port()
		}
		if port == "" {
			port = map[string]string{"https": "443", "http": "80"}[strings.ToLower(u.Scheme)]
		}
		r.Port, _ = strconv.Atoi(port)
	}
	if r.Path == "" {
		r.Path = u.EscapedPath()
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
