//go:build !unix

// Command tuidemo needs a Unix pseudo-terminal.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "tuidemo: needs a Unix pseudo-terminal")
	os.Exit(1)
}
