package approval_test

import (
	"testing"

	"github.com/crewgate/crewgate/internal/testenv"
)

// helperVar switches the test binary into one of the helper programs when
// it is re-executed as a child.
const helperVar = "APPROVAL_TEST_HELPER"

// helpers are the programs the re-executed test binary can be.
var helpers = map[string]func() int{}

func TestMain(m *testing.M) { testenv.Main(m, helperVar, helpers) }
