package approval

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crewgate/crewgate/internal/runner"
)

// The control socket speaks newline-delimited JSON, one object per line.
//
// A client that runs inside the crew (the crew or one of its descendants), or
// that the server cannot place, gets {"type":"error","code":"refused",
// "error":"permission denied: ..."} as soon as it connects, and the server
// closes. Otherwise the client opens with {"op":"hello","proto":1,"pid":N};
// the server answers {"type":"hello","proto":1} or {"type":"error",
// "error":"..."} and closes. Then the client sends requests, each with a
// number "id" of its choice that the server's reply carries back:
//
//	{"op":"list","id":1}                                   -> {"type":"pending","id":1,"pending":[Request...],"closed":false}
//	{"op":"watch","id":2}                                  -> {"type":"pending","id":2,...} now and after every change
//	{"op":"unwatch","id":2}                                -> (the stream with id 2 stops)
//	{"op":"decide","id":3,"request":"7","choice":"once"}   -> {"type":"ok","id":3}
//	                                                       or {"type":"error","id":3,"error":"...","code":"not_pending"}
//
// Where the platform does not tell the client's process, watch and decide
// get {"type":"error","id":N,"code":"refused",...}: such a client could be
// the crew. "closed" is true once the session's queue is closed. The
// connection ends when the session ends.
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
	Code    string    `json:"code,omitempty"` // "not_pending" for ErrNotPending, "refused" for ErrRefused
}

// Error codes of serverMsg.
const (
	codeNotPending = "not_pending"
	codeRefused    = "refused"
)

// The refusals a client hears; each says where to answer instead.
const (
	msgCrew    = "permission denied: the crew cannot answer its own approval prompts; run `crewgate approve` from a terminal outside the crew"
	msgUnknown = "permission denied: cannot tell whether this client runs inside the crew (%v); run `crewgate approve` from a terminal outside the crew"
	msgNoPID   = "permission denied: crewgate cannot tell which process this client is, so it could be the crew; answer on the session's own terminal"
	msgOwner   = "permission denied: this socket serves its owner only"
)

// ErrRefused is wrapped by the errors of Dial, Watch and Decide when the
// session refuses the client: it runs inside the crew, or the session cannot
// tell that it does not.
var ErrRefused = errors.New("refused by the session")

// refusal is a refusal's message from the server.
type refusal string

func (r refusal) Error() string        { return string(r) }
func (r refusal) Is(target error) bool { return target == ErrRefused }

// ServeOptions adjust Serve. The zero value is the right one for crewgate
// run.
type ServeOptions struct {
	// InCrew reports whether process pid is the crew or one of its
	// descendants; an error means it cannot tell, and the client is refused.
	// nil means a descendant of crewgate (runner.IsDescendant of
	// os.Getpid()): crewgate's children are the crew and, as the crew's
	// subreaper, the crew's orphans.
	InCrew func(pid int) (bool, error)
	// OnRefusedPeer, when set, is told about each client refused because it
	// runs inside the crew, cannot be placed, or belongs to another user.
	// Calls are serialised.
	OnRefusedPeer func(RefusedPeer)
}

// RefusedPeer is a control-socket client that Serve turned away.
type RefusedPeer struct {
	PID    int    // the client's process; 0 when the platform does not tell
	Reason string // why, e.g. "runs inside the crew"; nothing secret
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
// already serves path.
//
// Only a human outside the crew may answer: where the platform tells the
// client's process (Linux, macOS), a client of another user, or one that
// runs inside the crew (opts.InCrew), is refused before it can list, watch
// or decide; elsewhere no client may watch or decide.
func Serve(ctx context.Context, path string, q *Queue, opts ServeOptions) error {
	ln, err := listen(path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	s := &server{q: q, user: currentUser(), conns: map[net.Conn]struct{}{}, inCrew: opts.InCrew, onRefused: opts.OnRefusedPeer}
	if s.inCrew == nil {
		self := os.Getpid()
		s.inCrew = func(pid int) (bool, error) { return runner.IsDescendant(pid, self) }
	}
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
	inCrew     func(pid int) (bool, error)
	onRefused  func(RefusedPeer)
	refusedMu  sync.Mutex // serialises onRefused

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

// refuse tells the session's hook, then the client, why the client is
// turned away.
func (s *server) refuse(c *conn, id uint64, pid int, msg, reason string) {
	if s.onRefused != nil {
		s.refusedMu.Lock()
		s.onRefused(RefusedPeer{PID: pid, Reason: reason})
		s.refusedMu.Unlock()
	}
	c.send(serverMsg{Type: "error", ID: id, Error: msg, Code: codeRefused})
}

// hangUp ends a refused connection so that the client reads the refusal and
// then the end, not a reset: closing a unix socket with unread input (the
// client's hello, say) would reset it. What the client sent is dropped
// unread, for a second at most.
func hangUp(nc net.Conn) {
	if uc, ok := nc.(*net.UnixConn); ok {
		uc.CloseWrite()
	}
	nc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(nc, 64<<10))
}

// judge decides whether the client at p may connect (msg empty) and whether
// it may answer prompts. It runs before the client can say anything, so that
// the crew never gets as far as a hello. A client whose process is unknown
// (a platform without peer pids, or a pid from another pid namespace) may
// connect and list, but not answer.
func (s *server) judge(p peer) (answers bool, msg, reason string) {
	if !p.known || p.pid <= 0 {
		return false, "", ""
	}
	in, err := s.inCrew(p.pid)
	if err == nil && !p.same() {
		err = fmt.Errorf("process %d exited", p.pid)
	}
	switch {
	case err != nil:
		return false, fmt.Sprintf(msgUnknown, err), "cannot tell whether it runs inside the crew: " + err.Error()
	case in:
		return false, msgCrew, "runs inside the crew"
	}
	return true, "", ""
}

func (s *server) serveConn(nc net.Conn) {
	c := &conn{c: nc}
	p, err := peerOf(nc)
	if err != nil {
		s.refuse(c, 0, 0, msgOwner, "its credentials cannot be read: "+err.Error())
		hangUp(nc)
		return
	}
	defer p.release()
	if p.known && p.uid != os.Getuid() {
		s.refuse(c, 0, p.pid, msgOwner, fmt.Sprintf("belongs to uid %d", p.uid))
		hangUp(nc)
		return
	}
	answers, msg, reason := s.judge(p)
	if msg != "" {
		s.refuse(c, 0, p.pid, msg, reason)
		hangUp(nc)
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
	// Only a client whose process the kernel named can answer, so the pid
	// here is never the client's own claim.
	by := fmt.Sprintf("approve:%s@%s pid %d", s.user, s.host, p.pid)
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
			if !answers {
				s.refuse(c, m.ID, 0, msgNoPID, "watch from a client whose process is unknown")
				continue
			}
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
			if !answers {
				s.refuse(c, m.ID, 0, msgNoPID, "decide from a client whose process is unknown")
				continue
			}
			if err := s.q.Decide(m.Request, m.Choice, by); err != nil {
				reply := serverMsg{Type: "error", ID: m.ID, Error: err.Error()}
				if errors.Is(err, ErrNotPending) {
					reply.Code = codeNotPending
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
