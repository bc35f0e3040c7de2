//go:build unix

package runner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// notifySignals are the signals crewgate catches while the child runs.
var notifySignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// shouldForward reports whether s, caught by crewgate, must be passed on. A
// terminal sends SIGINT and SIGQUIT to its whole foreground process group,
// which the child shares with a foreground crewgate.
func shouldForward(s os.Signal, foreground bool) bool {
	return !foreground || s != syscall.SIGINT && s != syscall.SIGQUIT
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

func exitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

func isPathName(name string) bool { return strings.Contains(name, "/") }

// findExecutable checks that p is a file with an execute bit, as os/exec's
// LookPath does; execve has the final word.
func findExecutable(p string) (string, error) {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", ErrNotFound
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrNotExecutable, err)
	case fi.IsDir():
		return "", fmt.Errorf("%w: %s is a directory", ErrNotExecutable, p)
	case fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("%w: %s lacks execute permission", ErrNotExecutable, p)
	}
	return p, nil
}

// IsForeground reports whether f is a terminal whose foreground process group
// is crewgate's own, so that the keys the user types there (Ctrl-C, Ctrl-\)
// signal crewgate and a child sharing its process group alike. This is the
// condition for Cmd.Foreground.
func IsForeground(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	fg := false
	// Control rather than Fd: Fd would put the file into blocking mode.
	_ = rc.Control(func(fd uintptr) {
		pgrp, err := unix.IoctlGetInt(int(fd), unix.TIOCGPGRP)
		fg = err == nil && pgrp == unix.Getpgrp()
	})
	return fg
}

// withTTY makes the child the leader of a new session whose controlling
// terminal is its file descriptor fd.
func withTTY(attr *syscall.SysProcAttr, fd int) (*syscall.SysProcAttr, error) {
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Setsid, attr.Setctty, attr.Ctty = true, true, fd
	return attr, nil
}
