//go:build !((dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd)

package keyring

import "runtime"

const noBusHint = ""

// checkBus is a Linux concern; other platforms have no session bus.
func checkBus() error { return nil }

// classify maps a backend failure to ErrUnavailable and a hint.
func classify(error) (hint string, kind error) {
	switch runtime.GOOS {
	case "darwin":
		return "unlock the login keychain (security unlock-keychain), or use --insecure-storage to keep secrets in a plaintext file", ErrUnavailable
	case "windows":
		return "check that Windows Credential Manager is available to your user, or use --insecure-storage to keep secrets in a plaintext file", ErrUnavailable
	}
	return "no usable OS keyring: use --insecure-storage to keep secrets in a plaintext file", ErrUnavailable
}
