//go:build unix

package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of the driver and signal-recording helpers.
const (
	dirVar        = "RUNNER_TEST_DIR"        // where ready, got and stop live
	childVar      = "RUNNER_TEST_CHILD"      // the driver's child: sh, go or sleep
	foregroundVar = "RUNNER_TEST_FOREGROUND" // "1": the driver runs the child with Foreground
)

// childExit is what the signal-recording children exit with once told to stop.
const childExit = 7

func init() {
	helpers["driver"] = driverMain
	helpers["sigchild"] = sigChildMain
}

// shChild traps the four forwarded signals and appends each one's name to
// $dir/got, announces itself in $dir/ready (with its pid) and exits 7 once
// $dir/stop exists.
const shChild = `d="$RUNNER_TEST_DIR"
for s in INT TERM HUP QUIT; do trap "echo $s >> '$d/got'" $s; done
echo $$ > "$d/ready.tmp" && mv "$d/ready.tmp" "$d/ready"
while [ ! -e "$d/stop" ]; do sleep 0.02; done
exit 7`

// daemonsChild leaves two daemons that ignore TERM, HUP and INT, one
// started with setsid and one double-forked, records their pids, and
// sleeps.
const daemonsChild = `d="$RUNNER_TEST_DIR"
setsid sh -c 'trap "" TERM HUP INT; echo $$ > "$RUNNER_TEST_DIR/d1"; exec sleep 300' </dev/null >/dev/null 2>&1 &
(sh -c 'trap "" TERM HUP INT; echo $$ > "$RUNNER_TEST_DIR/d2"; exec sleep 301' </dev/null >/dev/null 2>&1 &)
while [ ! -s "$d/d1" ] || [ ! -s "$d/d2" ]; do sleep 0.02; done
echo $$ > "$d/ready.tmp" && mv "$d/ready.tmp" "$d/ready"
exec sleep 30`

// driverMain plays crewgate: it runs a child with Run and exits with the code
// Run returns.
func driverMain() int {
	dir := os.Getenv(dirVar)
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 99
	}
	var args []string
	switch os.Getenv(childVar) {
	case "sh":
		args = []string{"/bin/sh", "-c", shChild}
	case "go":
		args = []string{self}
	case "sleep":
		args = []string{"/bin/sh", "-c", `echo $$ > "$RUNNER_TEST_DIR/ready.tmp" && mv "$RUNNER_TEST_DIR/ready.tmp" "$RUNNER_TEST_DIR/ready" && exec sleep 30`}
	case "daemons", "daemons-ignoring-int":
		script := daemonsChild
		if os.Getenv(childVar) == "daemons-ignoring-int" {
			script = "trap '' INT\n" + script
		}
		args = []string{"/bin/sh", "-c", script}
	}
	env := append(os.Environ(), helperVar+"=sigchild", dirVar+"="+dir)
	code, err := Run(context.Background(), Cmd{Args: args, Env: env, Foreground: os.Getenv(foregroundVar) == "1"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		return 99
	}
	return code
}

// sigChildMain is shChild in Go: every signal is recorded as it arrives,
// none is merged with another in a shell's pending flag.
func sigChildMain() int {
	dir := os.Getenv(dirVar)
	c := make(chan os.Signal, 16)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	got, err := os.OpenFile(filepath.Join(dir, "got"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return 98
	}
	if err := os.WriteFile(filepath.Join(dir, "ready.tmp"), fmt.Appendf(nil, "%d\n", os.Getpid()), 0o600); err != nil {
		return 98
	}
	if err := os.Rename(filepath.Join(dir, "ready.tmp"), filepath.Join(dir, "ready")); err != nil {
		return 98
	}
	tick := time.NewTicker(10 * time.Millisecond)
	for {
		select {
		case s := <-c:
			name := strings.TrimPrefix(strings.ToUpper(s.String()), "SIG")
			switch s {
			case syscall.SIGINT:
				name = "INT"
			case syscall.SIGTERM:
				name = "TERM"
			case syscall.SIGHUP:
				name = "HUP"
			case syscall.SIGQUIT:
				name = "QUIT"
			}
			fmt.Fprintln(got, name)
		case <-tick.C:
			if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
				return childExit
			}
		}
	}
}

// waitFor polls until cond holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

type driver struct {
	cmd    *exec.Cmd
	dir    string
	stderr *os.File
	done   chan struct{}
}

// startDriver re-executes the test binary as a driver in a process group of
// its own (the child joins it, as it would join crewgate's), and waits until
// the child is ready.
func startDriver(t *testing.T, child string, foreground bool) *driver {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{dir: t.TempDir(), done: make(chan struct{})}
	fg := "0"
	if foreground {
		fg = "1"
	}
	d.cmd = exec.Command(self)
	d.cmd.Env = append(os.Environ(), helperVar+"=driver", dirVar+"="+d.dir, childVar+"="+child, foregroundVar+"="+fg)
	// A file, not a pipe: a child that outlives the driver would hold a pipe
	// open and keep Wait from returning.
	if d.stderr, err = os.Create(filepath.Join(d.dir, "driver.stderr")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.stderr.Close() })
	d.cmd.Stderr = d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	})
	waitFor(t, "the child to be ready", 5*time.Second, func() bool { return exists(filepath.Join(d.dir, "ready")) })
	return d
}

