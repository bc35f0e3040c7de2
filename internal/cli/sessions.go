package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/session"
)

type sessionsOptions struct {
	f *factory

	json  bool
	har   string
	speed float64
	step  bool
}

func newSessionsCmd(f *factory) *cobra.Command {
	opts := &sessionsOptions{f: f}
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List, read, verify, export and replay recorded sessions",
		Long: `Every 'crewgate run' records its session in a hash-chained log: one JSON
line per event (session start, each request and crewgate's decision, approvals,
responses with their masking counts, tunnels, placeholder leaks, session end).

A session ID may be abbreviated to any unique prefix. Logs live in audit.dir,
by default the sessions directory under crewgate's state directory.`,
		Args: cobra.NoArgs,
	}
	withDir := func(run func(ctx context.Context, opts *sessionsOptions, dir string, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(nil)
			if err != nil {
				return err
			}
			return run(cmd.Context(), opts, sessionsDir(cfg), args)
		}
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List recorded sessions, oldest first",
		Long: `List recorded sessions, oldest first: id, start, duration, identity, requests,
denied, approved, masked, exit code and command. A session whose crewgate was
killed shows "killed" for its exit code.`,
		Example: `  crewgate sessions list
  crewgate sessions list --json | jq '.[] | select(.denied > 0) | .id'`,
		Args: cobra.NoArgs,
		RunE: withDir(sessionsListRun),
	}
	list.Flags().BoolVar(&opts.json, "json", false, "print a JSON array on stdout")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a session as a readable timeline",
		Args:  cobra.ExactArgs(1),
		RunE:  withDir(sessionsShowRun),
	}

	verify := &cobra.Command{
		Use:   "verify ID",
		Short: "Check that a session log was not edited: exit 0 when the chain holds, 1 otherwise",
		Long: `Check a session log's hash chain: every line's own hash, that it chains to the
line before it (the first to the session's random nonce), and that nothing
follows the session end. Exits 0 when the chain holds and 1 naming the first
bad line otherwise. A session whose crewgate was killed verifies up to its last
complete line and is reported as ended abruptly.`,
		Args: cobra.ExactArgs(1),
		RunE: withDir(sessionsVerifyRun),
	}

	export := &cobra.Command{
		Use:   "export ID --har FILE",
		Short: "Export a session as HAR 1.2 (browser dev tools and HTTP tools open it)",
		Long: `Export a session as HAR 1.2: one entry per request with its response, the
bodies as recorded (masked previews), and crewgate's decisions (upstream, rule,
decision, approval, masking counts, leak attempts) in "_crewgate" fields.
FILE "-" writes to stdout.`,
		Example: `  crewgate sessions export 0ab1 --har session.har`,
		Args:    cobra.ExactArgs(1),
		RunE:    withDir(sessionsExportRun),
	}
	export.Flags().StringVar(&opts.har, "har", "", "write HAR 1.2 to `FILE` (- for stdout)")

	replay := &cobra.Command{
		Use:   "replay ID",
		Short: "Step through a session in the terminal, at recorded pace or key by key",
		Long: `Replay a session event by event with the details of each request and
decision: at the recorded pace (--speed scales it; pauses longer than 5s are
shortened and said), or one event per key with --step (space or enter: next,
q: quit). Without a terminal, everything is printed at once.`,
		Example: `  crewgate sessions replay 0ab1 --speed 4
  crewgate sessions replay 0ab1 --step`,
		Args: cobra.ExactArgs(1),
		RunE: withDir(sessionsReplayRun),
	}
	replay.Flags().Float64Var(&opts.speed, "speed", 1, "replay `N` times faster than recorded")
	replay.Flags().BoolVar(&opts.step, "step", false, "advance one event per key press")

	cmd.AddCommand(list, show, verify, export, replay)
	return cmd
}

// sessionsDir is where session logs are kept.
func sessionsDir(cfg *config.Config) string { return session.SessionsDir(cfg) }

// findSession resolves an id or unique id prefix to its log file.
func findSession(dir, prefix string) (id, path string, err error) {
	if prefix == "" || strings.ContainsAny(prefix, `/\*?[`) {
		return "", "", usageErrorf("%q is not a session id", prefix)
	}
	exact := audit.Path(dir, prefix)
	if _, err := os.Stat(exact); err == nil {
		return prefix, exact, nil
	}
	matches, err := filepath.Glob(filepath.Join(dir, prefix+"*.jsonl"))
	if err != nil {
		return "", "", err
	}
	switch len(matches) {
	case 0:
		return "", "", &exitError{code: exitFailure, what: "sessions", err: fmt.Errorf("no session %q in %s", prefix, dir),
			hint: "see 'crewgate sessions list'"}
	case 1:
		return strings.TrimSuffix(filepath.Base(matches[0]), ".jsonl"), matches[0], nil
	}
	ids := make([]string, len(matches))
	for i, m := range matches {
		ids[i] = strings.TrimSuffix(filepath.Base(m), ".jsonl")
	}
	slices.Sort(ids)
	return "", "", &exitError{code: exitUsage, what: "sessions", err: fmt.Errorf("%q is ambiguous: %s", prefix, strings.Join(ids, ", ")),
		hint: "give more of the session id"}
}

