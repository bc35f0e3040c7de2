package runner

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// IsDescendant reports whether process pid is a descendant of ancestor: a
// child, a grandchild, and so on (a process is not its own descendant). It
// walks up the parent chain with sysctl kern.proc.pid. macOS has no
// subreaper: a process of the crew whose parent exited is reparented to
// launchd and is no longer found in crewgate's tree.
//
// An error means the answer is unknown; callers deciding on trust must treat
// it as "yes".
func IsDescendant(pid, ancestor int) (bool, error) {
	cur, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return false, fmt.Errorf("process %d: %w", pid, err)
	}
	for range maxDepth {
		ppid := int(cur.Eproc.Ppid)
		if ppid == ancestor {
			return true, nil
		}
		if ppid <= 0 {
			return false, nil
		}
		parent, err := unix.SysctlKinfoProc("kern.proc.pid", ppid)
		if err != nil {
			return false, fmt.Errorf("parent %d: %w", ppid, err)
		}
		// A parent cannot have started after its child: the pid was reused.
		if parent.Proc.P_starttime.Nano() > cur.Proc.P_starttime.Nano() {
			return false, fmt.Errorf("process %d changed during the walk", ppid)
		}
		cur = parent
	}
	return false, fmt.Errorf("process %d: parent chain longer than %d", pid, maxDepth)
}

// tree cannot be walked here beyond the crew itself: the crew gets its
// signals, and Pdeathsig or the system handles the rest.
type tree struct{}

func newTree(int) tree             { return tree{} }
func (tree) signal(syscall.Signal) {}
func (tree) end(time.Duration)     {}
