package proxy

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/ca"
)

// The benchmarks measure what the proxy adds to a request, always against a
// direct request to the same upstream measured in the same loop: every
// iteration sends one request directly and one through the proxy, so a noisy
// machine slows both alike. ns/op is therefore the time of both requests; the
// figures that matter are the reported percentiles:
//
//	direct-p50-us   the direct request alone (p99 likewise)
//	p50-us          the request through the proxy
//	added-p50-us    p50 through the proxy minus p50 direct (p99 likewise)
//	x-direct-p50    p50 through the proxy as a multiple of p50 direct
//
// Run them with scripts/bench.sh, or:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/proxy/

// body1KiB is a 1 KiB chat completion with ordinary text: the masker reads it
// all and finds nothing.
var body1KiB = func() string {
	head := `{"id":"chatcmpl-bench","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`
	tail := `"},"finish_reason":"stop"}]}`
	words := "The proxy terminates TLS, injects the credential and masks the answer as it streams. "
	var b strings.Builder
	b.WriteString(head)
	for b.Len()+len(tail) < 1024 {
		b.WriteByte(words[b.Len()%len(words)])
	}
	b.WriteString(tail)
	return b.String()
}()

// benchRig is an HTTPS upstream on 127.0.0.1 and a proxy that intercepts it,
// set up the way crewgate run sets them up: a session CA, an injected
// credential, response masking with the default detectors.
type benchRig struct {
	up        *httptest.Server
	proxyURL  *url.URL
	sessionCA *ca.CA
	direct    *http.Client // keep-alive, straight to the upstream
	proxied   *http.Client // keep-alive, through the proxy (the crew's client)
}

const benchHost = "api.example.com" // the upstream's test certificate covers it

func newBenchRig(b *testing.B, h http.Handler, rec ...Recorder) *benchRig {
	b.Helper()
	up := httptest.NewTLSServer(h) // HTTP/1.1 only, like the intercepted side
	b.Cleanup(up.Close)
	u := &upstream{Server: up}
	cfg := Config{Upstreams: []Upstream{{
		Name: "bench", Hosts: []string{benchHost}, Source: staticSource{token: realSecret},
		Placeholder: placeholder, Address: u.addr(), RootCAs: u.pool(),
	}}}
	if len(rec) > 0 {
		cfg.Recorder = rec[0]
	}
	rig := start(b, cfg)
	r := &benchRig{up: up, proxyURL: rig.url, sessionCA: rig.ca, direct: up.Client()}
	r.proxied = r.client(false)
	b.Cleanup(func() {
		r.direct.CloseIdleConnections()
		r.proxied.CloseIdleConnections()
	})
	return r
}

// client is configured the way the crew's is: the proxy URL with its
// credential and a trust store holding the session CA. Without keep-alive
// every request opens a new CONNECT.
func (r *benchRig) client(noKeepAlive bool) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(r.sessionCA.Certificate())
	c := clientVia(r.proxyURL, roots)
	c.Transport.(*http.Transport).DisableKeepAlives = noKeepAlive
	return c
}

// newConnDirect opens a new TLS connection to the upstream for every request.
func (r *benchRig) newConnDirect() *http.Client {
	t := r.up.Client().Transport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return &http.Client{Transport: t, Timeout: 10 * time.Second}
}

func (r *benchRig) directURL(path string) string  { return r.up.URL + path }
func (r *benchRig) proxiedURL(path string) string { return "https://" + benchHost + path }

// timedGet sends one GET with the crew's placeholder, reads the whole body
// and returns how long that took.
func timedGet(b *testing.B, c *http.Client, rawURL string, wantLen int) time.Duration {
	d, err := fetch(c, rawURL, wantLen)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func fetch(c *http.Client, rawURL string, wantLen int) (time.Duration, error) {
	start := time.Now()
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+placeholder)
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil || resp.StatusCode != 200 || int(n) != wantLen {
		return 0, fmt.Errorf("GET %s: status %d, %d bytes, %v", rawURL, resp.StatusCode, n, err)
	}
	return d, nil
}

