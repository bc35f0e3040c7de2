// Package audit records crewgate sessions: one append-only, hash-chained
// JSONL file per session, and reads them back to verify, list, render,
// replay and export them as HAR 1.2.
//
// A Recorder takes Events from the proxy without blocking it for long (a
// bounded queue drained by one writer goroutine that appends and flushes
// line by line), chains every line to the one before it with SHA-256, and
// can copy each event to an OpenTelemetry collector over OTLP/HTTP. The
// package knows nothing of the proxy: callers hand it what the masking
// engine and the credential stripper produced, and RedactHeaders and
// BodyTap help them do that.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Type names what an Event records.
type Type string

// Event types, in the order a request's events usually come.
const (
	TypeSessionStart Type = "session_start"
	TypeRequest      Type = "request"
	TypeApproval     Type = "approval"
	TypeResponse     Type = "response"
	TypeTunnel       Type = "tunnel"
	TypeLeak         Type = "leak"
	TypeSessionEnd   Type = "session_end"
	// TypeGap says how many events the recorder had to drop (queue full or
	// disk trouble with on_error: continue) before this line.
	TypeGap Type = "gap"
)

// Decision is what crewgate decided about a request, or how an approval
// came out.
type Decision string

// Decisions a Request or an Approval carries.
const (
	DecisionAllow   Decision = "allow"
	DecisionDeny    Decision = "deny"
	DecisionApprove Decision = "approve" // a human allowed it; an approval event says how
)

// Route is how the proxy handled a request's destination.
type Route string

// Routes a Request carries.
const (
	RouteIntercept Route = "intercept" // a configured upstream: TLS terminated, rules, credential, masking
	RouteDirect    Route = "direct"    // plain HTTP to a host no upstream claims, inspected, no credential
	RouteTunnel    Route = "tunnel"    // a CONNECT to a host no upstream claims, passed through uninspected
	RouteRefused   Route = "refused"   // refused before a route was found (proxy auth, a bad authority, default_action deny)
)

// Event is one line of a session log. Exactly one of the detail fields
// matches Type. Seq, Session (when empty), Prev and Hash are set by the
// Recorder.
type Event struct {
	Seq     int64     `json:"seq"`
	Type    Type      `json:"type"`
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	// ID links the request, approval, response and leak events of one
	// request (see Recorder.NextID).
	ID string `json:"id,omitempty"`

	Start    *Start    `json:"start,omitempty"`
	Request  *Request  `json:"request,omitempty"`
	Approval *Approval `json:"approval,omitempty"`
	Response *Response `json:"response,omitempty"`
	Tunnel   *Tunnel   `json:"tunnel,omitempty"`
	Leak     *Leak     `json:"leak,omitempty"`
	End      *End      `json:"end,omitempty"`
	Gap      *Gap      `json:"gap,omitempty"`

	// Prev is the Hash of the line before, or the session's nonce on the
	// first line.
	Prev string `json:"prev"`
	// Hash is the hex SHA-256 of this line up to, not including, its
	// ",\"hash\":" suffix.
	Hash string `json:"hash,omitempty"`
}

// Identity is who ran the session, as the login proved it.
type Identity struct {
	Subject string   `json:"subject,omitempty"`
	Email   string   `json:"email,omitempty"`
	Name    string   `json:"name,omitempty"`
	Issuer  string   `json:"issuer,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// Start opens a session.
type Start struct {
	Identity Identity `json:"identity"`
	Command  []string `json:"command"`
	// ConfigDigest is the hex SHA-256 of the effective configuration.
	ConfigDigest string `json:"config_digest,omitempty"`
	Version      string `json:"version,omitempty"`
	// Nonce is 32 random bytes in hex, set by Open; the first line's Prev.
	Nonce string `json:"nonce"`
}

// Request is what the crew asked for and what crewgate decided.
type Request struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	// Upstream names the configured upstream that claimed the host; empty
	// for hosts no upstream claims.
	Upstream string `json:"upstream,omitempty"`
	// Route is how the host was routed.
	Route    Route    `json:"route,omitempty"`
	Rule     string   `json:"rule,omitempty"`
	Decision Decision `json:"decision"`
	Reason   string   `json:"reason,omitempty"`
	// Refusal is the X-Crewgate-Error kind when crewgate refused the request.
	Refusal string      `json:"refusal,omitempty"`
	Headers http.Header `json:"headers,omitempty"` // through RedactHeaders
	Body    *Body       `json:"body,omitempty"`
}

// Approval is a human's (or the timeout's) answer to an approve rule.
type Approval struct {
	Decision Decision `json:"decision"` // allow | deny
	// Scope is "once" or "session" for an allow.
	Scope string `json:"scope,omitempty"`
	// By is who answered: the logged-in subject, or "crewgate" for a timeout.
	By string `json:"by,omitempty"`
	// How is how the approval ended (approval.How): once, session, grant
	// (an earlier allow for the session), denied, timeout, headless,
	// shutdown; By says who answered.
	How      string `json:"how"`
	WaitedMS int64  `json:"waited_ms"`
}

// Response is what went back to the crew.
type Response struct {
	Status  int         `json:"status"`
	Headers http.Header `json:"headers,omitempty"` // through RedactHeaders
	// Bytes is the size of the body the crew received.
	Bytes int64 `json:"bytes"`
	// Masked counts replacements per detector.
	Masked map[string]int `json:"masked,omitempty"`
	// Scanned is false when masking could not read the body (binary, an
	// unknown encoding): it went through "not scanned".
	Scanned    bool   `json:"scanned"`
	Form       string `json:"form,omitempty"` // the masker's reading: json, sse, text...
	DurationMS int64  `json:"duration_ms"`
	Streamed   bool   `json:"streamed"`
	Error      string `json:"error,omitempty"`
	Body       *Body  `json:"body,omitempty"`
}

// Tunnel is a CONNECT passed through uninspected.
type Tunnel struct {
	Host       string `json:"host"` // host:port
	BytesUp    int64  `json:"bytes_up"`
	BytesDown  int64  `json:"bytes_down"`
	DurationMS int64  `json:"duration_ms"`
}

// Leak is a placeholder seen on its way to a host it does not belong to.
type Leak struct {
	// Upstream owns the placeholder; the placeholder itself is not recorded.
	Upstream string `json:"upstream"`
	// To is where the request was going (host or URL).
	To string `json:"to"`
	// Where the placeholder was found: url, header, body, when known.
	Where string `json:"where,omitempty"`
}

// End closes a session.
type End struct {
	ExitCode   int    `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	Totals     Totals `json:"totals"`
}

