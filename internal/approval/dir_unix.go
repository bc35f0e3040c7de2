//go:build unix

package approval

import (
	"fmt"
	"os"
	"syscall"
)

// checkDir makes sure dir is a real directory (not a symlink) owned by the
// current user and closed to everyone else. With create it makes the
// directory (0700) when missing and tightens its mode; without, a directory
// that others can use is refused.
func checkDir(dir string, create bool) error {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d, not to you", dir, st.Uid)
	}
	if fi.Mode().Perm() != 0o700 {
		if !create {
			return fmt.Errorf("%s has mode %#o; it must be 0700", dir, fi.Mode().Perm())
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	return nil
}
