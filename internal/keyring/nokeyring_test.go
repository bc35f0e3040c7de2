package keyring

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func requireLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("D-Bus Secret Service paths are Linux-only")
	}
}

// requireTool skips without the program, or fails under CI=true where
// scripts/test.sh installs it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not installed: run the tests with scripts/test.sh (apt packages dbus, gnome-keyring)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// checkOutcomes asserts that every call failed within limit with the
// sentinel want, a hint containing hintWord, and no trace of the value.
func checkOutcomes(t *testing.T, res []outcome, want string, limit time.Duration, hintWord string) {
	t.Helper()
	if len(res) != 3 {
		t.Fatalf("got %d outcomes, want set, get, delete: %+v", len(res), res)
	}
	for _, o := range res {
		t.Logf("%s after %v: %s (hint: %s)", o.Op, o.Elapsed, o.Err, o.Hint)
		ok := (want == "timeout" && o.Timeout && !o.Unavailable) || (want == "unavailable" && o.Unavailable && !o.Timeout)
		if !ok || !o.Typed || o.NotFound {
			t.Errorf("%s: %+v, want a typed %s error", o.Op, o, want)
		}
		if o.Elapsed > limit {
			t.Errorf("%s took %v, want under %v", o.Op, o.Elapsed, limit)
		}
		if !strings.Contains(o.Hint, hintWord) || !strings.Contains(o.Hint, "--insecure-storage") {
			t.Errorf("%s: hint %q lacks %q or --insecure-storage", o.Op, o.Hint, hintWord)
		}
		if strings.Contains(o.Err, helperValue) || strings.Contains(o.Hint, helperValue) {
			t.Errorf("%s: the value leaked into the error", o.Op)
		}
	}
}

// A bus address that points nowhere fails fast with ErrUnavailable.
func TestNoBusFailsFast(t *testing.T) {
	requireLinux(t)
	res := runHelper(t, "keyring", []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent", TimeoutEnv + "=10s"})
	checkOutcomes(t, res, "unavailable", time.Second, "DBUS_SESSION_BUS_ADDRESS")
}

// Without any session bus address the store refuses before godbus can
// autolaunch a dbus-daemon (brokers.md pitfall 7).
func TestNoBusDoesNotAutolaunch(t *testing.T) {
	requireLinux(t)
	for _, p := range []string{"/run/user/" + strconv.Itoa(os.Getuid()) + "/bus", "/run/user/" + strconv.Itoa(os.Getuid()) + "/dbus-session"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists: godbus would find a real session bus", p)
		}
	}
	// A PATH holding a dbus-launch that leaves a mark proves no autolaunch was tried.
	bin := t.TempDir()
	mark := filepath.Join(bin, "launched")
	script := "#!/bin/sh\ntouch " + mark + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "dbus-launch"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	res := runHelper(t, "keyring", []string{
		"DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR=" + t.TempDir(), "PATH=" + bin, TimeoutEnv + "=10s",
	})
	checkOutcomes(t, res, "unavailable", time.Second, "dbus-run-session")
	for _, o := range res {
		if !strings.Contains(o.Err, "no session bus") {
			t.Errorf("%s: %q, want the no-session-bus error", o.Op, o.Err)
		}
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("dbus-launch was run")
	}
}

// A Secret Service that D-Bus activates but that never answers (the hang
// from brokers.md pitfall 1): each call must end at our timeout, not after
// the bus's activation timeout.
func TestSecretServiceHangTimesOut(t *testing.T) {
	requireLinux(t)
	runSession := requireTool(t, "dbus-run-session")
	requireTool(t, "dbus-daemon")

	dir := t.TempDir()
	services := filepath.Join(dir, "services")
	if err := os.Mkdir(services, 0o700); err != nil {
		t.Fatal(err)
	}
	// The fake service records its pid so that the test can stop it: when
	// the session ends before the activation timeout, dbus-daemon leaves it.
	pidFile := filepath.Join(dir, "service.pid")
	fake := filepath.Join(dir, "fake-secrets")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec /bin/sleep 1000\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	service := "[D-BUS Service]\nName=org.freedesktop.secrets\nExec=" + fake + "\n"
	if err := os.WriteFile(filepath.Join(services, "org.freedesktop.secrets.service"), []byte(service), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=` + dir + `</listen>
  <auth>EXTERNAL</auth>
  <servicedir>` + services + `</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="service_start_timeout">8000</limit>
</busconfig>
`
	confPath := filepath.Join(dir, "session.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Logf("fake service never started: %v", err)
			return
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	})

	start := time.Now()
	res := runHelper(t, "keyring", []string{TimeoutEnv + "=300ms"}, runSession, "--config-file="+confPath, "--")
	t.Logf("whole child session took %v", time.Since(start))
	checkOutcomes(t, res, "timeout", 2*time.Second, TimeoutEnv)
	for _, o := range res {
		if o.Elapsed < 300*time.Millisecond {
			t.Errorf("%s returned after %v, before the timeout: the hang was not reproduced", o.Op, o.Elapsed)
		}
	}
	if _, err := os.Stat(pidFile); err != nil {
		t.Errorf("the fake Secret Service was never activated: %v", err)
	}
}
