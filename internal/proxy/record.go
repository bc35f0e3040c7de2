package proxy

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/mask"
)

// Recorder keeps the session's audit log. It only ever gets what the
// masking engine and the credential stripper produced.
type Recorder interface {
	Record(audit.Event)
	NextID() string
}

// record sends e to the recorder, if there is one.
func (p *Proxy) record(e audit.Event) {
	if p.cfg.Recorder == nil {
		return
	}
	e.Time = time.Now()
	e.Session = p.cfg.Session
	p.cfg.Recorder.Record(e)
}

func (p *Proxy) nextID() string {
	if p.cfg.Recorder == nil {
		return ""
	}
	return p.cfg.Recorder.NextID()
}

// requestEvent describes req as decided, with credentials removed and the
// body shown only masked: its size when known and a preview of the part the
// body step read.
func (p *Proxy) requestEvent(req *http.Request, st *reqState, via audit.Route, decision audit.Decision, refusal, reason string) audit.Event {
	r := &audit.Request{
		Method:   req.Method,
		URL:      redactURL(req.URL),
		Route:    via,
		Rule:     st.rule,
		Decision: decision,
		Reason:   reason,
		Refusal:  refusal,
	}
	if req.Method == http.MethodConnect {
		r.URL = req.URL.Host
	}
	var credHeader string
	if st.route != nil {
		r.Upstream, credHeader = st.route.Name, st.route.Header
	}
	r.Headers = audit.RedactHeaders(req.Header, credHeader)
	if body := st.body; st.prefixRead && len(body) > 0 {
		tap := audit.NewBodyTap(len(body))
		tap.Write(body)
		r.Body = tap.Body()
		if !st.ended {
			// Only a prefix was read before the request went out: its
			// hash would not be the body's.
			r.Body.Truncated, r.Body.SHA256, r.Body.Size = true, "", req.ContentLength
		}
		r.Body.Preview = p.previewOf(req, st)
	}
	return audit.Event{Type: audit.TypeRequest, ID: st.id, Request: r}
}

// recordRefusal records a request crewgate answered itself.
func (p *Proxy) recordRefusal(req *http.Request, st *reqState, via audit.Route, resp *http.Response, kind, reason string) {
	if p.cfg.Recorder == nil {
		return
	}
	p.record(p.requestEvent(req, st, via, audit.DecisionDeny, kind, reason))
	p.record(audit.Event{Type: audit.TypeResponse, ID: st.id, Response: &audit.Response{
		Status: resp.StatusCode, Bytes: resp.ContentLength, Scanned: false,
		DurationMS: time.Since(st.start).Milliseconds(), Error: kind,
	}})
}

// recordApproval records how an approval ended.
func (p *Proxy) recordApproval(id string, v approval.Verdict) {
	d := audit.DecisionDeny
	if v.Allow {
		d = audit.DecisionAllow
	}
	scope := ""
	switch v.How {
	case approval.HowOnce, approval.HowSession, approval.HowGrant:
		scope = string(v.How)
	}
	p.record(audit.Event{Type: audit.TypeApproval, ID: id, Approval: &audit.Approval{
		Decision: d, Scope: scope, By: v.By, How: string(v.How), WaitedMS: v.Waited.Milliseconds(),
	}})
}

// recordingBody counts a response body as the crew reads it, adds its
// masking count to the session's total, and records the response when it
// is closed.
type recordingBody struct {
	io.ReadCloser
	p       *Proxy
	st      *reqState
	status  int
	header  http.Header
	counts  *mask.Counts
	tap     *audit.BodyTap
	n       int64
	stream  bool
	once    sync.Once
	readErr error
}

func (b *recordingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.n += int64(n)
	if b.tap != nil && n > 0 {
		b.tap.Write(buf[:n])
	}
	if err != nil && err != io.EOF {
		b.readErr = err
	}
	return n, err
}

func (b *recordingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() {
		if b.counts != nil {
			b.p.masked.Add(int64(b.counts.Total()))
		}
		b.p.recordResponse(b.st, b.status, b.header, b.n, b.counts, b.tap, b.stream, b.readErr)
	})
	return err
}

func (p *Proxy) recordResponse(st *reqState, status int, h http.Header, n int64, counts *mask.Counts, tap *audit.BodyTap, streamed bool, readErr error) {
	if p.cfg.Recorder == nil {
		return
	}
	r := &audit.Response{
		Status: status, Bytes: n, Streamed: streamed,
		DurationMS: time.Since(st.start).Milliseconds(),
	}
	if counts != nil {
		r.Masked, r.Scanned, r.Form = counts.ByDetector(), counts.Scanned(), counts.Form()
	}
	// Only a masked body is shown; an unscanned one is summarised.
	if tap != nil {
		r.Body = tap.Body()
		if counts == nil || !counts.Scanned() {
			r.Body.Preview = ""
		}
	}
	if readErr != nil {
		r.Error = readErr.Error()
	}
	p.record(audit.Event{Type: audit.TypeResponse, ID: st.id, Response: r})
}

// countingConn counts a tunnel's bytes and records the tunnel when closed.
type countingConn struct {
	net.Conn
	up, down atomic.Int64 // up: crew -> host (written), down: host -> crew (read)
	once     sync.Once
	done     func(up, down int64)
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.down.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.up.Add(int64(n))
	return n, err
}

func (c *countingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.done(c.up.Load(), c.down.Load()) })
	return err
}

// CloseWrite and CloseRead keep half-closes working, which goproxy uses to
// end tunnels cleanly.
func (c *countingConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}

func (c *countingConn) CloseRead() error {
	if hc, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return hc.CloseRead()
	}
	return nil
}
