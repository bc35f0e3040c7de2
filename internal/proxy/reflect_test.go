package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/testenv"
)

// reflector is a hostile upstream: it hands back the credential it was
// sent, in the place, encoding, content type and content coding the query
// asks for (where, form, ct, ce).
func reflector(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		v := testenv.Forms(key)[q.Get("form")]
		if v == "" {
			v = key
		}
		h := w.Header()
		if ct := q.Get("ct"); ct != "" {
			h.Set("Content-Type", ct)
		}
		body := []byte("echo: " + v + "\n")
		switch q.Get("where") {
		case "header":
			h.Set("X-Debug-Auth", v)
			body = []byte("ok\n")
		case "setcookie":
			h.Add("Set-Cookie", "session="+v+"; Path=/; HttpOnly")
			body = []byte("ok\n")
		case "location":
			h.Set("Location", "https://elsewhere.example/cb?token="+v)
			w.WriteHeader(http.StatusFound)
			return
		case "early-hints":
			h.Set("Link", "</style.css?k="+v+">; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			h.Del("Link")
			body = []byte("ok\n")
		case "trailer":
			h.Set("Trailer", "X-Checksum")
			w.Write([]byte("ok\n"))
			w.(http.Flusher).Flush()
			h.Set("X-Checksum", v)
			return
		}
		if r.Method == http.MethodHead {
			h.Set("X-Head-Echo", v)
			return
		}
		if ce := q.Get("ce"); ce != "" {
			h.Set("Content-Encoding", ce)
			if c := strings.TrimPrefix(ce, "gzip, "); c == "gzip" || c == "br" || c == "zstd" || c == "deflate" {
				body = testenv.Compress(c, body)
			}
		}
		w.Write(body)
	})
}

// exchange does one request through h and returns everything the crew
// can see of the answer: status line, headers, 1xx headers, body, trailers.
func exchange(t *testing.T, h *harness, method, rawURL string) (*http.Response, []byte) {
	t.Helper()
	var early []byte
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		for k, v := range hdr {
			early = append(early, k+": "+strings.Join(v, ", ")+"\n"...)
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, rawURL, nil)
	req.Header.Set("Authorization", "Bearer "+placeholder)
	c := *h.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, rawURL, err)
	}
	var all bytes.Buffer
	all.Write(early)
	resp.Header.Write(&all)
	resp.Trailer.Write(&all)
	all.Write(body)
	return resp, all.Bytes()
}

// TestResponsesNeverRevealTheCredential plays an upstream that reflects
// the injected key in every place and form the issue lists; the crew must
// not find it however it decodes what it got.
func TestResponsesNeverRevealTheCredential(t *testing.T) {
	up := reflector(t)
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	base := "https://openai.example.com/echo?"
	type tc struct {
		method string
		query  url.Values
	}
	var cases []tc
	for form := range testenv.Forms(realSecret) {
		cases = append(cases, tc{"GET", url.Values{"where": {"body"}, "form": {form}, "ct": {"text/plain"}}})
		if strings.HasPrefix(form, "utf-16") {
			continue // a NUL byte makes a header invalid: the transport refuses it before crewgate could
		}
		for _, where := range []string{"header", "setcookie", "location", "early-hints", "trailer"} {
			cases = append(cases, tc{"GET", url.Values{"where": {where}, "form": {form}, "ct": {"text/plain"}}})
		}
		cases = append(cases, tc{"HEAD", url.Values{"form": {form}}})
	}
	for _, ct := range []string{"application/octet-stream", "image/png", "application/pdf", "application/grpc", "application/x-json", "text/plain", "application/x-ndjson", "text/html", ""} {
		for _, form := range []string{"raw", "base64", "hex", "percent every byte", "json \\u", "html hex", "utf-16le", "utf-16be"} {
			cases = append(cases, tc{"GET", url.Values{"where": {"body"}, "form": {form}, "ct": {ct}}})
		}
		cases = append(cases, tc{"GET", url.Values{"where": {"body"}, "ct": {ct}, "ce": {"gzip"}}})
	}
	for _, c := range cases {
		resp, seen := exchange(t, h, c.method, base+c.query.Encode())
		// A 1xx head ends at the transport (Go clients and servers do not
		// relay it), so there is nothing to mask.
		masked := bytes.Contains(seen, []byte("[MASKED:credential]")) || bytes.Contains(seen, []byte("********"))
		if !masked && c.query.Get("where") != "early-hints" {
			t.Errorf("%s %v: nothing masked:\n%s", c.method, c.query, seen)
		}
		if f, ok := testenv.Reveals(seen, realSecret); ok {
			t.Errorf("%s %v: status %d, the crew sees the key (%s):\n%s", c.method, c.query, resp.StatusCode, f, seen)
		}
		if resp.StatusCode >= 500 {
			t.Errorf("%s %v: status %d", c.method, c.query, resp.StatusCode)
		}
	}
}

