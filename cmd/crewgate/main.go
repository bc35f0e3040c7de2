// Command crewgate is an identity-aware enforcement point between AI agents
// and the services they call. See README.md.
package main

import (
	"os"

	"github.com/crewgate/crewgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
