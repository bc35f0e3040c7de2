// Package cli holds crewgate's cobra commands: one file per command, each an
// options struct, a constructor that wires flags, and a run function. Startup,
// error printing and the exit-code mapping live here, in one place.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
)

// Exit codes, as DESIGN.md fixes them.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitNotLoggedIn = 3
	exitConfig      = 4
	exitInterrupted = 130
)

// Main runs crewgate with args and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f := newFactory(stdin, stdout, stderr)
	root := newRootCmd(f)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = &exitError{code: exitInterrupted, err: errors.New("interrupted")}
	}
	return report(stderr, err)
}

// exitError carries an exit code and a one-line hint with an error.
type exitError struct {
	code int
	what string // what failed, e.g. "login"; "" to print the cause alone
	err  error
	hint string
}

func (e *exitError) Error() string {
	if e.what == "" {
		return e.err.Error()
	}
	return e.what + ": " + e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...), hint: "see 'crewgate --help'"}
}

// report prints err once, as "crewgate: <what failed>: <cause>" plus a line
// saying what to do, and returns the exit code.
func report(w io.Writer, err error) int {
	var silent silentExit
	if errors.As(err, &silent) {
		return int(silent)
	}
	code, hint := exitFailure, ""
	var ee *exitError
	var ce *config.Error
	switch {
	case errors.As(err, &ee):
		code, hint = ee.code, ee.hint
	case errors.As(err, &ce):
		code, hint = exitConfig, "fix the value, then check it with 'crewgate status'"
	case errors.Is(err, identity.ErrNotLoggedIn):
		code, hint = exitNotLoggedIn, "run 'crewgate login'"
	case isCobraUsage(err):
		code, hint = exitUsage, "see 'crewgate --help'"
	}
	if hint == "" {
		var h interface{ Hint() string }
		if errors.As(err, &h) {
			hint = h.Hint()
		}
	}
	if errors.As(err, &ce) && code == exitFailure {
		code = exitConfig
	}
	fmt.Fprintf(w, "crewgate: %s\n", err)
	if hint != "" {
		fmt.Fprintf(w, "hint: %s\n", hint)
	}
	return code
}

// isCobraUsage recognises the errors cobra returns for an unknown command or
// bad arguments, which it does not type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument", "flag needs an argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
