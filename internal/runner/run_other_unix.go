//go:build unix && !linux

package runner

import "syscall"

// sysProcAttr keeps the child in crewgate's process group. Without Pdeathsig
// a child outlives a crewgate that is killed outright.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func lockThread() (unlock func()) { return func() {} }

// becomeSubreaper does nothing: only Linux has subreapers, so here a process
// of the crew whose parent exited leaves crewgate's tree.
func becomeSubreaper() error { return nil }

func reapOrphans(int) (stop func()) { return func() {} }
