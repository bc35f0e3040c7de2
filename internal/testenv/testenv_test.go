package testenv

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestRequireKeyringChild is run by TestRequireKeyring in a child process.
func TestRequireKeyringChild(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "1" {
		t.Skip("run by TestRequireKeyring")
	}
	RequireKeyring(t)
	t.Log("keyring present")
}

func TestRequireKeyring(t *testing.T) {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		t.Skip("no session bus to take away")
	}
	uid := strconv.Itoa(os.Getuid())
	for _, p := range []string{"/run/user/" + uid + "/bus", "/run/user/" + uid + "/dbus-session"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists: cannot take the session bus away", p)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"CI="}, "--- SKIP"},
		{[]string{"CI=true"}, "--- FAIL"},
		{[]string{"CI=true", "DBUS_SESSION_BUS_ADDRESS=unix:path=/somewhere"}, "--- PASS"},
	} {
		cmd := exec.Command(self, "-test.run=^TestRequireKeyringChild$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "GORACE=atexit_sleep_ms=0", "DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR="+t.TempDir(), "HOME="+t.TempDir())
		cmd.Env = append(cmd.Env, tc.env...)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("env %v: want %s, got:\n%s", tc.env, tc.want, out)
		}
		if tc.want != "--- PASS" && !strings.Contains(string(out), "scripts/test.sh") {
			t.Errorf("env %v: message does not point at scripts/test.sh:\n%s", tc.env, out)
		}
	}
}