// Totals sum a session's events; the Recorder computes them.
type Totals struct {
	Requests int64 `json:"requests"`
	Denied   int64 `json:"denied"`
	Approved int64 `json:"approved"`
	Masked   int64 `json:"masked"`
	Tunnels  int64 `json:"tunnels"`
	Leaks    int64 `json:"leaks"`
	// Dropped counts events lost to a full queue or disk trouble.
	Dropped int64 `json:"dropped"`
}

// Gap records events the recorder could not write.
type Gap struct {
	Dropped int64  `json:"dropped"`
	Reason  string `json:"reason"`
}

// Body describes a request or response body: its size and SHA-256, and a
// preview of its first bytes, as masked.
type Body struct {
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Preview   string `json:"preview,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// Binary is set when the preview is not valid UTF-8 and was left out.
	Binary bool `json:"binary,omitempty"`
}

// DefaultPreview is the preview size cap BodyTap uses for n <= 0.
const DefaultPreview = 4096

// BodyTap is an io.Writer that hashes everything written to it and keeps
// the first bytes as a preview. Tee the stream the crew (or the upstream)
// actually gets through it, after masking, so the preview holds no secret.
type BodyTap struct {
	h       hash.Hash
	size    int64
	limit   int
	preview []byte
}

// NewBodyTap returns a tap that keeps up to n bytes of preview.
func NewBodyTap(n int) *BodyTap {
	if n <= 0 {
		n = DefaultPreview
	}
	return &BodyTap{h: sha256.New(), limit: n}
}

// Write never fails.
func (t *BodyTap) Write(p []byte) (int, error) {
	t.h.Write(p)
	t.size += int64(len(p))
	if room := t.limit - len(t.preview); room > 0 {
		t.preview = append(t.preview, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Body summarises what was written so far.
func (t *BodyTap) Body() *Body {
	b := &Body{Size: t.size, SHA256: hex.EncodeToString(t.h.Sum(nil)), Truncated: t.size > int64(len(t.preview))}
	p := t.preview
	if b.Truncated {
		// Do not cut a UTF-8 sequence in half.
		for i := 0; i < 3 && len(p) > 0 && p[len(p)-1]&0xC0 == 0x80; i++ {
			p = p[:len(p)-1]
		}
		if len(p) > 0 && p[len(p)-1] >= 0xC0 {
			p = p[:len(p)-1]
		}
	}
	if isText(p) {
		b.Preview = string(p)
	} else {
		b.Binary = true
	}
	return b
}

func isText(p []byte) bool {
	return utf8.Valid(p) && bytes.IndexByte(p, 0) < 0
}

// Redacted replaces every credential header's values.
const Redacted = "[REDACTED]"

// credentialHeaders are always redacted, whatever the upstream.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Api-Key"}

// RedactHeaders returns a copy of h in which the values of Authorization,
// Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key, Api-Key and every
// name in extra (each upstream's credential header) are "[REDACTED]".
// Names match case-insensitively; h is not changed.
func RedactHeaders(h http.Header, extra ...string) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for name, vals := range h {
		if isCredentialHeader(name, extra) {
			red := make([]string, len(vals))
			for i := range red {
				red[i] = Redacted
			}
			out[name] = red
			continue
		}
		out[name] = append([]string(nil), vals...)
	}
	return out
}

func isCredentialHeader(name string, extra []string) bool {
	for _, c := range credentialHeaders {
		if strings.EqualFold(name, c) {
			return true
		}
	}
	for _, c := range extra {
		if c != "" && strings.EqualFold(name, c) {
			return true
		}
	}
	return false
}