// percentile returns the p-th percentile (0 < p < 100) of ds, sorting ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// reportAdded reports the proxied percentiles and what they add over direct.
func reportAdded(b *testing.B, direct, proxied []time.Duration) {
	d50, d99 := percentile(direct, 50), percentile(direct, 99)
	p50, p99 := percentile(proxied, 50), percentile(proxied, 99)
	b.ReportMetric(us(d50), "direct-p50-us")
	b.ReportMetric(us(d99), "direct-p99-us")
	b.ReportMetric(us(p50), "p50-us")
	b.ReportMetric(us(p50-d50), "added-p50-us")
	b.ReportMetric(us(p99-d99), "added-p99-us")
	b.ReportMetric(float64(p50)/float64(d50), "x-direct-p50")
}

func bench1KiBHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body1KiB)))
		io.WriteString(w, body1KiB)
	})
}

// BenchmarkRequest1KiB measures a 1 KiB JSON response on a reused
// connection: direct with keep-alive against the crew's client on its reused
// intercepted connection (goal: added ≤ 500 µs p50, ≤ 2 ms p99).
func BenchmarkRequest1KiB(b *testing.B) {
	r := newBenchRig(b, bench1KiBHandler())
	for range 50 { // connections, leaf certificate, masking engine
		timedGet(b, r.direct, r.directURL("/v1/chat"), len(body1KiB))
		timedGet(b, r.proxied, r.proxiedURL("/v1/chat"), len(body1KiB))
	}
	var direct, proxied []time.Duration
	for b.Loop() {
		direct = append(direct, timedGet(b, r.direct, r.directURL("/v1/chat"), len(body1KiB)))
		proxied = append(proxied, timedGet(b, r.proxied, r.proxiedURL("/v1/chat"), len(body1KiB)))
	}
	reportAdded(b, direct, proxied)
}

// BenchmarkNewConnect1KiB opens a new connection for every request: a new
// TLS connection direct against a new CONNECT, proxy authentication and an
// intercepted TLS handshake (the leaf certificate is cached after the first)
// through the proxy. The proxy's own connection to the upstream is reused,
// as in a session. Goal: p50-us ≤ 5 ms.
func BenchmarkNewConnect1KiB(b *testing.B) {
	r := newBenchRig(b, bench1KiBHandler())
	newDirect, newProxied := r.newConnDirect(), r.client(true)
	for range 10 {
		timedGet(b, newDirect, r.directURL("/v1/chat"), len(body1KiB))
		timedGet(b, newProxied, r.proxiedURL("/v1/chat"), len(body1KiB))
	}
	var direct, proxied []time.Duration
	for b.Loop() {
		direct = append(direct, timedGet(b, newDirect, r.directURL("/v1/chat"), len(body1KiB)))
		proxied = append(proxied, timedGet(b, newProxied, r.proxiedURL("/v1/chat"), len(body1KiB)))
	}
	reportAdded(b, direct, proxied)
}

// sseStream lets the benchmark pace an upstream's event stream: the
// upstream sends one event per tick on next and reports when it flushed it.
type sseStream struct {
	next chan struct{}
	sent chan time.Time
}

// sseChunk is one OpenAI chat chunk of ordinary text, so the masker holds
// nothing back.
const sseChunk = `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" streaming words"}}]}` + "\n\n"

