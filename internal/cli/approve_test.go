package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/cli"
)

// approveRuntime gives the test a short private XDG_RUNTIME_DIR (socket
// paths are limited to about 100 bytes) and returns it.
func approveRuntime(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("XDG_RUNTIME_DIR", dir)
	return dir
}

// fakeSession serves a queue on the session's control socket, as 'crewgate
// run' does; end stops serving.
type fakeSession struct {
	q   *approval.Queue
	end func()
}

func startSession(t *testing.T, id string) *fakeSession {
	t.Helper()
	return startSessionWith(t, id, approval.ServeOptions{})
}

func startSessionWith(t *testing.T, id string, opts approval.ServeOptions) *fakeSession {
	t.Helper()
	q := approval.NewQueue(approval.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	path := approval.SocketPath(id)
	go func() { done <- approval.Serve(ctx, path, q, opts) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("session %s: the socket did not come up", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var once sync.Once
	s := &fakeSession{q: q, end: func() {
		once.Do(func() {
			q.Close()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}}
	t.Cleanup(s.end)
	return s
}

// ask queues r and returns where its verdict arrives, once it is pending.
func (s *fakeSession) ask(t *testing.T, r approval.Request) <-chan approval.Verdict {
	t.Helper()
	ch := make(chan approval.Verdict, 1)
	n := len(s.q.Pending())
	go func() { ch <- s.q.Ask(context.Background(), r) }()
	deadline := time.After(5 * time.Second)
	for {
		changed := s.q.Changed()
		if len(s.q.Pending()) > n {
			return ch
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("the request never became pending")
		}
	}
}

func awaitVerdict(t *testing.T, ch <-chan approval.Verdict) approval.Verdict {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
		return approval.Verdict{}
	}
}

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) waitFor(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %q in:\n%s", what, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// approveCmd runs 'crewgate approve args...' in process with stdin lines
// from the test.
type approveCmd struct {
	in          *io.PipeWriter
	out, errOut *syncBuffer
	code        chan int
}

func startApprove(t *testing.T, args ...string) *approveCmd {
	t.Helper()
	pr, pw := io.Pipe()
	c := &approveCmd{in: pw, out: &syncBuffer{}, errOut: &syncBuffer{}, code: make(chan int, 1)}
	go func() { c.code <- cli.Main(append([]string{"approve"}, args...), pr, c.out, c.errOut) }()
	t.Cleanup(func() { pw.Close() })
	return c
}

func (c *approveCmd) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		t.Fatalf("writing %q: %v", line, err)
	}
}

func (c *approveCmd) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-c.code:
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("approve did not exit; stderr:\n%s", c.errOut.String())
		return -1
	}
}

func deleteRequest(id, host string) approval.Request {
	return approval.Request{
		ID: id, Session: "0abc", Method: "DELETE", URL: "https://" + host + "/v1/contacts/42", Host: host,
		Rule: "confirm-deletes", Reason: "deletes data in the CRM", Identity: "alice <alice@example.com>",
		Preview: "{\"id\": 42,\n \"note\": \"\x1b[31mred\"}",
	}
}

