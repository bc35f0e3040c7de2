package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// Bounds on what the crew may send, the same on the outer port and inside
// intercepted connections: a head larger than maxHeaderBytes gets 431, a
// head that takes longer than Config.HeaderTimeout (readHeaderTimeout by
// default) is dropped.
const (
	maxHeaderBytes    = http.DefaultMaxHeaderBytes
	readHeaderTimeout = 30 * time.Second
	handshakeTimeout  = 10 * time.Second
	mitmIdleTimeout   = 5 * time.Minute
)

// serveMITM serves one intercepted CONNECT: it answers 200, terminates TLS
// with the session CA, and serves the requests inside with net/http's
// server, so the head size limit, header timeout, 100-continue and
// keep-alive work as on the outer port. goproxy's own loop has no bounds on
// a request head inside the tunnel and no read timeout.
//
// The bytes a client sent after the CONNECT head before it saw the 200 are
// lost with goproxy's hijack; clients wait for the 200 before starting TLS.
func (p *Proxy) serveMITM(client net.Conn, mc *mitmConn) {
	if !p.track(client) {
		client.Close()
		return
	}
	defer p.untrack(client)
	defer client.Close()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	br := bufio.NewReader(client)
	client.SetReadDeadline(time.Now().Add(handshakeTimeout))
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	conn := net.Conn(&peekedConn{Conn: client, r: br})
	if first[0] == 0x16 { // a TLS handshake record; anything else is plain HTTP, sent upstream over TLS all the same
		cfg, err := p.cfg.CA.TLSConfig(mc.authority.Host)
		if err != nil {
			p.log.Warn("intercept failed", "host", mc.authority.String(), "error", err.Error())
			return
		}
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Server(conn, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			p.log.Debug("client TLS handshake failed", "host", mc.authority.String(), "error", err.Error())
			return
		}
		conn = tc
	}
	client.SetReadDeadline(time.Time{})

	ln := newOneConnListener(conn)
	// Serve returns as soon as the connection is hijacked (an upgrade),
	// while its handler still relays it: the deferred Close must wait.
	var active sync.WaitGroup
	defer active.Wait()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			active.Add(1)
			defer active.Done()
			p.serveIntercepted(w, r, mc)
		}),
		ReadHeaderTimeout: p.cfg.HeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       mitmIdleTimeout,
		ErrorLog:          slogErrorLog(p.log),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				ln.Close()
			}
		},
	}
	srv.Serve(ln)
}

// serveIntercepted runs one request from inside an intercepted connection
// through the same pipeline as goproxy's handlers, and writes the answer.
func (p *Proxy) serveIntercepted(w http.ResponseWriter, req *http.Request, mc *mitmConn) {
	req.RequestURI = ""
	if !req.URL.IsAbs() {
		req.URL.Scheme = "https"
		req.URL.Host = req.Host
		if req.URL.Host == "" {
			req.URL.Host = mc.authority.String()
		}
	}
	ctx := &goproxy.ProxyCtx{Req: req, UserData: mc, Proxy: p.gp}
	req, resp := p.handleRequest(req, ctx)
	if resp == nil {
		goproxy.RemoveProxyHeaders(ctx, req)
		var err error
		if resp, err = ctx.RoundTrip(req); err != nil {
			// crewgate's round trippers answer every failure themselves.
			http.Error(w, "crewgate: "+err.Error(), http.StatusBadGateway)
			return
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		p.upgrade(w, resp)
		return
	}
	writeResponse(w, resp)
}

// hopByHop are the headers of one connection only (RFC 9110 section 7.6.1).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func copyEndToEnd(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
	for _, f := range src.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			dst.Del(strings.TrimSpace(name))
		}
	}
	for _, h := range hopByHop {
		dst.Del(h)
	}
}

// writeResponse sends resp to the crew. A body of unknown length (SSE, a
// masked stream) is flushed after every read so nothing waits in a buffer.
func writeResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	copyEndToEnd(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	if resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	if resp.ContentLength >= 0 {
		io.Copy(w, resp.Body) // net/http's ReadFrom, with its pooled buffer
	} else {
		copyFlushing(w, resp.Body)
	}
	for k, v := range resp.Trailer {
		for _, s := range v {
			w.Header().Add(http.TrailerPrefix+k, s)
		}
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyFlushing copies src to w and flushes after every read.
func copyFlushing(w http.ResponseWriter, src io.Reader) {
	rc := http.NewResponseController(w)
	rc.Flush() // the head, before the first event arrives
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// upgrade relays an upgraded connection (a WebSocket) both ways, raw.
func (p *Proxy) upgrade(w http.ResponseWriter, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		http.Error(w, "crewgate: the upstream's upgrade cannot be relayed", http.StatusBadGateway)
		return
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	resp.Body = nil
	if err := resp.Write(brw); err != nil || brw.Flush() != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, brw); done <- struct{}{} }()
	go func() { io.Copy(conn, up); done <- struct{}{} }()
	<-done
}

// track registers an intercepted connection so Close can end it; false once
// the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.conns == nil {
		p.conns = map[net.Conn]struct{}{}
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// peekedConn reads through the buffer that peeked at its first byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// oneConnListener hands its connection to http.Server once, then blocks
// until closed, so Serve returns when the connection ends.
type oneConnListener struct {
	conn net.Conn
	once sync.Once
	mu   sync.Mutex
	done chan struct{}
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: c, done: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return dummyAddr{} }

type dummyAddr struct{}

func (dummyAddr) Network() string { return "tcp" }
func (dummyAddr) String() string  { return "intercepted" }
