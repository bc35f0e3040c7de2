package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/encoding/unicode"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/testenv"
)

const bodyRules = `  - name: no-drop-table
    action: deny
    reason: never drop tables
    match: {body: '(?i)\bdrop\s+table\b'}
  - name: no-deletes
    action: deny
    match: {methods: [DELETE]}
`

// TestBodyRulesSeeTheDecodedBody plays the crew: it hides forbidden words
// in every encoding the upstream understands, inside CONNECT+TLS, and the
// rule must still see them; the same bodies without the words go out
// exactly as sent.
func TestBodyRulesSeeTheDecodedBody(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, bodyRules)})

	mp := func(cte, enc string) func(string) []byte {
		return func(w string) []byte {
			return []byte("--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: " + cte + "\r\n\r\n" + enc + "\r\n--b--\r\n")
		}
	}
	bodies := []struct {
		name, headers string
		bad, good     []byte
	}{
		{"JSON \\u0020", "Content-Type: application/json", []byte(`{"q":"DROP\u0020TABLE users"}`), []byte(`{"q":"DROP\u0020CHAIR users"}`)},
		{"JSON \\u0044", "Content-Type: application/json", []byte(`{"q":"\u0044ROP TABLE users"}`), []byte(`{"q":"\u0044ROP CHAIR users"}`)},
		{"form +", "Content-Type: application/x-www-form-urlencoded", []byte("q=DROP+TABLE+users"), []byte("q=DROP+CHAIR+users")},
		{"form %44", "Content-Type: application/x-www-form-urlencoded", []byte("q=%44ROP%20TABLE"), []byte("q=%44ROP%20CHAIR")},
		{"gzip", "Content-Encoding: gzip", testenv.Compress("gzip", []byte("DROP TABLE users")), testenv.Compress("gzip", []byte("DROP CHAIR users"))},
		{"deflate", "Content-Encoding: deflate", testenv.Compress("deflate", []byte("DROP TABLE users")), testenv.Compress("deflate", []byte("DROP CHAIR users"))},
		{"br", "Content-Encoding: br", testenv.Compress("br", []byte("DROP TABLE users")), testenv.Compress("br", []byte("DROP CHAIR users"))},
		{"zstd", "Content-Encoding: zstd", testenv.Compress("zstd", []byte("DROP TABLE users")), testenv.Compress("zstd", []byte("DROP CHAIR users"))},
		{"UTF-16LE with BOM", "Content-Type: text/plain", testenv.UTF16("DROP TABLE users", unicode.LittleEndian, true), testenv.UTF16("DROP CHAIR users", unicode.LittleEndian, true)},
		{"UTF-16BE by charset", "Content-Type: text/plain; charset=utf-16be", testenv.UTF16("DROP TABLE users", unicode.BigEndian, false), testenv.UTF16("DROP CHAIR users", unicode.BigEndian, false)},
		{"multipart base64", "Content-Type: multipart/form-data; boundary=b", mp("base64", base64.StdEncoding.EncodeToString([]byte("DROP TABLE users")))(""), mp("base64", base64.StdEncoding.EncodeToString([]byte("DROP CHAIR users")))("")},
		{"multipart quoted-printable", "Content-Type: multipart/form-data; boundary=b", mp("quoted-printable", "=44ROP=20TABLE users")(""), mp("quoted-printable", "=44ROP=20CHAIR users")("")},
		{"JSON in single quotes", "Content-Type: application/json", []byte(`{'q':'\u0044ROP TABLE users'}`), []byte(`{'q':'\u0044ROP CHAIR users'}`)},
		{"JSON with a comment holding a quote", "Content-Type: application/json", []byte(`{"x": /* " */ "\u0044ROP TABLE users"}`), []byte(`{"x": /* " */ "\u0044ROP CHAIR users"}`)},
		{"JSON in shift_jis", "Content-Type: application/json; charset=shift_jis", []byte("{\"a\":\"\x81\\\", \"q\":\"\\u0044ROP TABLE users\"}"), []byte("{\"a\":\"\x81\\\", \"q\":\"\\u0044ROP CHAIR users\"}")},
		{"after the first MiB", "Content-Type: text/plain", []byte(strings.Repeat("a ", 600<<10) + "DROP TABLE users"), []byte(strings.Repeat("a ", 600<<10) + "DROP CHAIR users")},
	}
	send := func(hdrs string, data []byte) int {
		raw := fmt.Sprintf("POST /v1/sql HTTP/1.1\r\nHost: openai.example.com\r\n%s\r\nContent-Length: %d\r\n\r\n", hdrs, len(data)) + string(data)
		return rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw).StatusCode
	}
	for _, b := range bodies {
		if code := send(b.headers, b.bad); code != 403 {
			t.Errorf("%s: the forbidden words got %d", b.name, code)
		}
	}
	mu.Lock()
	if len(got) != 0 {
		t.Errorf("the upstream got %d forbidden bodies", len(got))
	}
	mu.Unlock()
	for _, b := range bodies {
		if code := send(b.headers, b.good); code != 200 {
			t.Errorf("%s control: %d", b.name, code)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(bodies) {
		t.Fatalf("the upstream got %d controls, want %d", len(got), len(bodies))
	}
	for i, b := range bodies {
		if !bytes.Equal(got[i], b.good) {
			t.Errorf("%s: the upstream got other bytes than the crew sent", b.name)
		}
	}
}

func TestUninspectableBodies(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, bodyRules)})
	bomb := testenv.Compress("gzip", []byte(strings.Repeat("a", 16<<20)))
	for name, c := range map[string]struct {
		hdrs string
		data []byte
	}{
		"unknown encoding":   {"Content-Encoding: x-custom", []byte("DROP TABLE")},
		"decompression bomb": {"Content-Encoding: gzip", bomb},
		"over max_body":      {"Content-Type: text/plain", bytes.Repeat([]byte("a"), 9<<20)},
		"corrupt gzip":       {"Content-Encoding: gzip", []byte("not gzip at all")},
		"XML entities":       {"Content-Type: application/xml", []byte(`<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "DR"><!ENTITY b "OP TABLE users">]><q>&a;&b;</q>`)},
		"two boundaries":     {"Content-Type: multipart/form-data; boundary=AAA; boundary=BBB", []byte("--AAA\r\nContent-Type: text/plain\r\n\r\nhi\r\n--AAA--\r\n")},
	} {
		raw := fmt.Sprintf("POST /v1/sql HTTP/1.1\r\nHost: openai.example.com\r\n%s\r\nContent-Length: %d\r\n\r\n", c.hdrs, len(c.data)) + string(c.data)
		resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw)
		if resp.StatusCode != 403 || refusalOf(t, resp).Error != errUninspectable {
			t.Errorf("%s: %d %s", name, resp.StatusCode, resp.Header.Get("X-Crewgate-Error"))
		}
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("the upstream got %d uninspectable bodies", n)
	}
	// A request without a body rule in reach is not read at all.
	h2 := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, "  - {name: only-sql, action: deny, match: {path: /v1/sql, body: 'DROP'}}\n")})
	raw := fmt.Sprintf("POST /v1/other HTTP/1.1\r\nHost: openai.example.com\r\nContent-Encoding: x-custom\r\nContent-Length: %d\r\n\r\n%s", 4, "abcd")
	if resp := rawInTunnel(t, h2, "openai.example.com:443", "openai.example.com", raw); resp.StatusCode != 200 {
		t.Errorf("no body rule in reach: %d", resp.StatusCode)
	}
}

