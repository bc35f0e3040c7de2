package tui

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// fakeSource is an approval queue held in memory.
type fakeSource struct {
	mu      sync.Mutex
	pending []Prompt
	changed chan struct{}
	decided []string
}

func newFakeSource() *fakeSource { return &fakeSource{changed: make(chan struct{})} }

func (s *fakeSource) Pending() []Prompt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pending)
}

func (s *fakeSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *fakeSource) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *fakeSource) add(p Prompt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, p)
	s.notify()
}

func (s *fakeSource) Decide(id, choice string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decided = append(s.decided, id+"="+choice)
	s.pending = slices.DeleteFunc(s.pending, func(p Prompt) bool { return p.ID == id })
	s.notify()
	return nil
}

func (s *fakeSource) decisions() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.decided, ",")
}

// userTerminal is the user's terminal: the test holds its master side and
// records everything drawn on it.
type userTerminal struct {
	t      *testing.T
	master *os.File
	slave  *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
}

func newUserTerminal(t *testing.T, rows, cols uint16) *userTerminal {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(master, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	u := &userTerminal{t: t, master: master, slave: slave, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			u.mu.Lock()
			u.out.Write(buf[:n])
			u.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		slave.Close()
		master.Close()
		<-u.done
	})
	return u
}

func (u *userTerminal) mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.Len()
}

func (u *userTerminal) since(mark int) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.String()[mark:]
}

func (u *userTerminal) typ(s string) {
	u.t.Helper()
	if _, err := u.master.Write([]byte(s)); err != nil {
		u.t.Fatal(err)
	}
}

// waitFor waits until want was drawn after mark.
func (u *userTerminal) waitFor(mark int, want string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(u.since(mark), want) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func (u *userTerminal) mustSee(mark int, want string) {
	u.t.Helper()
	if !u.waitFor(mark, want, 10*time.Second) {
		u.t.Fatalf("the terminal never showed %q; it showed:\n%q", want, u.since(mark))
	}
}

func termios(t *testing.T, f *os.File) *unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio
}

func TestRelay(t *testing.T) {
	u := newUserTerminal(t, 24, 80)
	before := termios(t, u.slave)
	if before.Lflag&(unix.ICANON|unix.ECHO) != unix.ICANON|unix.ECHO {
		t.Fatalf("the test terminal does not start cooked: lflag %#x", before.Lflag)
	}
	src := newFakeSource()
	r, err := Start(Options{
		Source: src,
		Status: func() Status { return Status{Session: "01JRELAYTEST", Requests: 7} },
		In:     u.slave, Out: u.slave,
		KeyDelay: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := termios(t, u.slave); got.Lflag&(unix.ICANON|unix.ECHO) != 0 {
		t.Errorf("the terminal is not raw while relaying: lflag %#x", got.Lflag)
	}

	sh := exec.Command("sh")
	sh.Env = []string{"PATH=" + os.Getenv("PATH"), "PS1=$ ", "TERM=xterm", "HOME=" + t.TempDir()}
	sh.Stdin, sh.Stdout, sh.Stderr = r.TTY(), r.TTY(), r.TTY()
	sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sh.Wait() }()
	defer func() {
		if sh.ProcessState == nil {
			sh.Process.Kill()
		}
	}()

	u.mustSee(0, "session 01JRELAYTEST")
	u.mustSee(0, "requests 7")
	u.mustSee(0, "\x1b[1;23r") // the scroll region keeps the last row

	t.Run("output and keys reach the child", func(t *testing.T) {
		m := u.mark()
		u.typ("echo $((6*7))\r")
		u.mustSee(m, "42")
	})

	t.Run("window size", func(t *testing.T) {
		m := u.mark()
		u.typ("stty size\r")
		u.mustSee(m, "23 80")
		if err := pty.Setsize(u.master, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			m := u.mark()
			u.typ("stty size\r")
			if u.waitFor(m, "29 100", 500*time.Millisecond) {
				break
			}
			if i == 10 {
				t.Fatalf("the child never saw 29 rows, 100 columns:\n%q", u.since(m))
			}
		}
	})

	t.Run("a prompt takes its key from the child", func(t *testing.T) {
		m := u.mark()
		u.typ("read x; echo \"got[$x]\"\r")
		time.Sleep(200 * time.Millisecond) // let sh reach read
		src.add(Prompt{ID: "p1", Method: "DELETE", URL: "https://crm.example.com/v1/x", Rule: "confirm-deletes",
			Preview: "\x1b]0;owned\x07body", Deadline: time.Now().Add(time.Minute)})
		u.mustSee(m, "approve this request?")
		u.mustSee(m, "DELETE https://crm.example.com/v1/x")
		if s := u.since(m); strings.Contains(s, "\x1b]0;") {
			t.Errorf("the preview's escape reached the terminal: %q", s)
		}
		u.typ("a")
		deadline := time.Now().Add(5 * time.Second)
		for src.decisions() != "p1=once" {
			if time.Now().After(deadline) {
				t.Fatalf("decisions %q, want p1=once", src.decisions())
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // the prompt closes
		u.typ("zz\r")
		u.mustSee(m, "got[zz]")
		if s := u.since(m); strings.Contains(s, "got[azz]") {
			t.Errorf("the prompt's key reached the child")
		}
	})

	t.Run("Ctrl-C interrupts the child", func(t *testing.T) {
		m := u.mark()
		u.typ("sleep 5; echo $((1+1))slept\r")
		time.Sleep(300 * time.Millisecond)
		u.typ("\x03")
		u.typ("echo $((40+2))after\r")
		u.mustSee(m, "42after")
		if strings.Contains(u.since(m), "2slept") {
			t.Errorf("Ctrl-C did not interrupt sleep")
		}
	})

	m := u.mark()
	u.typ("exit\r")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("sh did not exit")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	u.mustSee(m, "\x1b7\x1b[r\x1b8") // the scroll region is reset
	after := termios(t, u.slave)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("terminal mode not restored: lflag %#x iflag %#x oflag %#x, want %#x %#x %#x",
			after.Lflag, after.Iflag, after.Oflag, before.Lflag, before.Iflag, before.Oflag)
	}
}

// While a prompt is drawn the child's output waits: the relay stops reading
// the pseudo-terminal and resumes after the decision.
func TestRelayPausesOutputDuringPrompt(t *testing.T) {
	u := newUserTerminal(t, 24, 80)
	src := newFakeSource()
	r, err := Start(Options{Source: src, In: u.slave, Out: u.slave, KeyDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src.add(Prompt{ID: "p1", Method: "GET", URL: "https://x.example/"})
	u.mustSee(0, "approve this request?")

	child := exec.Command("sh", "-c", "echo tick-one; sleep 0.2; echo tick-two")
	child.Stdin, child.Stdout, child.Stderr = r.TTY(), r.TTY(), r.TTY()
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := u.since(0); strings.Contains(s, "tick") {
		t.Fatalf("the child's output was drawn under the prompt: %q", s)
	}
	m := u.mark()
	u.typ("\x1b")
	u.mustSee(m, "tick-two")
	if got := src.decisions(); got != "p1=deny" {
		t.Errorf("Esc decided %q", got)
	}
	if !strings.Contains(u.since(m), "tick-one") {
		t.Errorf("output lost: %q", u.since(m))
	}
}