// TestBinaryBodiesKeepTheirLength: a gRPC-style length-prefixed frame
// stays valid when the key inside is masked.
func TestBinaryBodiesKeepTheirLength(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		msg := []byte("\x0a\x20" + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
		w.Header().Set("Content-Type", "application/grpc")
		w.Write(frame)
	})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	resp, body := get(t, h.client, "https://openai.example.com/pkg.Svc/Get", "Authorization", "Bearer "+placeholder)
	if resp.StatusCode != 200 || len(body) != 5+2+len(realSecret) || int(body[4]) != 2+len(realSecret) {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if strings.Contains(body, realSecret) || !strings.Contains(body, strings.Repeat("*", len(realSecret))) {
		t.Errorf("body %q", body)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d for %d bytes: a same-length fill keeps it", resp.ContentLength, len(body))
	}
}

// TestUnknownEncodingIsRefused: a body crewgate cannot decode is never
// passed through.
func TestUnknownEncodingIsRefused(t *testing.T) {
	up := reflector(t)
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	for _, ce := range []string{"x-custom", "compress", "gzip, x-custom"} {
		q := url.Values{"where": {"body"}, "ct": {"text/plain"}, "ce": {ce}}
		resp, seen := exchange(t, h, "GET", "https://openai.example.com/echo?"+q.Encode())
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Crewgate-Error") != "response-uninspectable" ||
			resp.Header.Get("X-Should-Retry") != "false" {
			t.Errorf("%s: status %d headers %v", ce, resp.StatusCode, resp.Header)
		}
		if f, ok := testenv.Reveals(seen, realSecret); ok {
			t.Errorf("%s: the crew sees the key (%s)", ce, f)
		}
	}
}

// TestSSEWithCROnlyLineEnds: an upstream ending SSE lines with CR alone
// (valid per the SSE spec) that pauses between events. Each event must
// reach the crew as soon as it is complete, and a key it sends split over
// two chat deltas must still be masked.
func TestSSEWithCROnlyLineEnds(t *testing.T) {
	next := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "text/event-stream")
		for _, part := range []string{"hello ", key[:10], key[10:], " bye"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\r\r", part)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(3 * time.Second):
			}
		}
		io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\rdata: [DONE]\r\r")
	})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	req, _ := http.NewRequest("POST", "https://openai.example.com/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	req.Header.Set("Authorization", "Bearer "+placeholder)
	began := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all bytes.Buffer
	buf := make([]byte, 4096)
	n, err := resp.Body.Read(buf)
	if first := time.Since(began); err != nil || first > 700*time.Millisecond || !bytes.Contains(buf[:n], []byte("hello")) {
		t.Fatalf("first read after %v: %q, %v", first, buf[:n], err)
	}
	all.Write(buf[:n])
	go func() {
		for range 4 {
			time.Sleep(20 * time.Millisecond)
			next <- struct{}{}
		}
	}()
	rest, _ := io.ReadAll(resp.Body)
	all.Write(rest)
	if f, ok := testenv.Reveals(all.Bytes(), realSecret); ok {
		t.Errorf("the key reached the crew (%s):\n%s", f, all.Bytes())
	}
	if !bytes.Contains(all.Bytes(), []byte("[MASKED:credential]")) || !bytes.Contains(all.Bytes(), []byte("bye")) {
		t.Errorf("stream:\n%q", all.Bytes())
	}
}

// TestUndeclaredTrailersAndHeaderNames: a trailer the head never declared,
// and a header named after the key (which Go canonicalises and other
// clients lower-case).
func TestUndeclaredTrailersAndHeaderNames(t *testing.T) {
	lower := "sk-real-upstream-secret-0123456789"
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", r.URL.Query().Get("ct"))
		if r.URL.Query().Get("name") != "" {
			w.Header()[key] = []string{"1"}
		}
		w.Write([]byte("ok\n"))
		w.(http.Flusher).Flush()
		w.Header().Set(http.TrailerPrefix+"X-Leak", key)
	})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	for _, q := range []string{"ct=text/plain", "ct=application/octet-stream", "ct=text/event-stream", "ct=application/json", "ct=text/plain&name=1"} {
		resp, seen := exchange(t, h, "GET", "https://openai.example.com/x?"+q)
		if f, ok := testenv.Reveals(bytes.ToLower(seen), lower); ok {
			t.Errorf("%s: status %d, the crew sees the key (%s):\n%s", q, resp.StatusCode, f, seen)
		}
	}
}
