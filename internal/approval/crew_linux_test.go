package approval_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crewgate/crewgate/internal/approval"
)

// waitPPIDVar makes the dial helper wait until its parent is that pid: an
// orphan reparented to the serving helper.
const waitPPIDVar = "APPROVAL_TEST_WAIT_PPID"

func init() {
	helpers["serve"] = serveMain
	helpers["dial"] = dialMain
}

// dialMain is a client of session s1: it prints "accepted" when it may
// watch, or why not.
func dialMain() int {
	if want, _ := strconv.Atoi(os.Getenv(waitPPIDVar)); want > 0 {
		deadline := time.Now().Add(5 * time.Second)
		for os.Getppid() != want {
			if time.Now().After(deadline) {
				fmt.Println("never reparented")
				return 1
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	c, err := approval.Dial(approval.SocketPath("s1"))
	if errors.Is(err, approval.ErrRefused) {
		fmt.Println("refused:", err)
		return 0
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer c.Close()
	if _, err := c.Watch(context.Background()); err != nil {
		fmt.Println("watch:", err)
		return 1
	}
	fmt.Println("accepted")
	return 0
}

// serveMain plays crewgate: a subreaper serving session s1 with the default
// check, and three clients of its own tree (a child, a grandchild and a
// double-forked orphan). It prints what each client heard, then "ready",
// and serves until stdin ends.
func serveMain() int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Println("subreaper:", err)
		return 1
	}
	q := approval.NewQueue(approval.Options{Headless: true})
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := approval.SocketPath("s1")
	errc := make(chan error, 1)
	go func() {
		errc <- approval.Serve(ctx, path, q, approval.ServeOptions{OnRefusedPeer: func(p approval.RefusedPeer) {
			fmt.Printf("hook: refused pid %d: %s\n", p.PID, p.Reason)
		}})
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Lstat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("no socket")
			return 1
		}
	}
	self, _ := os.Executable()
	dir, _ := os.MkdirTemp("", "cgdial")
	defer os.RemoveAll(dir)
	env := append(os.Environ(), helperVar+"=dial")
	run := func(name string, cmd *exec.Cmd) {
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		if len(out) > 0 {
			fmt.Printf("%s: %s", name, out)
		}
		if err != nil {
			fmt.Printf("%s: %v\n", name, err)
		}
	}
	run("child", exec.Command(self))
	run("grandchild", exec.Command("sh", "-c", `"$0"; true`, self))
	orphanOut := filepath.Join(dir, "orphan")
	orphan := exec.Command("sh", "-c", `"$0" >"$1" 2>&1 </dev/null &`, self, orphanOut)
	orphan.Env = []string{waitPPIDVar + "=" + strconv.Itoa(os.Getpid())}
	run("orphan's shell", orphan)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(orphanOut); strings.HasSuffix(string(b), "\n") {
			fmt.Printf("orphan: %s", b)
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("orphan: no answer")
			break
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	cancel()
	if err := <-errc; err != nil {
		fmt.Println("Serve:", err)
		return 1
	}
	return 0
}

// TestServeRefusesTheCrewsProcessTree runs a real session in a helper
// process that is its clients' subreaper: the client it started, its
// grandchild and an orphan reparented to it are all refused; this test
// process, the session's parent and so outside its tree, is served.
func TestServeRefusesTheCrewsProcessTree(t *testing.T) {
	runtimeDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperVar+"=serve")
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("serve helper: %v", err)
		}
	}()
	heard := map[string]string{}
	var hooks []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		line := sc.Text()
		if strings.HasPrefix(line, "hook: ") {
			hooks = append(hooks, line)
			continue
		}
		name, said, _ := strings.Cut(line, ": ")
		heard[name] += said
	}
	for _, name := range []string{"child", "grandchild", "orphan"} {
		if want := "refused: " + crewRefusal; heard[name] != want {
			t.Errorf("%s heard %q, want %q", name, heard[name], want)
		}
	}
	if len(hooks) != 3 || !strings.HasSuffix(hooks[0], ": runs inside the crew") {
		t.Errorf("the session's hook heard %q, want three refusals of the crew; clients heard %q", hooks, heard)
	}

	c := dial(t, approval.SocketPath("s1"))
	if _, err := c.Watch(t.Context()); err != nil {
		t.Errorf("a client outside the tree: Watch: %v", err)
	}
}
