package runner

import (
	"runtime"
	"syscall"
)

// sysProcAttr asks the kernel to SIGKILL the child when crewgate dies, so a
// crew never runs on without its proxy (or holding the terminal) after
// crewgate was killed. The child stays in crewgate's process group so that
// the terminal's Ctrl-C and its reads and writes behave as for any foreground
// job. Pdeathsig is cleared when the child execs a set-user-ID program.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// lockThread pins the calling goroutine to its OS thread until unlock.
//
// Pdeathsig fires when the thread that forked the child exits, not when the
// process does. The Go runtime ends a thread when a goroutine exits while
// locked to it, so an unpinned Start could fork from a thread that some other
// goroutine later locks and takes down, killing the child for no reason.
// Holding the lock from Start until Wait returns reserves the thread for Run:
// no other goroutine can run on it, let alone lock it, and Run unlocks rather
// than exits while locked, so the thread lives at least as long as the child.
func lockThread() (unlock func()) {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
