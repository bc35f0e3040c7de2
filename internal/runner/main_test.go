package runner

import (
	"fmt"
	"os"
	"testing"

	"github.com/crewgate/crewgate/internal/testenv"
)

// helperVar switches the test binary into one of the helper programs below
// when it is re-executed as a child. It is not a CREWGATE_* name, since
// BuildEnv would remove that.
const helperVar = "RUNNER_TEST_HELPER"

// helpers are the programs the re-executed test binary can be.
var helpers = map[string]func() int{
	"printenv": func() int {
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
		return 0
	},
}

func TestMain(m *testing.M) { testenv.Main(m, helperVar, helpers) }
