//go:build !unix

package approval

import "os"

// checkDir creates dir when asked; ownership and modes are left to the
// platform (the user's temp dir is private on Windows).
func checkDir(dir string, create bool) error {
	if create {
		return os.MkdirAll(dir, 0o700)
	}
	_, err := os.Stat(dir)
	return err
}
