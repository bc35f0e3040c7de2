package runner

import "golang.org/x/sys/unix"

// Undumpable makes crewgate's own process undumpable (PR_SET_DUMPABLE 0):
// its /proc files (environ, mem, maps, fd) become root's, and ptrace by
// its own uid is refused, so a crew running as the same user cannot read
// the secrets crewgate holds in memory or its environment (D-Bus address,
// CI credentials). It also means no core dump. A child's execve makes the
// child dumpable again, so the crew itself is not affected. main calls it
// before anything else runs.
func Undumpable() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