func sessionsListRun(_ context.Context, opts *sessionsOptions, dir string, _ []string) error {
	f := opts.f
	list, err := audit.List(dir)
	if err != nil {
		return &exitError{code: exitFailure, what: "sessions list", err: err}
	}
	if opts.json {
		enc := json.NewEncoder(f.out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintf(f.errOut, "no sessions recorded in %s\n", dir)
		return nil
	}
	w := tabwriter.NewWriter(f.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTARTED\tDURATION\tIDENTITY\tREQUESTS\tDENIED\tAPPROVED\tMASKED\tEXIT\tCOMMAND")
	for _, s := range list {
		if s.Problem != "" {
			fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t(unreadable: %s)\n", s.ID, s.Problem)
			continue
		}
		dur, exit := "-", "killed"
		if s.DurationMS != nil {
			dur = (time.Duration(*s.DurationMS) * time.Millisecond).Round(time.Second).String()
		}
		if s.ExitCode != nil {
			exit = strconv.Itoa(*s.ExitCode)
		}
		who := s.Subject
		if s.Email != "" {
			who = s.Email
		}
		if who == "" {
			who = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", s.ID, s.Started.Local().Format("2006-01-02 15:04:05"), dur, who,
			s.Requests, s.Denied, s.Approved, s.Masked, exit, shorten(strings.Join(s.Command, " "), 60))
	}
	return w.Flush()
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// readSession finds and reads a session log.
func readSession(dir, prefix, what string) (string, *audit.Log, error) {
	_, path, err := findSession(dir, prefix)
	if err != nil {
		return "", nil, err
	}
	lg, err := audit.Read(path)
	if err != nil {
		return "", nil, &exitError{code: exitFailure, what: what, err: err, hint: "check it with 'crewgate sessions verify " + prefix + "'"}
	}
	return path, lg, nil
}

func sessionsShowRun(_ context.Context, opts *sessionsOptions, dir string, args []string) error {
	path, lg, err := readSession(dir, args[0], "sessions show")
	if err != nil {
		return err
	}
	res, err := audit.Verify(path)
	if err != nil {
		return &exitError{code: exitFailure, what: "sessions show", err: err}
	}
	if err := audit.WriteTimeline(opts.f.out, lg, &res); err != nil {
		return err
	}
	if !res.OK {
		fmt.Fprintf(opts.f.errOut, "warning: this session log was changed after it was written (line %d: %s)\n", res.BadLine, res.Reason)
	}
	return nil
}

func sessionsVerifyRun(_ context.Context, opts *sessionsOptions, dir string, args []string) error {
	id, path, err := findSession(dir, args[0])
	if err != nil {
		return err
	}
	res, err := audit.Verify(path)
	if err != nil {
		return &exitError{code: exitFailure, what: "sessions verify", err: err}
	}
	if !res.OK {
		return &exitError{code: exitFailure, what: "sessions verify " + id, err: fmt.Errorf("the chain breaks at line %d: %s", res.BadLine, res.Reason),
			hint: "the log was changed after crewgate wrote it; lines before " + strconv.Itoa(res.BadLine) + " still verify"}
	}
	fmt.Fprintf(opts.f.out, "session %s: %s\n", id, res)
	return nil
}

func sessionsExportRun(_ context.Context, opts *sessionsOptions, dir string, args []string) error {
	if opts.har == "" {
		return usageErrorf("sessions export needs --har FILE")
	}
	_, lg, err := readSession(dir, args[0], "sessions export")
	if err != nil {
		return err
	}
	if opts.har == "-" {
		return audit.WriteHAR(opts.f.out, lg, "")
	}
	// The masked bodies can still be sensitive: keep the file private.
	file, err := os.OpenFile(opts.har, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return &exitError{code: exitFailure, what: "sessions export", err: unwrapPathError(err)}
	}
	err = audit.WriteHAR(file, lg, "")
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &exitError{code: exitFailure, what: "sessions export: writing " + opts.har, err: err}
	}
	fmt.Fprintf(opts.f.errOut, "wrote %s (HAR 1.2, %d events)\n", opts.har, len(lg.Events))
	return nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func sessionsReplayRun(ctx context.Context, opts *sessionsOptions, dir string, args []string) error {
	f := opts.f
	if opts.speed <= 0 {
		return usageErrorf("--speed must be more than 0")
	}
	_, lg, err := readSession(dir, args[0], "sessions replay")
	if err != nil {
		return err
	}
	ropts := audit.ReplayOptions{Speed: opts.speed}
	in, inOK := f.in.(*os.File)
	switch {
	case !isTerminal(f.out):
		// Not a terminal: print everything at once.
		ropts.Step = func() (bool, error) { return true, nil }
	case opts.step && inOK && f.stdinTTY():
		ropts.Step = keyStepper(ctx, in, f.errOut)
	case opts.step:
		ropts.Step = func() (bool, error) { return true, nil }
	}
	err = audit.Replay(ctx, f.out, lg, ropts)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// keyStepper waits for one key per event in raw mode: space, enter, n or j
// go on; q, Esc or Ctrl-C stop.
func keyStepper(ctx context.Context, in *os.File, prompt io.Writer) func() (bool, error) {
	fd := int(in.Fd())
	return func() (bool, error) {
		fmt.Fprint(prompt, "-- space: next, q: quit --")
		defer fmt.Fprint(prompt, "\r\033[K")
		state, err := term.MakeRaw(fd)
		if err != nil {
			return false, err
		}
		defer term.Restore(fd, state)
		var b [1]byte
		for ctx.Err() == nil {
			if _, err := in.Read(b[:]); err != nil {
				return false, nil
			}
			switch b[0] {
			case ' ', '\r', '\n', 'n', 'j':
				return true, nil
			case 'q', 'Q', 0x1b, 0x03, 0x04:
				return false, nil
			}
		}
		return false, nil
	}
}