func TestApproveDecidesFromStdinLines(t *testing.T) {
	approveRuntime(t)
	s := startSession(t, "0abc")
	first := s.ask(t, deleteRequest("7", "crm.example.com"))

	cmd := startApprove(t) // the only session: no SESSION needed
	cmd.out.waitFor(t, "request 7 DELETE https://crm.example.com/v1/contacts/42\n")
	out := cmd.out.String()
	for _, want := range []string{
		"rule:     confirm-deletes: deletes data in the CRM",
		"identity: alice <alice@example.com>",
		`preview:  {"id": 42,`,
		`"note": "\x1b[31mred"}`, // the escape is shown, not sent to the terminal
		"waiting:  1 of 1, times out in ",
		"answer:   a|s|d 7",
		"            s allow DELETE crm.example.com:443/v1/contacts/42 for the session (rule confirm-deletes)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("stdout carries a raw escape from the crew's body:\n%q", out)
	}

	cmd.send(t, "a 7")
	v := awaitVerdict(t, first)
	if !v.Allow || v.How != approval.HowOnce || !regexp.MustCompile(`^approve:\S+@\S+ pid \d+$`).MatchString(v.By) {
		t.Errorf("verdict %+v, want allowed once by approve:<user>@<host> pid N", v)
	}
	if !strings.HasSuffix(v.By, fmt.Sprintf(" pid %d", os.Getpid())) {
		t.Errorf("By %q does not name this process", v.By)
	}

	// New requests keep coming; s grants the same request for the session.
	second := s.ask(t, deleteRequest("8", "other.example.com"))
	cmd.out.waitFor(t, "request 8 DELETE https://other.example.com")
	cmd.send(t, "s 8")
	if v := awaitVerdict(t, second); !v.Allow || v.How != approval.HowSession {
		t.Errorf("verdict %+v, want allowed for the session", v)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if v := s.q.Ask(ctx, deleteRequest("", "other.example.com")); v.How != approval.HowGrant {
		t.Errorf("the same request again: %+v, want the grant", v)
	}
	third := s.ask(t, deleteRequest("9", "crm.example.com"))
	cmd.out.waitFor(t, "request 9 ")
	cmd.send(t, "d 9")
	if v := awaitVerdict(t, third); v.Allow || v.How != approval.HowDenied {
		t.Errorf("verdict %+v, want denied", v)
	}
	cmd.errOut.waitFor(t, "Request 9 denied.")

	// Stdin ending does not stop approve; the session ending does, with 0.
	cmd.in.Close()
	select {
	case code := <-cmd.code:
		t.Fatalf("approve exited (%d) when stdin ended", code)
	case <-time.After(50 * time.Millisecond):
	}
	s.end()
	if code := cmd.exit(t); code != 0 {
		t.Errorf("exit %d at the session's end, want 0; stderr:\n%s", code, cmd.errOut.String())
	}
	if !strings.Contains(cmd.errOut.String(), "Session 0abc ended.") {
		t.Errorf("stderr:\n%s", cmd.errOut.String())
	}
}

func TestApproveQuitsAndReportsRefusedAnswers(t *testing.T) {
	approveRuntime(t)
	s := startSession(t, "0abc")
	ch := s.ask(t, deleteRequest("1", "crm.example.com"))
	cmd := startApprove(t, "0abc")
	cmd.out.waitFor(t, "request 1 ")
	cmd.send(t, "d 99")
	cmd.send(t, "maybe 1")
	cmd.send(t, "q")
	if code := cmd.exit(t); code != 1 {
		t.Errorf("exit %d, want 1 after answers that were not taken", code)
	}
	errOut := cmd.errOut.String()
	for _, want := range []string{`request "99": no such pending request`, `cannot read "maybe 1"`, "session 0abc keeps running", "2 answers were not taken"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// Quitting decides nothing.
	if p := s.q.Pending(); len(p) != 1 {
		t.Errorf("pending after quit: %v", p)
	}
	s.end()
	if v := awaitVerdict(t, ch); v.Allow || v.How != approval.HowShutdown {
		t.Errorf("verdict %+v, want the shutdown deny", v)
	}
}

func TestApprovePicksTheSession(t *testing.T) {
	approveRuntime(t)
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := cli.Main(append([]string{"approve"}, args...), strings.NewReader(""), &out, &errOut)
		return code, errOut.String()
	}
	code, errOut := run()
	if code != 1 || !strings.Contains(errOut, "no crewgate session is running") || !strings.Contains(errOut, "hint: ") {
		t.Errorf("no session: exit %d\n%s", code, errOut)
	}
	code, errOut = run("../etc")
	if code != 2 {
		t.Errorf("a bad session name: exit %d, want 2\n%s", code, errOut)
	}
	code, errOut = run("0nothere")
	if code != 1 || !strings.Contains(errOut, "connecting to session 0nothere") {
		t.Errorf("a session that does not run: exit %d\n%s", code, errOut)
	}
	startSession(t, "0a")
	startSession(t, "0b")
	code, errOut = run()
	if code != 2 || !strings.Contains(errOut, "  0a") || !strings.Contains(errOut, "  0b") || !strings.Contains(errOut, "crewgate approve SESSION") {
		t.Errorf("two sessions: exit %d, want 2 and both listed\n%s", code, errOut)
	}
	code, errOut = run("a", "b")
	if code != 2 {
		t.Errorf("two arguments: exit %d, want 2\n%s", code, errOut)
	}
}

// TestApproveKeysOnATerminal drives the real binary on a terminal: single
// keys decide, and the terminal is back in cooked mode afterwards.
func TestApproveKeysOnATerminal(t *testing.T) {
	dir := approveRuntime(t)
	s := startSession(t, "0abc")
	term := newTerminal(t, []string{"PATH=" + os.Getenv("PATH"), "XDG_RUNTIME_DIR=" + dir, "NO_COLOR=1"},
		"sh", "-c", `"$0" approve; code=$?; stty -a; exit $code`, crewgateBin)
	term.waitFor(`waiting for requests`)

	first := s.ask(t, deleteRequest("1", "crm.example.com"))
	term.waitFor(`DELETE https://crm\.example\.com/v1/contacts/42`)
	term.waitFor(`1 waiting · times out in`)
	screen := term.screen()
	for _, want := range []string{"rule confirm-deletes: deletes data in the CRM", "as alice <alice@example.com>", `"note": "\x1b[31mred"}`, "[a] allow once",
		"[s] allow DELETE crm.example.com:443/v1/contacts/42 for the session (rule confirm-deletes)"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the prompt lacks %q:\n%s", want, screen)
		}
	}
	term.tmux("send-keys", "a")
	if v := awaitVerdict(t, first); !v.Allow || v.How != approval.HowOnce || !strings.HasPrefix(v.By, "approve:") {
		t.Errorf("key a: %+v, want allowed once by approve", v)
	}
	term.waitFor(`allowed once DELETE https://crm\.example\.com`)

	second := s.ask(t, deleteRequest("2", "crm.example.com"))
	third := s.ask(t, deleteRequest("3", "crm.example.com"))
	term.waitFor(`2 waiting`)
	term.tmux("send-keys", "Escape")
	if v := awaitVerdict(t, second); v.Allow || v.How != approval.HowDenied {
		t.Errorf("Esc: %+v, want denied", v)
	}
	term.waitFor(`1 waiting`)
	term.tmux("send-keys", "s")
	if v := awaitVerdict(t, third); !v.Allow || v.How != approval.HowSession {
		t.Errorf("key s: %+v, want allowed for the session", v)
	}
	term.tmux("send-keys", "q")
	term.waitFor(`EXIT=0`)
	screen = term.screen()
	if !strings.Contains(screen, "keeps running") {
		t.Errorf("screen after q:\n%s", screen)
	}
	if !regexp.MustCompile(`(^|\s)icanon`).MatchString(screen) || !regexp.MustCompile(`(^|\s)echo\s`).MatchString(screen) {
		t.Errorf("the terminal was not restored (stty -a):\n%s", screen)
	}
}

