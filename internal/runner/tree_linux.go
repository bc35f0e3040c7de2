package runner

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procStat is what crewgate reads from /proc/<pid>/stat.
type procStat struct {
	state byte
	ppid  int
	start uint64 // clock ticks after boot
}

// readStat reads /proc/<pid>/stat. The command name, in parentheses, may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("process %d: unreadable stat", pid)
	}
	// After ") ": state(3) ppid(4) ... starttime(22).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("process %d: unreadable stat", pid)
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("process %d: unreadable stat", pid)
	}
	return procStat{state: f[0][0], ppid: ppid, start: start}, nil
}

// IsDescendant reports whether process pid is a descendant of ancestor: a
// child, a grandchild, and so on (a process is not its own descendant). It
// walks up the parent chain in /proc. Run makes crewgate the crew's
// subreaper, so a descendant of the crew whose parent exited is still a
// descendant of crewgate.
//
// An error means the answer is unknown (the process is gone, or a parent
// exited and its pid was reused during the walk); callers deciding on
// trust must treat it as "yes".
func IsDescendant(pid, ancestor int) (bool, error) {
	cur, err := readStat(pid)
	if err != nil {
		return false, err
	}
	for range maxDepth {
		if cur.ppid == ancestor {
			return true, nil
		}
		if cur.ppid <= 0 { // the top of this pid namespace
			return false, nil
		}
		parent, err := readStat(cur.ppid)
		if err != nil {
			return false, fmt.Errorf("parent %d: %w", cur.ppid, err)
		}
		// A parent cannot have started after its child: this pid now names
		// another process, the parent having exited while we looked.
		if parent.start > cur.start {
			return false, fmt.Errorf("process %d changed during the walk", cur.ppid)
		}
		cur = parent
	}
	return false, fmt.Errorf("process %d: parent chain longer than %d", pid, maxDepth)
}

// becomeSubreaper makes crewgate the subreaper of its descendants: when a
// process of the crew's tree exits, its children are reparented to crewgate
// instead of to init. Without it a double fork would put a process of the
// crew outside crewgate's tree, where the control socket could not tell it
// from the user's own `crewgate approve`.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// reapOrphans reaps, until the returned stop is called, the orphans that
// become crewgate's children as its subreaper and then exit, so that a long
// session does not pile up zombies. It leaves alone every child that crewgate
// started itself (the crew, and any other exec.Cmd), whose Wait must see the
// exit status: Go holds a pidfd for each of those. Where the runtime does not
// use pidfds, nothing tells the two kinds apart, and nothing is reaped.
func reapOrphans(crew int) (stop func()) {
	if !pidfdPids()[crew] {
		return func() {}
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-sigc:
				reapZombies()
			case <-done:
				return
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigc)
			close(done)
			wg.Wait()
		})
	}
}

// reapZombies waits for each exited child of crewgate that Go does not
// track.
func reapZombies() {
	self := os.Getpid()
	var zombies []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.ppid == self && st.state == 'Z' {
			zombies = append(zombies, pid)
		}
	}
	if len(zombies) == 0 {
		return
	}
	// Taken after the zombies: a child Go started holds its pidfd from
	// before it could exit until after Go reaped it.
	held := pidfdPids()
	for _, pid := range zombies {
		if !held[pid] {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

// pidfdPids returns the pids of the processes crewgate holds a pidfd for.
func pidfdPids() map[int]bool {
	held := map[int]bool{}
	entries, _ := os.ReadDir("/proc/self/fdinfo")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			if v, ok := bytes.CutPrefix(line, []byte("Pid:")); ok {
				if pid, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil && pid > 0 {
					held[pid] = true
				}
				break
			}
		}
	}
	return held
}

// crewTree returns the live processes of the crew's tree other than the
// crew itself: its descendants, and, when orphans can be told from
// crewgate's own children (see reapOrphans), crewgate's children it did not
// start, which are the crew's orphans reparented to crewgate as their
// subreaper, with their descendants. A setsid or double-forked daemon of
// the crew is among them. It walks down from the crew and crewgate through
// the kernel's lists of children, so its cost is the tree's size, not the
// system's: at the end of every run it usually reads a few small files.
func crewTree(crew int, orphans bool) []int {
	if !haveChildLists() {
		return crewTreeScan(crew, orphans)
	}
	queue := childrenOf(crew)
	if orphans {
		var started map[int]bool
		for _, c := range childrenOf(os.Getpid()) {
			if c == crew {
				continue
			}
			if started == nil {
				started = pidfdPids() // only when crewgate has another child
			}
			if !started[c] {
				queue = append(queue, c)
			}
		}
	}
	return walk(queue, func(pid int) []int { return childrenOf(pid) })
}

// walk returns the live processes below and including roots, breadth
// first, where children lists each process's children.
func walk(roots []int, children func(int) []int) []int {
	self := os.Getpid()
	seen := map[int]bool{}
	var out []int
	for queue := roots; len(queue) > 0; queue = queue[1:] {
		pid := queue[0]
		if seen[pid] || pid == self {
			continue
		}
		seen[pid] = true
		if st, err := readStat(pid); err != nil || st.state == 'Z' {
			continue
		}
		out = append(out, pid)
		queue = append(queue, children(pid)...)
	}
	return out
}

// haveChildLists reports whether the kernel lists each task's children
// (/proc/<pid>/task/<tid>/children, CONFIG_PROC_CHILDREN).
var haveChildLists = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/children")
	return err == nil
})

// childrenOf returns the children of every thread of pid.
func childrenOf(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + "/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// crewTreeScan is crewTree where the kernel keeps no child lists: the
// parent of every process, from one pass over /proc.
func crewTreeScan(crew int, orphans bool) []int {
	self := os.Getpid()
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	queue := append([]int(nil), children[crew]...)
	if orphans {
		started := pidfdPids()
		for _, c := range children[self] {
			if c != crew && !started[c] {
				queue = append(queue, c)
			}
		}
	}
	return walk(queue, func(pid int) []int { return children[pid] })
}

// tree is the crew's process tree as Run tracks it.
type tree struct {
	crew    int
	orphans bool // crewgate's children can be told from its orphans
}

func newTree(crew int) tree { return tree{crew: crew, orphans: pidfdPids()[crew]} }

// signal sends s to every process of the tree but the crew.
func (t tree) signal(s syscall.Signal) {
	for _, pid := range crewTree(t.crew, t.orphans) {
		_ = unix.Kill(pid, s)
	}
}

// end is the tree's end once the crew has exited: what is still alive
// gets SIGTERM, and SIGKILL after grace.
func (t tree) end(grace time.Duration) {
	if len(crewTree(t.crew, t.orphans)) == 0 {
		return
	}
	t.signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if len(crewTree(t.crew, t.orphans)) == 0 {
			return
		}
	}
	t.signal(syscall.SIGKILL)
}
