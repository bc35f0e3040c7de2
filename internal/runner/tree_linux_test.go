package runner

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// outsideVar carries the pid of a process outside the tree helper's tree.
const outsideVar = "RUNNER_TEST_OUTSIDE"

func init() {
	helpers["tree"] = treeMain
	helpers["reaper"] = reaperMain
}

// treeMain plays crewgate as the crew's subreaper and asks IsDescendant about
// real processes: a child, a grandchild, an orphan of a double fork, and
// processes outside its tree. It prints one line per mismatch and exits 1
// when there was one.
func treeMain() int {
	if err := becomeSubreaper(); err != nil {
		fmt.Println("subreaper:", err)
		return 1
	}
	self := os.Getpid()
	var started []int
	defer func() {
		for _, pid := range started {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	// pidOf runs a shell that prints the pid of what it started.
	pidOf := func(cmd *exec.Cmd) int {
		out, err := cmd.StdoutPipe()
		if err != nil || cmd.Start() != nil {
			return -1
		}
		started = append(started, cmd.Process.Pid)
		line, _ := bufio.NewReader(out).ReadString('\n')
		pid, _ := strconv.Atoi(strings.TrimSpace(line))
		started = append(started, pid)
		return pid
	}

	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		fmt.Println(err)
		return 1
	}
	started = append(started, child.Process.Pid)
	grandchild := pidOf(exec.Command("sh", "-c", "sleep 30 & echo $!; wait"))
	// The shell exits at once; its sleep is orphaned.
	orphanSh := exec.Command("sh", "-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo $!")
	orphan := pidOf(orphanSh)
	orphanSh.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, err := readStat(orphan); err == nil && st.ppid == self {
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("the orphan was not reparented to the subreaper")
			return 1
		}
		time.Sleep(5 * time.Millisecond)
	}
	outside, _ := strconv.Atoi(os.Getenv(outsideVar))

	bad := 0
	for _, tt := range []struct {
		name string
		pid  int
		want bool
	}{
		{"child", child.Process.Pid, true},
		{"grandchild", grandchild, true},
		{"double-forked orphan", orphan, true},
		{"crewgate itself", self, false},
		{"crewgate's parent", os.Getppid(), false},
		{"a sibling of crewgate", outside, false},
		{"init", 1, false},
	} {
		got, err := IsDescendant(tt.pid, self)
		if err != nil || got != tt.want {
			fmt.Printf("%s (pid %d): IsDescendant = %v, %v; want %v\n", tt.name, tt.pid, got, err, tt.want)
			bad++
		}
	}
	gone := exec.Command("true")
	gone.Run()
	if _, err := IsDescendant(gone.Process.Pid, self); err == nil {
		fmt.Println("a process that is gone: no error")
		bad++
	}
	if bad > 0 {
		return 1
	}
	return 0
}

// TestIsDescendantRealProcesses: the walk up /proc finds the crew's child,
// grandchild and reparented orphan, and nothing outside. The subreaper is
// the helper process's, not the test binary's.
func TestIsDescendantRealProcesses(t *testing.T) {
	t.Parallel()
	outside := exec.Command("sleep", "30")
	if err := outside.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { outside.Process.Kill(); outside.Wait() }()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperVar+"=tree", outsideVar+"="+strconv.Itoa(outside.Process.Pid))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("tree helper: %v\n%s", err, out)
	}
}

func TestReadStatCommWithParens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A command name with a space and parentheses: "a) (b".
	name := dir + "/a) (b"
	if err := os.Symlink("/bin/sleep", name); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	st, err := readStat(cmd.Process.Pid)
	if err != nil || st.ppid != os.Getpid() || st.start == 0 {
		t.Errorf("readStat = %+v, %v; want ppid %d", st, err, os.Getpid())
	}
	if b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm"); !strings.Contains(string(b), ")") {
		t.Logf("comm is %q; the parenthesis did not survive", b)
	}
	if ok, err := IsDescendant(cmd.Process.Pid, os.Getpid()); !ok || err != nil {
		t.Errorf("IsDescendant = %v, %v; want true", ok, err)
	}
}