// BenchmarkSSEEvent measures the latency of one streamed event, from the
// upstream's flush to the client having read the whole event, on a direct
// stream and on an intercepted, masked stream open side by side
// (goal: added ≤ 1 ms p50, ≤ 3 ms p99).
func BenchmarkSSEEvent(b *testing.B) {
	streams := map[string]*sseStream{
		"direct":  {next: make(chan struct{}), sent: make(chan time.Time, 1)},
		"proxied": {next: make(chan struct{}), sent: make(chan time.Time, 1)},
	}
	r := newBenchRig(b, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s := streams[req.URL.Query().Get("s")]
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for range s.next {
			t := time.Now()
			io.WriteString(w, sseChunk)
			w.(http.Flusher).Flush()
			s.sent <- t
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	// Cleanups run last first: the streams' contexts are cancelled, then
	// the handlers end, then the upstream closes.
	b.Cleanup(func() {
		for _, s := range streams {
			close(s.next)
		}
	})
	open := func(c *http.Client, rawURL string) (*bufio.Reader, io.Closer) {
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		watchdog := time.AfterFunc(5*time.Second, cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", rawURL, nil)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatalf("GET %s (no answer within 5s?): %v", rawURL, err)
		}
		watchdog.Stop()
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %s", rawURL, resp.Status)
		}
		return bufio.NewReader(resp.Body), resp.Body
	}
	event := func(s *sseStream, br *bufio.Reader, body io.Closer) time.Duration {
		// A proxy that holds events back must fail the benchmark, not hang it.
		watchdog := time.AfterFunc(5*time.Second, func() { body.Close() })
		s.next <- struct{}{}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatalf("reading the stream (no event within 5s?): %v", err)
			}
			if line == "\n" {
				break
			}
		}
		done := time.Now()
		watchdog.Stop()
		return done.Sub(<-s.sent)
	}
	// An SSE client would be a streaming client with a long-lived
	// connection; no client timeout.
	r.proxied.Timeout = 0
	directBody, dc := open(r.direct, r.directURL("/v1/chat?s=direct"))
	proxiedBody, pc := open(r.proxied, r.proxiedURL("/v1/chat?s=proxied"))
	for range 20 {
		event(streams["direct"], directBody, dc)
		event(streams["proxied"], proxiedBody, pc)
	}
	var direct, proxied []time.Duration
	for b.Loop() {
		direct = append(direct, event(streams["direct"], directBody, dc))
		proxied = append(proxied, event(streams["proxied"], proxiedBody, pc))
	}
	reportAdded(b, direct, proxied)
}

// BenchmarkThroughput1KiB sends 1 KiB requests over 16 keep-alive
// connections, directly and through the proxy, all in one process; req/s is
// the figure (scripts/bench.sh measures the same with crewgate and mitmproxy
// as their own processes).
//
// "proxied+recording" is the same proxy with the session recorder writing
// the hash-chained log to disk: its ratio to "proxied" is the cost of
// recording.
func BenchmarkThroughput1KiB(b *testing.B) {
	r := newBenchRig(b, bench1KiBHandler())
	rec, err := audit.Open(b.TempDir(), "bench", audit.Event{Start: &audit.Start{Command: []string{"bench"}}}, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rec.Close(audit.Event{End: &audit.End{}}) })
	rr := newBenchRig(b, bench1KiBHandler(), rec)
	for _, tc := range []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"direct", r.direct, r.directURL("/v1/chat")},
		{"proxied", r.proxied, r.proxiedURL("/v1/chat")},
		{"proxied+recording", rr.proxied, rr.proxiedURL("/v1/chat")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			t := tc.c.Transport.(*http.Transport)
			t.MaxConnsPerHost, t.MaxIdleConnsPerHost = 16, 16
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := fetch(tc.c, tc.url, len(body1KiB)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkRecordingOverhead measures what the session recorder costs:
// rounds of 16 keep-alive connections through a proxy without and with a
// recorder writing the log to disk alternate, so both see the same machine;
// "ratio" is recorded/unrecorded req/s (the median of the rounds). Run it
// with -benchtime 10x for ten pairs of rounds.
func BenchmarkRecordingOverhead(b *testing.B) {
	rec, err := audit.Open(b.TempDir(), "bench", audit.Event{Start: &audit.Start{Command: []string{"bench"}}}, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rec.Close(audit.Event{End: &audit.End{}}) })
	rigs := []*benchRig{newBenchRig(b, bench1KiBHandler()), newBenchRig(b, bench1KiBHandler(), rec)}
	round := func(r *benchRig) float64 {
		t := r.proxied.Transport.(*http.Transport)
		t.MaxConnsPerHost, t.MaxIdleConnsPerHost = 16, 16
		var n atomic.Int64
		stop := time.Now().Add(300 * time.Millisecond)
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if _, err := fetch(r.proxied, r.proxiedURL("/v1/chat"), len(body1KiB)); err != nil {
						b.Error(err)
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / 0.3
	}
	round(rigs[0]) // warm both up
	round(rigs[1])
	var off, on, ratios []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, c := round(rigs[0]), round(rigs[1])
		off, on, ratios = append(off, a), append(on, c), append(ratios, c/a)
	}
	b.ReportMetric(median(off), "req/s-unrecorded")
	b.ReportMetric(median(on), "req/s-recorded")
	b.ReportMetric(median(ratios), "ratio")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