func TestMethodOverrideHeaders(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, bodyRules)})
	for _, hdr := range []string{"X-HTTP-Method-Override: DELETE", "X-HTTP-Method: delete", "X-Method-Override: PATCH, DELETE", "X_HTTP_Method_Override: DELETE"} {
		raw := "POST /v1/records/42 HTTP/1.1\r\nHost: openai.example.com\r\n" + hdr + "\r\nContent-Length: 0\r\n\r\n"
		resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw)
		if resp.StatusCode != 403 || refusalOf(t, resp).Rule != "no-deletes" {
			t.Errorf("%s: %d", hdr, resp.StatusCode)
		}
	}
	raw := "POST /v1/records/42?_method=DELETE HTTP/1.1\r\nHost: openai.example.com\r\nContent-Length: 0\r\n\r\n"
	if resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw); resp.StatusCode != 403 {
		t.Errorf("_method in the query: %d", resp.StatusCode)
	}
	raw = "POST /v1/records/42 HTTP/1.1\r\nHost: openai.example.com\r\nX-HTTP-Method-Override: PATCH\r\nContent-Length: 0\r\n\r\n"
	if resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw); resp.StatusCode != 200 {
		t.Errorf("control: %d", resp.StatusCode)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("the upstream got %d requests, want the control only", n)
	}
}

