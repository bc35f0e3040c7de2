//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package keyring

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	dbus "github.com/godbus/dbus/v5"
)

const noBusHint = "no D-Bus session bus: run crewgate in a desktop session (or under dbus-run-session) with gnome-keyring started and DBUS_SESSION_BUS_ADDRESS set, or use --insecure-storage to keep secrets in a plaintext file"

// checkBus fails when godbus would find no session bus address and so fall
// back to autolaunching a dbus-daemon (and, through D-Bus activation, a
// gnome-keyring-daemon) that outlive crewgate.
//
// godbus looks at DBUS_SESSION_BUS_ADDRESS, then /run/user/<uid>/bus and
// /run/user/<uid>/dbus-session. It does not look at $XDG_RUNTIME_DIR/bus, so
// when only that socket exists checkBus points DBUS_SESSION_BUS_ADDRESS at it
// (godbus itself sets that variable the same way for what it discovers).
func checkBus() error {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return nil
	}
	uid := strconv.Itoa(os.Getuid())
	for _, p := range []string{"/run/user/" + uid + "/bus", "/run/user/" + uid + "/dbus-session"} {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		p := filepath.Join(dir, "bus")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return os.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+dbus.EscapeBusAddressValue(p))
		}
	}
	return errors.New("no session bus (DBUS_SESSION_BUS_ADDRESS is empty and there is no $XDG_RUNTIME_DIR/bus)")
}

// classify maps a backend failure to ErrTimeout or ErrUnavailable and a hint.
func classify(err error) (hint string, kind error) {
	const (
		startHint  = "start gnome-keyring (or another Secret Service) in your session and check DBUS_SESSION_BUS_ADDRESS, or use --insecure-storage to keep secrets in a plaintext file"
		unlockHint = "unlock the login keyring (log in to the desktop, or run gnome-keyring-daemon --unlock), or use --insecure-storage to keep secrets in a plaintext file"
	)
	name := ""
	var de dbus.Error
	var dp *dbus.Error
	switch {
	case errors.As(err, &de):
		name = de.Name
	case errors.As(err, &dp):
		name = dp.Name
	}
	switch {
	case name == "org.freedesktop.DBus.Error.TimedOut", name == "org.freedesktop.DBus.Error.Timeout",
		name == "org.freedesktop.DBus.Error.NoReply":
		return "the Secret Service did not answer: " + startHint, ErrTimeout
	case name == "org.freedesktop.Secret.Error.IsLocked",
		strings.Contains(err.Error(), "failed to unlock"):
		return unlockHint, ErrUnavailable
	case name == "org.freedesktop.DBus.Error.UnknownObject", name == "org.freedesktop.Secret.Error.NoSuchObject":
		return "the keyring has no login collection: " + unlockHint, ErrUnavailable
	}
	return startHint, ErrUnavailable
}