// reaperMain runs a crew whose double-forked orphans exit while it runs,
// with a child of crewgate's own started meanwhile: the orphans are reaped,
// and the other child's Wait still gets its exit status.
func reaperMain() int {
	other := make(chan string, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		c := exec.Command("sh", "-c", "exit 5")
		if err := c.Start(); err != nil {
			other <- err.Error()
			return
		}
		// A zombie while the reaper looks (its own exit woke it), waited
		// for only later.
		time.Sleep(800 * time.Millisecond)
		err := c.Wait()
		if c.ProcessState == nil || c.ProcessState.ExitCode() != 5 {
			other <- fmt.Sprintf("crewgate's other child: %v, want exit status 5", err)
			return
		}
		other <- ""
	}()
	script := `for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.1 &); done; sleep 1.5; exit 3`
	code, err := Run(context.Background(), Cmd{Args: []string{"sh", "-c", script}, Env: shEnv()})
	if err != nil || code != 3 {
		fmt.Printf("Run = %d, %v; want 3\n", code, err)
		return 1
	}
	if msg := <-other; msg != "" {
		fmt.Println(msg)
		return 1
	}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var zombies []string
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if st, err := readStat(pid); err == nil && st.ppid == self {
				zombies = append(zombies, fmt.Sprintf("%d (%c)", pid, st.state))
			}
		}
	}
	if len(zombies) > 0 {
		fmt.Println("children left behind:", zombies)
		return 1
	}
	return 0
}

// TestSubreaperReapsOrphans: as the crew's subreaper crewgate inherits its
// orphans; they must not pile up as zombies, and reaping them must not
// steal the exit status of a child crewgate started itself.
func TestSubreaperReapsOrphans(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperVar+"=reaper")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("reaper helper: %v\n%s", err, out)
	}
}

// TestTreeDiesWithCrewgate: daemons of the crew that ignore TERM, HUP and
// INT (setsid, double fork) are gone within 10 s of crewgate's TERM, HUP or
// headless INT; a second INT kills at once.
func TestTreeDiesWithCrewgate(t *testing.T) {
	for _, tt := range []struct {
		name  string
		child string
		sigs  []syscall.Signal
		limit time.Duration
	}{
		{"TERM", "daemons", []syscall.Signal{syscall.SIGTERM}, 10 * time.Second},
		{"HUP", "daemons", []syscall.Signal{syscall.SIGHUP}, 10 * time.Second},
		{"headless INT", "daemons", []syscall.Signal{syscall.SIGINT}, 10 * time.Second},
		{"second INT", "daemons-ignoring-int", []syscall.Signal{syscall.SIGINT, syscall.SIGINT}, 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDriver(t, tt.child, false)
			var daemons []int
			for _, f := range []string{"d1", "d2"} {
				b, err := os.ReadFile(filepath.Join(d.dir, f))
				if err != nil {
					t.Fatal(err)
				}
				pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					t.Fatal(err)
				}
				daemons = append(daemons, pid)
			}
			t.Cleanup(func() {
				for _, pid := range daemons {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			began := time.Now()
			for _, s := range tt.sigs {
				if err := syscall.Kill(d.cmd.Process.Pid, s); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			alive := func(pid int) bool {
				st, err := readStat(pid)
				return err == nil && st.state != 'Z'
			}
			waitFor(t, "the daemons to die", tt.limit, func() bool { return !alive(daemons[0]) && !alive(daemons[1]) })
			waitFor(t, "crewgate to exit", tt.limit, d.exited)
			t.Logf("all gone after %v", time.Since(began).Round(10*time.Millisecond))
		})
	}
}

// BenchmarkCrewTree is what the end of every run costs when the crew left
// nothing behind: walked through the kernel's child lists, and with the
// scan of all of /proc that is the fallback.
func BenchmarkCrewTree(b *testing.B) {
	b.Run("child-lists", func(b *testing.B) {
		for b.Loop() {
			crewTree(1<<22, true)
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			crewTreeScan(1<<22, true)
		}
	})
}

// TestCrewTreeWalksAgree: both ways of walking find the same tree.
func TestCrewTreeWalksAgree(t *testing.T) {
	if !haveChildLists() {
		t.Skip("SKIP: this kernel keeps no child lists")
	}
	cmd := exec.Command("sh", "-c", "sleep 5 & sleep 5 & (sleep 5 &) ; wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(200 * time.Millisecond)
	a, b := crewTree(cmd.Process.Pid, false), crewTreeScan(cmd.Process.Pid, false)
	slices.Sort(a)
	slices.Sort(b)
	if len(a) < 2 || !slices.Equal(a, b) {
		t.Errorf("child lists found %v, the scan %v", a, b)
	}
	for _, pid := range a {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
