package approval_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/approval"
)

// runtimeDir points XDG_RUNTIME_DIR at a short private directory (socket
// paths are limited to about 100 bytes).
func runtimeDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("XDG_RUNTIME_DIR", dir)
	return dir
}

// serve runs Serve for session in the background; stop ends it and returns
// Serve's error.
func serve(t *testing.T, session string, q *approval.Queue) (path string, stop func() error) {
	t.Helper()
	return serveWith(t, session, q, approval.ServeOptions{})
}

func serveWith(t *testing.T, session string, q *approval.Queue, opts approval.ServeOptions) (path string, stop func() error) {
	t.Helper()
	path = approval.SocketPath(session)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- approval.Serve(ctx, path, q, opts) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-errc:
			cancel()
			t.Fatalf("Serve: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("the socket did not come up")
		}
	}
	var done bool
	var serr error
	stop = func() error {
		if !done {
			cancel()
			select {
			case serr = <-errc:
			case <-time.After(5 * time.Second):
				t.Error("Serve did not return after its context ended")
			}
			done = true
		}
		return serr
	}
	t.Cleanup(func() { stop() })
	return path, stop
}

func dial(t *testing.T, path string) *approval.Client {
	t.Helper()
	c, err := approval.Dial(path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSocketPath(t *testing.T) {
	dir := runtimeDir(t)
	if got, want := approval.SocketPath("abc"), filepath.Join(dir, "crewgate", "abc.sock"); got != want {
		t.Errorf("SocketPath = %s, want %s", got, want)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	got := approval.SocketPath("abc")
	if filepath.Dir(filepath.Dir(got)) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(filepath.Dir(got)), "crewgate-") {
		t.Errorf("without XDG_RUNTIME_DIR: %s, want crewgate-<uid>/abc.sock in the temp dir", got)
	}
	for s, ok := range map[string]bool{"0ab12cd": true, "a.b_c-d": true, "": false, "../x": false, ".hidden": false, "a/b": false} {
		if approval.ValidSession(s) != ok {
			t.Errorf("ValidSession(%q) = %v", s, !ok)
		}
	}
}

func TestServeModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix modes")
	}
	dir := runtimeDir(t)
	// A directory left too open is tightened.
	if err := os.Mkdir(filepath.Join(dir, "crewgate"), 0o755); err != nil {
		t.Fatal(err)
	}
	path, _ := serve(t, "s1", approval.NewQueue(approval.Options{}))
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	fi, err = os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}
}

func TestClientDecidesEndToEnd(t *testing.T) {
	runtimeDir(t)
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	path, _ := serve(t, "s1", q)
	c := dial(t, path)

	r := req("", "confirm-deletes", "crm.example.com")
	r.Identity, r.Preview = "alice <alice@example.com>", `{"id":42}`
	ch := ask(t.Context(), q, r)
	waitPending(t, q, 1)
	pending, err := c.Pending(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 {
		t.Fatalf("client sees %d pending, want 1", len(pending))
	}
	got := pending[0]
	if got.Method != "DELETE" || got.Rule != "confirm-deletes" || got.Identity != r.Identity || got.Preview != r.Preview || got.Deadline.IsZero() {
		t.Errorf("client sees %+v", got)
	}

	if err := c.Decide(t.Context(), got.ID, approval.AllowSession); err != nil {
		t.Fatal(err)
	}
	v := verdict(t, ch)
	wantBy := fmt.Sprintf("pid %d", os.Getpid())
	if !v.Allow || v.How != "session" || !strings.HasPrefix(v.By, "approve:") || !strings.Contains(v.By, "@") || !strings.HasSuffix(v.By, wantBy) {
		t.Errorf("verdict %+v, want allowed for the session by approve:<user>@<host> %s", v, wantBy)
	}
	if err := c.Decide(t.Context(), got.ID, approval.Deny); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("deciding twice: %v, want ErrNotPending", err)
	}
	if err := c.Decide(t.Context(), "x", "maybe"); err == nil || errors.Is(err, approval.ErrNotPending) {
		t.Errorf("bad choice: %v, want a plain error", err)
	}
}

// next receives from a watch until ok accepts a list.
func next(t *testing.T, w <-chan []approval.Request, ok func([]approval.Request) bool) []approval.Request {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case l, open := <-w:
			if !open {
				t.Fatal("the watch closed")
			}
			if ok(l) {
				return l
			}
		case <-timeout:
			t.Fatal("no matching pending list arrived")
		}
	}
}