// TestBodyMemoryIsBounded: while the memory for bodies is taken (here by a
// crew that sends a body slowly), another body a rule must read waits up
// to a second and is then refused, never read unbounded.
func TestBodyMemoryIsBounded(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, bodyRules), BodyMemory: 1 << 20})

	slow := tunnelTLS(t, h, "openai.example.com:443", "openai.example.com")
	io.WriteString(slow, "POST /v1/sql HTTP/1.1\r\nHost: openai.example.com\r\nContent-Length: 600000\r\n\r\n"+strings.Repeat("a", 1000))
	time.Sleep(200 * time.Millisecond) // the slow body now holds the memory

	raw := fmt.Sprintf("POST /v1/sql HTTP/1.1\r\nHost: openai.example.com\r\nContent-Length: %d\r\n\r\n%s", 10, "DROP TABLE")
	start := time.Now()
	resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw)
	if resp.StatusCode != 403 || refusalOf(t, resp).Error != errUninspectable {
		t.Errorf("with the memory taken: %d", resp.StatusCode)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("waited %v, want about a second", d)
	}
	// The slow body finishes; its memory comes back and bodies are read again.
	io.WriteString(slow, strings.Repeat("a", 599000))
	if r, err := http.ReadResponse(bufio.NewReader(slow), nil); err != nil || r.StatusCode != 200 {
		t.Fatalf("the slow request: %v %v", r, err)
	}
	resp = rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw)
	if resp.StatusCode != 403 || refusalOf(t, resp).Error != errPolicy {
		t.Errorf("after the memory came back: %d %s", resp.StatusCode, resp.Header.Get("X-Crewgate-Error"))
	}
}

// TestPathRulesSeeLenientPaths: servers route ";params", backslashes and a
// trailing slash to the same handler, so path rules must too.
func TestPathRulesSeeLenientPaths(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, `  - {name: no-admin, action: deny, match: {path: "/v1/admin/*"}}
  - {name: no-deploy, action: deny, match: {path: "/v1/deploy"}}
`)})
	for _, path := range []string{"/v1/admin;x/keys", "/v1/admin;/keys", "/v1%5cadmin/keys", "/v1/deploy/", "/v1/deploy;jsessionid=1"} {
		raw := "GET " + path + " HTTP/1.1\r\nHost: openai.example.com\r\n\r\n"
		if resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw); resp.StatusCode != 403 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	if resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", "GET /v1/administrators HTTP/1.1\r\nHost: openai.example.com\r\n\r\n"); resp.StatusCode != 200 {
		t.Errorf("control: %d", resp.StatusCode)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("the upstream got %d requests, want the control only", n)
	}
}

// blockingApprover holds every request until release is closed.
type blockingApprover struct{ asked, release chan struct{} }

func (b *blockingApprover) Ask(ctx context.Context, _ approval.Request) approval.Verdict {
	b.asked <- struct{}{}
	<-b.release
	return approval.Verdict{How: approval.HowDenied, By: "terminal"}
}

// TestApprovalDoesNotHoldBodyMemory: a crew that parks requests at an
// approval prompt (which may wait minutes) must not starve the memory other
// bodies need: the view is let go once the rules have run.
func TestApprovalDoesNotHoldBodyMemory(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	ap := &blockingApprover{asked: make(chan struct{}, 1), release: make(chan struct{})}
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Approver: ap, BodyMemory: 1 << 20,
		Policy: compileRules(t, "  - {name: ask-sql, action: approve, match: {body: 'UPDATE'}}\n"+bodyRules)})
	parked := tunnelTLS(t, h, "openai.example.com:443", "openai.example.com")
	body := "UPDATE " + strings.Repeat("a", 600000)
	go io.WriteString(parked, fmt.Sprintf("POST /v1/sql HTTP/1.1\r\nHost: openai.example.com\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	<-ap.asked // the first request waits for a human, its body read
	defer close(ap.release)

	raw := "POST /v1/sql HTTP/1.1\r\nHost: openai.example.com\r\nContent-Length: 10\r\n\r\nDROP TABLE"
	resp := rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", raw)
	if resp.StatusCode != 403 || refusalOf(t, resp).Error != errPolicy {
		t.Errorf("while an approval waits: %d %s, want the rule's own deny", resp.StatusCode, resp.Header.Get("X-Crewgate-Error"))
	}
}
