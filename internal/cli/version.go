package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X ...cli.version=... -X ...cli.commit=... -X ...cli.date=...".
var (
	version = ""
	commit  = ""
	date    = ""
)

// versionString is the version, commit and date from the build's ldflags,
// or from the module's build information for a plain 'go install'.
func versionString() string {
	v, c, d := version, commit, date
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "none" {
		c = ""
	}
	if strings.HasPrefix(d, "0001-") {
		d = ""
	}
	if len(c) > 12 {
		c = c[:12]
	}
	s := "crewgate " + v
	if c != "" {
		s += " (commit " + c
		if d != "" {
			s += ", " + d
		}
		s += ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print crewgate's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(f.out, versionString())
			return err
		},
	}
}
