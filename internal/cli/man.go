package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manDate is the date printed in the man pages. It is fixed so that the
// committed pages are reproducible; bump it when the pages change much.
var manDate = time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)

func newManCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write crewgate's man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := writeManPages(cmd.Root(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(f.errOut, "Wrote man pages to %s\n", args[0])
			return nil
		},
	}
}

func writeManPages(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true
	return doc.GenManTree(root, &doc.GenManHeader{
		Title:   "CREWGATE",
		Section: "1",
		Source:  "crewgate",
		Manual:  "crewgate manual",
		Date:    &manDate,
	}, dir)
}
