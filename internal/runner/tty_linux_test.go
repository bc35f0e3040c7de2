package runner

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the two sides of a new pseudo-terminal.
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptmx, pts
}

// lockedBuffer collects what the child writes to its terminal.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTTY runs the child on a pseudo-terminal, as the TUI does: the child's
// stdin is a terminal and Ctrl-C typed into it interrupts the child.
func TestTTY(t *testing.T) {
	t.Parallel()
	ptmx, pts := openPTY(t)
	var out lockedBuffer
	go func() { _, _ = ptmx.WriteTo(&out) }() // ends with EIO once no one holds the replica

	result := make(chan [2]any, 1)
	go func() {
		code, err := Run(context.Background(), Cmd{
			Args: []string{"sh", "-c", `[ -t 0 ] && echo on-a-tty; echo ready; exec sleep 5`},
			Env:  shEnv(),
			TTY:  pts,
		})
		result <- [2]any{code, err}
	}()
	waitFor(t, "the child on its terminal", 5*time.Second, func() bool { return strings.Contains(out.String(), "ready") })
	if !strings.Contains(out.String(), "on-a-tty") {
		t.Errorf("child's stdin is not a terminal; it printed %q", out.String())
	}
	if _, err := ptmx.Write([]byte{0x03}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	select {
	case r := <-result:
		if r[0] != 130 || r[1] != nil {
			t.Errorf("Run = %v, %v; want 130 (SIGINT from the terminal)", r[0], r[1])
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Ctrl-C on the child's terminal did not interrupt it")
	}
}
