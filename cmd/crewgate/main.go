// Command crewgate is an identity-aware enforcement point between AI agents
// and the services they call. See README.md.
package main

import (
	"fmt"
	"os"

	"github.com/crewgate/crewgate/internal/cli"
	"github.com/crewgate/crewgate/internal/runner"
)

func main() {
	// First: a crew running as the same user must not read crewgate's
	// memory or environment through /proc or ptrace.
	if err := runner.Undumpable(); err != nil {
		fmt.Fprintln(os.Stderr, "crewgate: warning: could not make its memory unreadable to other processes of this user:", err)
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
