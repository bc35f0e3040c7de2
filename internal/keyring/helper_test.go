package keyring

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a child process instead of running
// tests. godbus caches the session bus connection for the whole process, so
// anything that changes the bus environment runs in a child.
const helperEnv = "CREWGATE_KEYRING_TEST_HELPER"

// helperValue is what the children store; it must never show up in an error.
const helperValue = "hunter2-must-not-leak"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "keyring":
		helperKeyring()
	case "file":
		helperFile()
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
	os.Exit(0)
}

// outcome is what a child reports about one Store call.
type outcome struct {
	Op          string        `json:"op"`
	Elapsed     time.Duration `json:"elapsed"`
	Err         string        `json:"err"`
	Hint        string        `json:"hint"`
	Timeout     bool          `json:"timeout"`
	Unavailable bool          `json:"unavailable"`
	NotFound    bool          `json:"not_found"`
	Typed       bool          `json:"typed"`
}

func describe(op string, start time.Time, err error) outcome {
	o := outcome{Op: op, Elapsed: time.Since(start)}
	if err == nil {
		return o
	}
	o.Err = err.Error()
	o.Timeout = errors.Is(err, ErrTimeout)
	o.Unavailable = errors.Is(err, ErrUnavailable)
	o.NotFound = errors.Is(err, ErrNotFound)
	var ke *Error
	if errors.As(err, &ke) {
		o.Typed = true
		o.Hint = ke.Hint()
	}
	return o
}

// helperKeyring runs Set, Get and Delete against the OS keyring as the
// environment has it (CREWGATE_KEYRING_TIMEOUT included) and prints one JSON
// outcome per call on stdout.
func helperKeyring() {
	s, err := New(Options{Service: "crewgate-test-helper"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	start := time.Now()
	enc.Encode(describe("set", start, s.Set("acct", helperValue)))
	start = time.Now()
	_, err = s.Get("acct")
	enc.Encode(describe("get", start, err))
	start = time.Now()
	enc.Encode(describe("delete", start, s.Delete("acct")))
}

// helperFile sets keys <prefix>-0 .. <prefix>-<n-1> in the file store.
func helperFile() {
	s := NewFile(os.Getenv("HELPER_PATH"))
	prefix := os.Getenv("HELPER_PREFIX")
	for i := range 20 {
		if err := s.Set(fmt.Sprintf("%s-%d", prefix, i), "v"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// runHelper runs this test binary as a helper child, through wrap (e.g. a
// dbus-run-session command line) when given, and decodes its outcomes.
func runHelper(t *testing.T, kind string, env []string, wrap ...string) []outcome {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := newHelperCmd(self, kind, env...)
	if len(wrap) > 0 {
		cmd = exec.Command(wrap[0], append(wrap[1:], cmd.Args...)...)
		cmd.Env = newHelperCmd(self, kind, env...).Env
	}
	// Files, not pipes: a D-Bus activated service inherits the bus daemon's
	// stdio and may outlive the child, and Wait would wait for it.
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	out, _ := os.ReadFile(stdout.Name())
	errOut, _ := os.ReadFile(stderr.Name())
	if err != nil {
		t.Fatalf("helper %s: %v\nstderr:\n%s", kind, err, errOut)
	}
	var res []outcome
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var o outcome
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("helper output %q: %v", out, err)
		}
		res = append(res, o)
	}
	if len(res) == 0 {
		t.Fatalf("helper printed nothing; stderr:\n%s", errOut)
	}
	return res
}

// newHelperCmd returns a command running the test binary as helper kind,
// with env added to (and overriding) this process's environment.
func newHelperCmd(self, kind string, env ...string) *exec.Cmd {
	cmd := exec.Command(self, "-test.run=^$")
	// GORACE: a -race binary otherwise sleeps a second at exit.
	cmd.Env = append(os.Environ(), helperEnv+"="+kind, "GORACE=atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}
