package approval

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The control socket speaks newline-delimited JSON, one object per line.
//
// The client opens with {"op":"hello","proto":1,"pid":N}; the server answers
// {"type":"hello","proto":1} or {"type":"error","error":"..."} and closes.
// Then the client sends requests, each with a number "id" of its choice that
// the server's reply carries back:
//
//	{"op":"list","id":1}                                   -> {"type":"pending","id":1,"pending":[Request...],"closed":false}
//	{"op":"watch","id":2}                                  -> {"type":"pending","id":2,...} now and after every change
//	{"op":"unwatch","id":2}                                -> (the stream with id 2 stops)
//	{"op":"decide","id":3,"request":"7","choice":"once"}   -> {"type":"ok","id":3}
//	                                                       or {"type":"error","id":3,"error":"...","code":"not_pending"}
//
// "closed" is true once the session's queue is closed. The connection ends
// when the session ends.
const protoVersion = 1

// maxSocketPath is the smallest sun_path among the platforms (macOS: 104).
const maxSocketPath = 103

// Timeouts for the socket's bookkeeping; a waiting watcher has none.
const (
	helloTimeout = 5 * time.Second
	writeTimeout = 10 * time.Second
)

// clientMsg is what a client sends.
type clientMsg struct {
	Op      string `json:"op"`
	ID      uint64 `json:"id,omitempty"`
	Proto   int    `json:"proto,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Request string `json:"request,omitempty"`
	Choice  Choice `json:"choice,omitempty"`
}

// serverMsg is what the server sends.
type serverMsg struct {
	Type    string    `json:"type"`
	ID      uint64    `json:"id,omitempty"`
	Proto   int       `json:"proto,omitempty"`
	Pending []Request `json:"pending,omitempty"`
	Closed  bool      `json:"closed,omitempty"`
	Error   string    `json:"error,omitempty"`
	Code    string    `json:"code,omitempty"` // "not_pending" for ErrNotPending
}

// SocketDir is the directory that holds the control sockets:
// $XDG_RUNTIME_DIR/crewgate, or, when XDG_RUNTIME_DIR is unset,
// crewgate-<uid> in os.TempDir() (crewgate-<user> where there are no uids).
// Serve creates it with mode 0700 and refuses one that another user owns.
func SocketDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "crewgate")
	}
	owner := strconv.Itoa(os.Getuid())
	if os.Getuid() < 0 {
		owner = safeName(currentUser())
	}
	return filepath.Join(os.TempDir(), "crewgate-"+owner)
}

// SocketPath is where the session's control socket lives: <session>.sock in
// SocketDir.
func SocketPath(session string) string {
	return filepath.Join(SocketDir(), session+".sock")
}

// ValidSession reports whether s can name a session's socket: letters,
// digits, '-', '_' and '.', not starting with '.', at most 64 bytes.
func ValidSession(s string) bool {
	return s != "" && len(s) <= 64 && s[0] != '.' && safeName(s) == s
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// Sessions lists the running sessions: the sockets in SocketDir that accept
// a connection, sorted (session ids sort by start time). Stale socket files
// are ignored and left alone; a missing directory means none.
func Sessions() ([]string, error) {
	dir := SocketDir()
	paths, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, nil
	}
	if err := checkDir(dir, false); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	var live []string
	for _, p := range paths {
		if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
			c.Close()
			live = append(live, strings.TrimSuffix(filepath.Base(p), ".sock"))
		}
	}
	slices.Sort(live)
	return live, nil
}

// Serve serves q on a unix socket at path until ctx ends, then removes the
// socket and returns nil once every connection is closed. It creates the
// directory (0700, refusing one another user owns) and the socket (0600),
// replaces a stale socket file, and refuses to start when a live session
// already serves path. Where the platform tells the peer's uid (Linux,
// macOS), connections from other users are refused.
func Serve(ctx context.Context, path string, q *Queue) error {
	ln, err := listen(path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	s := &server{q: q, user: currentUser(), conns: map[net.Conn]struct{}{}}
	s.host, _ = os.Hostname()
	if s.host == "" {
		s.host = "localhost"
	}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		s.mu.Lock()
		s.done = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close() // unlinks the socket
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// listen prepares the directory, clears a stale socket and listens.
func listen(path string) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is longer than %d bytes; set XDG_RUNTIME_DIR to a shorter directory", path, maxSocketPath)
	}
	if err := checkDir(filepath.Dir(path), true); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by a running session", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The 0700 directory already keeps others out while the mode is set.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

type server struct {
	q          *Queue
	user, host string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// conn is one client connection on the server side.
type conn struct {
	c  net.Conn
	mu sync.Mutex // serialises writes
}

func (c *conn) send(m serverMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = c.c.Write(append(b, '\n'))
	if err != nil {
		c.c.Close() // a client that cannot keep up is dropped, never waited for
	}
	return err
}

func (s *server) serveConn(nc net.Conn) {
	c := &conn{c: nc}
	uid, pid, known, err := peerCred(nc)
	if err != nil || known && uid != os.Getuid() {
		c.send(serverMsg{Type: "error", Error: "permission denied: this socket serves its owner only"})
		return
	}

	sc := bufio.NewScanner(nc)
	sc.Buffer(make([]byte, 4096), 64<<10)
	nc.SetReadDeadline(time.Now().Add(helloTimeout))
	var hello clientMsg
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &hello) != nil || hello.Op != "hello" {
		return // e.g. Sessions probing; nothing to say
	}
	if hello.Proto != protoVersion {
		c.send(serverMsg{Type: "error", Error: fmt.Sprintf("protocol version %d is not supported (this session speaks %d); use the same crewgate for run and approve", hello.Proto, protoVersion)})
		return
	}
	nc.SetReadDeadline(time.Time{})
	if !known {
		pid = hello.PID
	}
	by := fmt.Sprintf("approve:%s@%s pid %d", s.user, s.host, pid)
	if c.send(serverMsg{Type: "hello", Proto: protoVersion}) != nil {
		return
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	watches := map[uint64]context.CancelFunc{}
	for sc.Scan() {
		var m clientMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			c.send(serverMsg{Type: "error", Error: "bad message: " + err.Error()})
			return
		}
		switch m.Op {
		case "list":
			c.send(s.snapshot(m.ID))
		case "watch":
			if watches[m.ID] != nil {
				c.send(serverMsg{Type: "error", ID: m.ID, Error: "a watch with this id exists"})
				continue
			}
			wctx, wcancel := context.WithCancel(ctx)
			watches[m.ID] = wcancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.watch(wctx, c, m.ID)
			}()
		case "unwatch":
			if stop := watches[m.ID]; stop != nil {
				stop()
				delete(watches, m.ID)
			}
		case "decide":
			if err := s.q.Decide(m.Request, m.Choice, by); err != nil {
				reply := serverMsg{Type: "error", ID: m.ID, Error: err.Error()}
				if errors.Is(err, ErrNotPending) {
					reply.Code = "not_pending"
				}
				c.send(reply)
				continue
			}
			c.send(serverMsg{Type: "ok", ID: m.ID})
		default:
			c.send(serverMsg{Type: "error", ID: m.ID, Error: fmt.Sprintf("unknown op %q", m.Op)})
		}
	}
}

// watch sends the pending list now and after every change until ctx ends.
// The watcher counts as an approver for a headless queue while it lasts.
func (s *server) watch(ctx context.Context, c *conn, id uint64) {
	defer s.q.Attach()()
	for {
		changed := s.q.Changed()
		if c.send(s.snapshot(id)) != nil {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

func (s *server) snapshot(id uint64) serverMsg {
	return serverMsg{Type: "pending", ID: id, Pending: s.q.Pending(), Closed: s.q.Closed()}
}

// currentUser names the user for Verdict.By.
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "uid" + strconv.Itoa(os.Getuid())
}
