// Package testenv holds what tests share: checks about the machine they run
// on, and encoders for the bodies they send.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// RequireKeyring stops a test that needs the real OS keyring when there is
// none: on Linux and the BSDs, when no D-Bus session bus is reachable. With
// CI=true it fails the test, since CI must run these tests; otherwise it
// skips, pointing at scripts/test.sh, which runs the tests inside a private
// session bus with an unlocked gnome-keyring.
func RequireKeyring(t testing.TB) {
	t.Helper()
	if sessionBus() {
		return
	}
	const msg = "no D-Bus session bus for the Secret Service keyring: run the tests with scripts/test.sh (dbus-run-session with an unlocked gnome-keyring)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// sessionBus reports whether a session bus address can be found the way
// internal/keyring finds one (without autolaunch).
func sessionBus() bool {
	switch runtime.GOOS {
	case "darwin", "windows":
		return true // no D-Bus; the platform keyring is always there
	}
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return true
	}
	uid := strconv.Itoa(os.Getuid())
	paths := []string{"/run/user/" + uid + "/bus", "/run/user/" + uid + "/dbus-session"}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		paths = append(paths, filepath.Join(dir, "bus"))
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Main is a TestMain that can also be one of helpers: tests re-execute
// their own binary with env set to a helper's name to run a real child
// process (a crew, a grandchild, an orphan) without building another one.
func Main(m *testing.M, env string, helpers map[string]func() int) {
	if mode := os.Getenv(env); mode != "" {
		h, ok := helpers[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown %s %q\n", env, mode)
			os.Exit(100)
		}
		os.Exit(h())
	}
	os.Exit(m.Run())
}
