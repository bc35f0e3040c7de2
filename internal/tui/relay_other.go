//go:build !unix

package tui

import (
	"errors"
	"os"
)

// Relay is the terminal of one run; see the Unix implementation.
type Relay struct{}

// Start is not supported on this platform: crewgate runs the crew on the
// terminal as it is.
func Start(opts Options) (*Relay, error) {
	return nil, errors.New("relaying a terminal is not supported on this platform")
}

// TTY returns nil.
func (r *Relay) TTY() *os.File { return nil }

// Close does nothing.
func (r *Relay) Close() error { return nil }
