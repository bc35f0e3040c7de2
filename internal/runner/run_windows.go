package runner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/windows"
)

// notifySignals keep crewgate alive through console events (Ctrl-C,
// Ctrl-Break; closing the console arrives as SIGTERM). Windows sends them to
// every process attached to the console, the child included, and offers no
// way to forward them, so none is forwarded.
var notifySignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

func shouldForward(os.Signal, bool) bool { return false }

// terminate kills at once: Windows has no SIGTERM to send.
func terminate(p *os.Process) error { return p.Kill() }

func exitCode(st *os.ProcessState) int { return st.ExitCode() }

func sysProcAttr() *syscall.SysProcAttr { return nil }

func lockThread() (unlock func()) { return func() {} }

func isPathName(name string) bool { return strings.ContainsAny(name, `:\/`) }

// findExecutable looks for p itself when it has an executable extension, else
// for p with each extension of PATHEXT.
func findExecutable(p string) (string, error) {
	exts := []string{".com", ".exe", ".bat", ".cmd"}
	if v := os.Getenv("PATHEXT"); v != "" {
		exts = nil
		for _, e := range strings.Split(strings.ToLower(v), ";") {
			if e != "" && e[0] == '.' {
				exts = append(exts, e)
			}
		}
	}
	cands := []string{}
	ext := strings.ToLower(filepath.Ext(p))
	for _, e := range exts {
		if ext == e {
			cands = append(cands, p)
			break
		}
	}
	if len(cands) == 0 {
		for _, e := range exts {
			cands = append(cands, p+e)
		}
	}
	for _, c := range cands {
		fi, err := os.Stat(c)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return "", fmt.Errorf("%w: %w", ErrNotExecutable, err)
		case fi.IsDir():
			return "", fmt.Errorf("%w: %s is a directory", ErrNotExecutable, c)
		}
		return c, nil
	}
	return "", ErrNotFound
}

// IsForeground reports whether f is a console. Windows delivers Ctrl-C to every
// process attached to the console, the child included.
func IsForeground(f *os.File) bool {
	var mode uint32
	return windows.GetConsoleMode(windows.Handle(f.Fd()), &mode) == nil
}

func withTTY(*syscall.SysProcAttr, int) (*syscall.SysProcAttr, error) {
	return nil, errors.New("a TTY for the child is not supported on Windows")
}

func becomeSubreaper() error { return nil }

func reapOrphans(int) (stop func()) { return func() {} }
