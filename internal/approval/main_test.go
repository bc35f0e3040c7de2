package approval_test

import (
	"fmt"
	"os"
	"testing"
)

// helperVar switches the test binary into one of the helper programs when
// it is re-executed as a child.
const helperVar = "APPROVAL_TEST_HELPER"

// helpers are the programs the re-executed test binary can be.
var helpers = map[string]func() int{}

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperVar); mode != "" {
		h, ok := helpers[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown %s %q\n", helperVar, mode)
			os.Exit(100)
		}
		os.Exit(h())
	}
	os.Exit(m.Run())
}
