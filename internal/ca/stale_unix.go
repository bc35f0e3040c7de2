//go:build unix

package ca

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// ownedByMe reports whether info is of a file this user owns: another
// user's bundle is never touched.
func ownedByMe(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// processAlive reports whether a process with this pid exists (EPERM: it
// does, as another user's).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
