//go:build !linux && !darwin

package runner

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// IsDescendant cannot walk the process tree here; it always answers with an
// error wrapping errors.ErrUnsupported, which callers deciding on trust treat
// as "yes".
func IsDescendant(pid, ancestor int) (bool, error) {
	return false, fmt.Errorf("telling whether process %d runs inside the crew: %w", pid, errors.ErrUnsupported)
}

// tree cannot be walked here beyond the crew itself: the crew gets its
// signals, and Pdeathsig or the system handles the rest.
type tree struct{}

func newTree(int) tree             { return tree{} }
func (tree) signal(syscall.Signal) {}
func (tree) end(time.Duration)     {}
