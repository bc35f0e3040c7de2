// Package cli holds crewgate's cobra commands: one file per command, each an
// options struct, a constructor that wires flags, and a run function.
package cli

import "io"

// Main runs crewgate with args and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return 0
}
