// Command loadgen is the load generator of scripts/bench.sh: an HTTPS
// upstream on 127.0.0.1 that answers every request with 1 KiB, and a client
// that sends it requests over a fixed number of keep-alive connections,
// directly or through a proxy, for a bounded time and count. It only ever
// talks to loopback addresses.
//
//	loadgen serve -cert FILE            # prints the address, serves until killed
//	loadgen load -url URL [-proxy env|URL] [-cacert FILE] [-c 16] [-d 3s]
//	loadgen port                        # prints a free port on 127.0.0.1
//
// load prints one line of key=value pairs: requests, errors, seconds, rps,
// p50_ms, p99_ms and, with -pid, the CPU time per request and the peak RSS of
// the proxy's process (with -pid -1 its parent: crewgate when it runs as the
// crew).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen serve|load|port [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	case "port":
		err = port()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// body is the 1 KiB answer: a chat completion with ordinary text, so a
// masking proxy reads it all and finds nothing.
var body = func() []byte {
	head := `{"id":"chatcmpl-bench","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`
	tail := `"},"finish_reason":"stop"}]}`
	words := "The proxy terminates TLS, injects the credential and masks the answer as it streams. "
	b := []byte(head)
	for len(b)+len(tail) < 1024 {
		b = append(b, words[len(b)%len(words)])
	}
	return append(b, tail...)
}()

// serve runs the upstream with a fresh certificate for localhost and
// 127.0.0.1, whose PEM it writes to the -cert file for the proxies and the
// direct client to trust.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	certFile := fs.String("cert", "", "write the upstream's certificate (PEM) to this file")
	fs.Parse(args)
	if *certFile == "" {
		return errors.New("serve: -cert is required")
	}
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}),
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only
	}
	fmt.Println(ln.Addr())
	return srv.ServeTLS(ln, "", "")
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // it is its own trust anchor
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func port() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

// loopback reports whether a URL's host is this machine.
func loopback(u *url.URL) bool {
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	rawURL := fs.String("url", "", "the upstream URL (localhost or a loopback address)")
	proxy := fs.String("proxy", "", `proxy URL, or "env" for $HTTPS_PROXY as crewgate hands it to the crew; none when empty`)
	caFile := fs.String("cacert", "", "trust only this PEM file (default: the system roots, which honour SSL_CERT_FILE)")
	conns := fs.Int("c", 16, "connections, each with one request in flight")
	dur := fs.Duration("d", 3*time.Second, "how long to measure")
	maxReq := fs.Int("n", 1_000_000, "stop after this many requests")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "load before measuring (connections, certificates)")
	pid := fs.Int("pid", 0, "also report the CPU time per request and the peak RSS of this process, the proxy (-1: the parent, as under crewgate run)")
	fs.Parse(args)

	target, err := url.Parse(*rawURL)
	if err != nil || !loopback(target) {
		return fmt.Errorf("load: -url %q is not a loopback URL", *rawURL)
	}
	tr := &http.Transport{
		MaxConnsPerHost:     *conns,
		MaxIdleConnsPerHost: *conns,
		DisableCompression:  true,
		TLSClientConfig:     &tls.Config{},
	}
	if *proxy == "env" {
		// Not http.ProxyFromEnvironment: it never proxies localhost.
		*proxy = os.Getenv("HTTPS_PROXY")
	}
	if *proxy != "" {
		pu, err := url.Parse(*proxy)
		if err != nil || !loopback(pu) {
			return fmt.Errorf("load: proxy %q is not a loopback URL", *proxy)
		}
		tr.Proxy = http.ProxyURL(pu)
	}
	if *caFile != "" {
		pemData, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return fmt.Errorf("load: %s holds no certificate", *caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		count     atomic.Int64
		errs      atomic.Int64
		firstErr  atomic.Value
		mu        sync.Mutex
		lat       []time.Duration
		wg        sync.WaitGroup
	)
	for range *conns {
		wg.Go(func() {
			var mine []time.Duration
			for !stop.Load() {
				start := time.Now()
				err := get(client, target.String())
				d := time.Since(start)
				if !measuring.Load() {
					if err != nil {
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				if count.Add(1) > int64(*maxReq) {
					stop.Store(true)
					break
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	if *pid == -1 {
		*pid = os.Getppid()
	}
	time.Sleep(*warmup)
	cpu0 := cpuTime(*pid)
	measuring.Store(true)
	start := time.Now()
	deadline := time.NewTimer(*dur)
	for !stop.Load() {
		select {
		case <-deadline.C:
			stop.Store(true)
		case <-time.After(10 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime(*pid) - cpu0
	wg.Wait()

	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p/100)]) / float64(time.Millisecond)
	}
	out := fmt.Sprintf("requests=%d errors=%d seconds=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f",
		len(lat), errs.Load(), elapsed.Seconds(), float64(len(lat))/elapsed.Seconds(), pct(50), pct(99))
	if *pid > 0 && len(lat) > 0 {
		out += fmt.Sprintf(" proxy_cpu_us_per_req=%.1f proxy_peak_rss_kb=%s",
			float64(cpu)/float64(time.Microsecond)/float64(len(lat)), procStatus(*pid, "VmHWM"))
	}
	fmt.Println(out)
	if e, ok := firstErr.Load().(string); ok {
		fmt.Fprintln(os.Stderr, "loadgen: first error:", e)
	}
	if errs.Load() > 0 || len(lat) == 0 {
		return errors.New("load: some requests failed")
	}
	return nil
}

func get(c *http.Client, rawURL string) error {
	resp, err := c.Get(rawURL)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != 200:
		return fmt.Errorf("status %s", resp.Status)
	case n != int64(len(body)):
		return fmt.Errorf("got %d bytes, want %d", n, len(body))
	}
	return nil
}

// cpuTime is the user and system time pid has used so far, or 0.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procStatus returns a field of /proc/PID/status in kB, or "?".
func procStatus(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSuffix(strings.TrimSpace(v), " kB")
		}
	}
	return "?"
}
