package tui

import (
	"os"
	"time"
)

// Source is the approval queue as the TUI sees it.
type Source interface {
	// Pending lists the requests that wait, oldest first.
	Pending() []Prompt
	// Changed returns a channel closed at the next change; call again for
	// the following one.
	Changed() <-chan struct{}
	// Decide answers one request; choice is "once", "session" or "deny".
	Decide(id string, choice string) error
}

// Options configure a Relay.
type Options struct {
	Source Source
	Status func() Status // polled a few times a second
	In     *os.File      // crewgate's stdin (a terminal)
	Out    *os.File      // the terminal to draw on (crewgate's stderr or stdout, both terminals)
	Color  bool

	// KeyDelay is how long a new prompt ignores `a`, `s` and `d`; zero means
	// DefaultKeyDelay, a negative value none.
	KeyDelay time.Duration
}

// pollInterval is how often the status and the terminal's size are read.
const pollInterval = 250 * time.Millisecond

// paintDeadline bounds how long a repaint waits for the crew to finish an
// escape sequence or restore its saved cursor: a prompt must show even when
// the crew stops mid-sequence.
const paintDeadline = 300 * time.Millisecond

// drainTimeout bounds how long Close waits for what the crew printed last.
const drainTimeout = time.Second
