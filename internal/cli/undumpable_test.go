package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCrewCannotReadCrewgatesMemory runs crewgate and a crew as one
// unprivileged user (the test drops to nobody when it runs as root): the
// crew cannot read crewgate's environment or open its memory through
// /proc, while it can read a process of its own, the control.
func TestCrewCannotReadCrewgatesMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	var prefix []string
	root := os.Getuid() == 0
	if root {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("SKIP: as root the test needs setpriv (util-linux) to run as an unprivileged user")
		}
		prefix = []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	}
	home, err := os.MkdirTemp("", "crewgate-undumpable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	bin := filepath.Join(home, "crewgate")
	b, err := os.ReadFile(crewgateBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if root {
		if err := os.Chown(home, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	script := `cat /proc/$PPID/environ >/dev/null 2>&1 && echo ENVIRON-READ
dd if=/proc/$PPID/mem count=0 2>/dev/null && echo MEM-OPENED
sleep 5 & kid=$!
cat /proc/$kid/environ >/dev/null && echo CONTROL-ENVIRON
dd if=/proc/$kid/mem count=0 2>/dev/null && echo CONTROL-MEM
kill $kid`
	argv := append(prefix, bin, "run", "--no-tui", "--", "sh", "-c", script)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "TMPDIR=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_STATE_HOME=" + filepath.Join(home, ".state")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"CONTROL-ENVIRON", "CONTROL-MEM"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the control failed (%s missing): the test cannot tell\n%s", want, out)
		}
	}
	for leak, what := range map[string]string{"ENVIRON-READ": "read the environment", "MEM-OPENED": "open the memory"} {
		if strings.Contains(string(out), leak) {
			t.Errorf("the crew could %s of crewgate:\n%s", what, out)
		}
	}
}