// TestApproveRefusedInsideTheCrew: a session that places approve inside the
// crew refuses it; approve says so, with what to do, and exits 1.
func TestApproveRefusedInsideTheCrew(t *testing.T) {
	approveRuntime(t)
	s := startSessionWith(t, "0abc", approval.ServeOptions{InCrew: func(int) (bool, error) { return true, nil }})
	ch := s.ask(t, deleteRequest("1", "crm.example.com"))
	var out, errOut bytes.Buffer
	code := cli.Main([]string{"approve", "0abc"}, strings.NewReader("s 1\n"), &out, &errOut)
	want := "crewgate: approve: session 0abc: permission denied: the crew cannot answer its own approval prompts; run `crewgate approve` from a terminal outside the crew\n" +
		"hint: open a terminal of your own (not one the crew started) and run 'crewgate approve' there\n"
	if code != 1 || errOut.String() != want || out.Len() != 0 {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant stderr:\n%s", code, out.String(), errOut.String(), want)
	}
	if p := s.q.Pending(); len(p) != 1 {
		t.Errorf("pending after the refused approve: %v", p)
	}
	s.end()
	if v := awaitVerdict(t, ch); v.Allow || v.How != approval.HowShutdown {
		t.Errorf("verdict %+v, want the shutdown deny", v)
	}
}