func (d *driver) got(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, "got"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func (d *driver) stderrText() string {
	b, _ := os.ReadFile(d.stderr.Name())
	return string(b)
}

func (d *driver) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop tells the child to exit and returns the driver's exit code.
func (d *driver) stop(t *testing.T) int {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, "stop"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		t.Fatal("driver did not exit after its child was told to stop")
	}
	if s := d.stderrText(); s != "" {
		t.Logf("driver stderr: %s", s)
	}
	return d.cmd.ProcessState.ExitCode()
}

// settle is how long a test waits for a duplicate signal that should not come.
const settle = 300 * time.Millisecond

func TestSignals(t *testing.T) {
	tests := []struct {
		name       string
		child      string
		foreground bool
		sig        syscall.Signal
		group      bool   // signal the whole process group, as a terminal does
		want       string // what the child records
	}{
		{"TERM forwarded", "sh", false, syscall.SIGTERM, false, "TERM\n"},
		{"HUP forwarded", "sh", false, syscall.SIGHUP, false, "HUP\n"},
		{"INT forwarded without a terminal", "go", false, syscall.SIGINT, false, "INT\n"},
		{"QUIT forwarded without a terminal", "go", false, syscall.SIGQUIT, false, "QUIT\n"},
		{"TERM forwarded in the foreground", "go", true, syscall.SIGTERM, false, "TERM\n"},
		{"terminal Ctrl-C reaches the child once", "go", true, syscall.SIGINT, true, "INT\n"},
		{"terminal Ctrl-C reaches a shell child once", "sh", true, syscall.SIGINT, true, "INT\n"},
		{`terminal Ctrl-\ reaches the child once`, "go", true, syscall.SIGQUIT, true, "QUIT\n"},
		{"foreground INT to crewgate alone is not forwarded", "go", true, syscall.SIGINT, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDriver(t, tt.child, tt.foreground)
			pid := d.cmd.Process.Pid
			if tt.group {
				pid = -pid
			}
			if err := syscall.Kill(pid, tt.sig); err != nil {
				t.Fatal(err)
			}
			if tt.want != "" {
				waitFor(t, "the child to record the signal", 5*time.Second, func() bool { return d.got(t) != "" })
			}
			time.Sleep(settle)
			if got := d.got(t); got != tt.want {
				t.Errorf("child received %q, want %q", got, tt.want)
			}
			if d.exited() {
				t.Fatalf("driver exited before its child: %v; stderr: %s", d.cmd.ProcessState, d.stderrText())
			}
			if code := d.stop(t); code != childExit {
				t.Errorf("driver exited %d, want the child's %d", code, childExit)
			}
		})
	}
}

func shEnv() []string { return []string{"PATH=" + os.Getenv("PATH")} }

func TestExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"exit 42", 42},
		{"kill -KILL $$", 137},
		{"kill -TERM $$", 143},
		{"kill -INT $$", 130},
	}
	for _, tt := range tests {
		code, err := Run(context.Background(), Cmd{Args: []string{"sh", "-c", tt.script}, Env: shEnv()})
		if err != nil || code != tt.want {
			t.Errorf("%q: Run = %d, %v; want %d, nil", tt.script, code, err, tt.want)
		}
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\nexit 5\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("runs", 0o755)
	write("noexec", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	pathEnv := []string{"PATH=" + dir}
	tests := []struct {
		name     string
		args     []string
		env      []string
		cwd      string
		wantCode int
		wantErr  error
		wantMsg  string
	}{
		{"not in PATH", []string{"crewgate-no-such-command"}, shEnv(), "", 127, ErrNotFound, "crewgate-no-such-command: command not found in the child's PATH"},
		{"missing path", []string{filepath.Join(dir, "missing")}, nil, "", 127, ErrNotFound, "command not found: no such file"},
		{"missing relative path", []string{"./missing"}, nil, dir, 127, ErrNotFound, "./missing: command not found"},
		{"no execute bit", []string{filepath.Join(dir, "noexec")}, nil, "", 126, ErrNotExecutable, "lacks execute permission"},
		{"no execute bit in PATH", []string{"noexec"}, pathEnv, "", 126, ErrNotExecutable, "lacks execute permission"},
		{"directory", []string{filepath.Join(dir, "adir")}, nil, "", 126, ErrNotExecutable, "is a directory"},
		{"relative PATH entry", []string{"runs"}, []string{"PATH=."}, dir, 126, exec.ErrDot, "relative PATH entry"},
		{"no command", nil, nil, "", 127, ErrNotFound, "no command given"},
		// Found in the child's PATH, which is not crewgate's own.
		{"child's PATH", []string{"runs"}, pathEnv, "", 5, nil, ""},
		{"relative path against Dir", []string{"./runs"}, nil, dir, 5, nil, ""},
	}
	for _, tt := range tests {
		code, err := Run(context.Background(), Cmd{Args: tt.args, Env: tt.env, Dir: tt.cwd})
		if code != tt.wantCode {
			t.Errorf("%s: code %d, want %d (err %v)", tt.name, code, tt.wantCode, err)
		}
		if tt.wantErr == nil {
			if err != nil {
				t.Errorf("%s: unexpected error %v", tt.name, err)
			}
			continue
		}
		var se *StartError
		if !errors.Is(err, tt.wantErr) || !errors.As(err, &se) || se.Code != code {
			t.Errorf("%s: err = %v (%T), want a *StartError wrapping %v", tt.name, err, err, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: error %q does not say %q", tt.name, err, tt.wantMsg)
		}
	}
}

// TestChildEnvironment runs real children, a shell and a Go program, and
// checks what they see: placeholders, never the real values.
func TestChildEnvironment(t *testing.T) {
	t.Parallel()
	const real = "sk-real-0123456789abcdef"
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := append(os.Environ(),
		"OPENAI_API_KEY="+real, "openai_api_key="+real, "COPY_OF_KEY="+real,
		"CREWGATE_PROFILE=work", "SSH_AUTH_SOCK=/tmp/agent.sock",
	)
	env := BuildEnv(base, EnvParams{
		ProxyURL: testProxy, CABundle: testBundle, Session: testSession,
		Placeholders: map[string]string{"OPENAI_API_KEY": "crewgate-placeholder-openai"},
		Secrets:      []string{real},
	})
	children := map[string][]string{
		"sh": {"sh", "-c", "env"},
		"go": {self},
	}
	for name, args := range children {
		var out, errOut bytes.Buffer
		code, err := Run(context.Background(), Cmd{
			Args: args, Env: append(env, helperVar+"=printenv"),
			Stdout: &out, Stderr: &errOut,
		})
		if err != nil || code != 0 {
			t.Fatalf("%s: Run = %d, %v; stderr: %s", name, code, err, errOut.String())
		}
		seen := out.String()
		if strings.Contains(seen, real) || strings.Contains(errOut.String(), real) {
			t.Errorf("%s child saw the real value", name)
		}
		for _, want := range []string{
			"OPENAI_API_KEY=crewgate-placeholder-openai", "HTTPS_PROXY=" + testProxy, "https_proxy=" + testProxy,
			"SSL_CERT_FILE=" + testBundle, "CREWGATE_SESSION=" + testSession,
		} {
			if !strings.Contains(seen, want+"\n") {
				t.Errorf("%s child lacks %s", name, want)
			}
		}
		for _, never := range []string{"CREWGATE_PROFILE", "SSH_AUTH_SOCK", "COPY_OF_KEY", "openai_api_key"} {
			if strings.Contains(seen, never) {
				t.Errorf("%s child sees %s", name, never)
			}
		}
	}

	// A nil Env is an empty environment, not crewgate's own.
	envPath, err := exec.LookPath("env")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code, err := Run(context.Background(), Cmd{Args: []string{envPath}, Stdout: &out}); err != nil || code != 0 || out.Len() != 0 {
		t.Errorf("nil Env: Run = %d, %v; the child saw %q, want nothing", code, err, out.String())
	}
}

func TestContextCancel(t *testing.T) {
	t.Parallel()
	t.Run("TERM then KILL after grace", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		// The shell records TERM and carries on, so only SIGKILL ends it.
		script := `trap 'echo TERM >> "$0.got"' TERM; : > "$0.ready"; while :; do sleep 0.02; done`
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			waitFor(t, "the child", 5*time.Second, func() bool { return exists(filepath.Join(dir, "c.ready")) })
			cancel()
		}()
		const grace = 400 * time.Millisecond
		start := time.Now()
		code, err := Run(ctx, Cmd{Args: []string{"sh", "-c", script, filepath.Join(dir, "c")}, Env: shEnv(), Grace: grace})
		elapsed := time.Since(start)
		if err != nil || code != 137 {
			t.Fatalf("Run = %d, %v; want 137 (SIGKILL)", code, err)
		}
		got, _ := os.ReadFile(filepath.Join(dir, "c.got"))
		if string(got) != "TERM\n" {
			t.Errorf("child recorded %q before the kill, want one TERM", got)
		}
		if elapsed < grace {
			t.Errorf("killed after %v, before the %v grace period", elapsed, grace)
		}
	})
	t.Run("TERM ends a well-behaved child", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		code, err := Run(ctx, Cmd{Args: []string{"sh", "-c", "exec sleep 30"}, Env: shEnv()})
		if err != nil || code != 143 {
			t.Fatalf("Run = %d, %v; want 143 (SIGTERM)", code, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v: the child was not sent SIGTERM at once", d)
		}
	})
}