func TestWatchStreamsChanges(t *testing.T) {
	runtimeDir(t)
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	path, stop := serve(t, "s1", q)
	c := dial(t, path)
	w, err := c.Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	next(t, w, func(l []approval.Request) bool { return len(l) == 0 })
	a := ask(t.Context(), q, req("a", "r", "a.example.com"))
	waitPending(t, q, 1)
	ask(t.Context(), q, req("b", "r", "b.example.com"))
	next(t, w, func(l []approval.Request) bool { return len(l) == 2 && l[0].ID == "a" && l[1].ID == "b" })
	q.Decide("a", approval.Deny, "terminal")
	verdict(t, a)
	next(t, w, func(l []approval.Request) bool { return len(l) == 1 && l[0].ID == "b" })

	// A second watch on the same client, ended by its context.
	ctx, cancel := context.WithCancel(t.Context())
	w2, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next(t, w2, func(l []approval.Request) bool { return len(l) == 1 })
	cancel()
	for range w2 {
	}

	// The session ends: the watch closes, calls fail, the socket is gone.
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for range w {
	}
	if _, err := c.Pending(t.Context()); !errors.Is(err, approval.ErrSessionEnded) {
		t.Errorf("Pending after the end: %v, want ErrSessionEnded", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is still there: %v", err)
	}
}

func TestWatcherLetsHeadlessWait(t *testing.T) {
	runtimeDir(t)
	q := approval.NewQueue(approval.Options{Headless: true})
	defer q.Close()
	path, _ := serve(t, "s1", q)
	c := dial(t, path)
	ctx, cancel := context.WithCancel(t.Context())
	w, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next(t, w, func([]approval.Request) bool { return true }) // attached once the first list arrives
	ch := ask(t.Context(), q, req("1", "r", "h"))
	l := next(t, w, func(l []approval.Request) bool { return len(l) == 1 })
	if err := c.Decide(t.Context(), l[0].ID, approval.AllowOnce); err != nil {
		t.Fatal(err)
	}
	if v := verdict(t, ch); !v.Allow {
		t.Fatalf("verdict %+v, want allowed", v)
	}
	cancel()
	for range w {
	}
	// Without a watcher, headless denies at once again (the server notices
	// the unwatch asynchronously).
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		v := q.Ask(ctx, req("", "r", "h"))
		cancel()
		if v.How == "headless" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after unwatch: %+v, want a headless deny", v)
		}
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	runtimeDir(t)
	path := approval.SocketPath("s1")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// A socket file nobody listens on, as a crashed session leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal("the stale socket file should exist:", err)
	}
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	serve(t, "s1", q)
	c := dial(t, path)
	if _, err := c.Pending(t.Context()); err != nil {
		t.Fatal(err)
	}

	// A live socket is not taken over.
	err = approval.Serve(t.Context(), path, approval.NewQueue(approval.Options{}), approval.ServeOptions{})
	if err == nil || !strings.Contains(err.Error(), "running session") {
		t.Errorf("Serve on a live socket: %v, want a refusal", err)
	}
	// Nor is a file that is not a socket.
	other := approval.SocketPath("s2")
	os.WriteFile(other, []byte("x"), 0o600)
	if err := approval.Serve(t.Context(), other, q, approval.ServeOptions{}); err == nil {
		t.Error("Serve replaced a regular file")
	}
}

func TestSessionsListsLiveOnly(t *testing.T) {
	runtimeDir(t)
	if got, err := approval.Sessions(); err != nil || len(got) != 0 {
		t.Fatalf("no socket dir: %v, %v; want none", got, err)
	}
	for _, s := range []string{"0b", "0a"} {
		q := approval.NewQueue(approval.Options{})
		t.Cleanup(q.Close)
		serve(t, s, q)
	}
	stale := approval.SocketPath("0c")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	got, err := approval.Sessions()
	if err != nil || !slices.Equal(got, []string{"0a", "0b"}) {
		t.Errorf("Sessions = %v, %v; want [0a 0b]", got, err)
	}
}

func TestDialRefusesAnOpenDirectory(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix modes")
	}
	runtimeDir(t)
	path, _ := serve(t, "s1", approval.NewQueue(approval.Options{}))
	if err := os.Chmod(filepath.Dir(path), 0o777); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Dir(path), 0o700)
	if c, err := approval.Dial(path); err == nil {
		c.Close()
		t.Fatal("Dial accepted a socket in a world-writable directory")
	}
}

func TestServerRefusesOtherProtocolVersions(t *testing.T) {
	runtimeDir(t)
	path, _ := serve(t, "s1", approval.NewQueue(approval.Options{}))
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintln(nc, `{"op":"hello","proto":99}`)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || !strings.Contains(line, `"type":"error"`) || !strings.Contains(line, "protocol version 99") {
		t.Errorf("answer %q, %v; want a protocol error", line, err)
	}
}
