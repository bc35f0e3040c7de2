package cli

import (
	"bufio"
	"context"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/termtext"
)

type approveOptions struct {
	f       *factory
	session string
}

func newApproveCmd(f *factory) *cobra.Command {
	opts := &approveOptions{f: f}
	return &cobra.Command{
		Use:   "approve [SESSION]",
		Short: "Answer a running session's approval prompts from another terminal",
		Long: `Connect to a running 'crewgate run' session through its control socket and
answer the requests that wait for approval, oldest first. Without SESSION, the
only running session is used; when several run, name one.

On a terminal, single keys decide the request shown: a allows it once, s allows
it and later requests with the same rule, method, host, port and path for the
rest of the session (the prompt shows exactly which), d or Esc denies it, q
quits (the session keeps running). Without a terminal, the requests are printed
on stdout and stdin is read line by line: 'a ID', 's ID' or 'd ID' decide
request ID, 'q' quits.

approve keeps waiting for new requests until the session ends or you quit. The
socket lives in $XDG_RUNTIME_DIR/crewgate (or a private per-user directory in
the temp dir), so run approve as the same user, with the same XDG_RUNTIME_DIR.
Only a human can answer: the session refuses an approve started by the crew or
by any of its descendants, so run it from a terminal of your own.`,
		Example: `  crewgate run --no-tui -- python3 crew.py   # in one terminal
  crewgate approve                            # in another
  printf 'a 1\nq\n' | crewgate approve 0ab3c9d81k2q4e5f`,
		Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			sessions, _ := approval.Sessions()
			return sessions, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.session = args[0]
			}
			return approveRun(cmd.Context(), opts)
		},
	}
}

func approveRun(ctx context.Context, opts *approveOptions) error {
	f := opts.f
	session, err := pickSession(f, opts.session)
	if err != nil {
		return err
	}
	c, err := approval.Dial(approval.SocketPath(session))
	if errors.Is(err, approval.ErrRefused) {
		return &exitError{code: exitFailure, what: "approve: session " + session, err: err, hint: refusedHint}
	}
	if err != nil {
		return &exitError{code: exitFailure, what: "approve: connecting to session " + session, err: err,
			hint: "is its 'crewgate run' still going? 'crewgate approve' without SESSION finds the running ones"}
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch, err := c.Watch(ctx)
	if err != nil {
		e := &exitError{code: exitFailure, what: "approve: watching session " + session, err: err}
		if errors.Is(err, approval.ErrRefused) {
			e.hint = refusedHint
		}
		return e
	}
	a := &approver{f: f, session: session, client: c, watch: watch}
	if file, ok := f.in.(*os.File); ok && f.interactive() {
		return a.keys(ctx, file)
	}
	return a.lines(ctx)
}

// refusedHint is what to do when the session turns approve away.
const refusedHint = "open a terminal of your own (not one the crew started) and run 'crewgate approve' there"

// pickSession returns the named session, or the only running one.
func pickSession(f *factory, name string) (string, error) {
	if name != "" {
		if !approval.ValidSession(name) {
			return "", usageErrorf("%q is not a session id", name)
		}
		return name, nil
	}
	sessions, err := approval.Sessions()
	if err != nil {
		return "", &exitError{code: exitFailure, what: "approve: looking for running sessions", err: err}
	}
	switch len(sessions) {
	case 0:
		return "", &exitError{code: exitFailure, what: "approve", err: errors.New("no crewgate session is running"),
			hint: "start one with 'crewgate run --no-tui -- COMMAND', as the same user and with the same XDG_RUNTIME_DIR"}
	case 1:
		return sessions[0], nil
	}
	fmt.Fprintln(f.errOut, "Running sessions:")
	for _, s := range sessions {
		if t, ok := sessionStarted(s); ok {
			fmt.Fprintf(f.errOut, "  %s  started %s\n", s, t.Local().Format("2006-01-02 15:04:05"))
		} else {
			fmt.Fprintf(f.errOut, "  %s\n", s)
		}
	}
	return "", &exitError{code: exitUsage, what: "approve", err: fmt.Errorf("%d sessions are running", len(sessions)),
		hint: "name one: crewgate approve SESSION"}
}

// sessionStarted reads the start time out of an id made by newSessionID.
func sessionStarted(id string) (time.Time, bool) {
	b, err := base32.HexEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(id))
	if err != nil || len(b) != 10 {
		return time.Time{}, false
	}
	var ms [8]byte
	copy(ms[2:], b[:6])
	return time.UnixMilli(int64(binary.BigEndian.Uint64(ms[:]))), true
}

// approver is one `crewgate approve` connection.
type approver struct {
	f       *factory
	session string
	client  *approval.Client
	watch   <-chan []approval.Request
}

var choiceNames = map[approval.Choice]string{
	approval.AllowOnce:    "allowed once",
	approval.AllowSession: "allowed for the session",
	approval.Deny:         "denied",
}

// lines is the mode without a terminal: requests are printed on stdout as
// they arrive, decisions are read from stdin one per line.
func (a *approver) lines(ctx context.Context) error {
	f := a.f
	fmt.Fprintf(f.errOut, "Watching session %s; answer with lines 'a|s|d ID', 'q' to quit.\n", a.session)
	input := make(chan string)
	if f.in != nil {
		go func() {
			defer close(input)
			sc := bufio.NewScanner(f.in)
			for sc.Scan() {
				select {
				case input <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}()
	} else {
		close(input)
	}

	shown := map[string]bool{}
	failed := 0
	for {
		select {
		case list, ok := <-a.watch:
			if !ok {
				return a.ended(ctx, failed)
			}
			now := map[string]bool{}
			for i, r := range list {
				now[r.ID] = true
				if !shown[r.ID] {
					printRequest(f.out, r, i+1, len(list), f.now())
				}
			}
			shown = now
		case line, ok := <-input:
			if !ok {
				input = nil // stdin ended: keep watching until the session ends
				continue
			}
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			if len(fields) == 1 && (fields[0] == "q" || fields[0] == "quit") {
				return a.quit(failed)
			}
			choice, ok := map[string]approval.Choice{"a": approval.AllowOnce, "s": approval.AllowSession, "d": approval.Deny}[fields[0]]
			if !ok || len(fields) != 2 {
				fmt.Fprintf(f.errOut, "crewgate: approve: cannot read %q\nhint: answer with 'a ID' (allow once), 's ID' (allow for the session), 'd ID' (deny) or 'q'\n", line)
				failed++
				continue
			}
			if err := a.client.Decide(ctx, fields[1], choice); err != nil {
				fmt.Fprintf(f.errOut, "crewgate: approve: %v\n", err)
				failed++
				continue
			}
			fmt.Fprintf(f.errOut, "Request %s %s.\n", fields[1], choiceNames[choice])
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ended reports the end of the session: the watch closed.
func (a *approver) ended(ctx context.Context, failed int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(a.f.errOut, "Session %s ended.\n", a.session)
	return failedDecisions(failed)
}

func (a *approver) quit(failed int) error {
	fmt.Fprintf(a.f.errOut, "Stopped answering; session %s keeps running.\n", a.session)
	return failedDecisions(failed)
}

func failedDecisions(n int) error {
	if n == 0 {
		return nil
	}
	return &exitError{code: exitFailure, what: "approve", err: fmt.Errorf("%d answers were not taken", n),
		hint: "the messages above say why; a request may have been decided or timed out already"}
}

// printRequest writes r for the line mode: a first line "request ID METHOD
// URL" that scripts can pick up, then indented details.
func printRequest(w io.Writer, r approval.Request, pos, n int, now time.Time) {
	fmt.Fprintf(w, "request %s %s %s\n", termtext.Escape(r.ID), termtext.Escape(r.Method), termtext.Escape(r.URL))
	fmt.Fprintf(w, "  rule:     %s\n", ruleText(r))
	if r.Identity != "" {
		fmt.Fprintf(w, "  identity: %s\n", termtext.Escape(r.Identity))
	}
	for i, l := range previewLines(r.Preview) {
		label := "  preview:  "
		if i > 0 {
			label = "            "
		}
		fmt.Fprintf(w, "%s%s\n", label, l)
	}
	fmt.Fprintf(w, "  waiting:  %d of %d, times out in %s\n", pos, n, timeLeft(r, now))
	fmt.Fprintf(w, "  answer:   a|s|d %s\n", termtext.Escape(r.ID))
	fmt.Fprintf(w, "            s %s\n", sessionText(r))
}

// sessionText says what allowing r for the session covers: the same rule,
// method, host, port and path.
func sessionText(r approval.Request) string {
	return fmt.Sprintf("allow %s for the session (rule %s)", termtext.Escape(r.SessionScope()), termtext.Escape(r.Rule))
}

func ruleText(r approval.Request) string {
	if r.Reason == "" {
		return termtext.Escape(r.Rule)
	}
	return termtext.Escape(r.Rule) + ": " + termtext.Escape(r.Reason)
}

func timeLeft(r approval.Request, now time.Time) string {
	left := max(r.Deadline.Sub(now), 0)
	return left.Round(time.Second).String()
}

func previewLines(p string) []string {
	p = strings.TrimRight(p, "\r\n")
	if p == "" {
		return nil
	}
	var out []string
	for _, l := range strings.Split(p, "\n") {
		out = append(out, termtext.Escape(strings.TrimSuffix(l, "\r")))
	}
	return out
}

// keys is the terminal mode: the oldest pending request is shown on stderr
// and single keys decide it.
func (a *approver) keys(ctx context.Context, in *os.File) error {
	f := a.f
	fd := int(in.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return &exitError{code: exitFailure, what: "approve: setting up the terminal", err: err}
	}
	// Restored on every way out: q, Ctrl-C (a byte in raw mode), a signal
	// (ctx ends), the session's end.
	defer term.Restore(fd, old)

	keys := make(chan byte)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			if err != nil {
				close(keys)
				return
			}
			k := buf[0]
			if k == 0x1b && n > 1 {
				continue // an escape sequence (arrow keys and the like), not Esc
			}
			select {
			case keys <- k:
			case <-ctx.Done():
				return
			}
		}
	}()

	s := &screen{w: f.errOut, width: termWidth(f.errOut), color: os.Getenv("NO_COLOR") == ""}
	s.log(fmt.Sprintf("Answering session %s. Keys: a allow once, s allow the same request for the session, d or Esc deny, q quit.", a.session))
	var list []approval.Request
	var shown *approval.Request
	var tick <-chan time.Time
	draw := func() {
		shown = nil
		if len(list) > 0 {
			shown = &list[0]
			tick = time.After(time.Second) // the countdown
		} else {
			tick = nil
		}
		s.draw(a.session, shown, len(list), f.now())
	}
	draw()
	defer s.clear()
	for {
		select {
		case l, ok := <-a.watch:
			if !ok {
				s.clear()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.log(fmt.Sprintf("Session %s ended.", a.session))
				return nil
			}
			list = l
			draw()
		case <-tick:
			draw()
		case k, ok := <-keys:
			if !ok {
				keys = nil
				continue
			}
			var choice approval.Choice
			switch k {
			case 'a', 'A':
				choice = approval.AllowOnce
			case 's', 'S':
				choice = approval.AllowSession
			case 'd', 'D', 0x1b:
				choice = approval.Deny
			case 'q', 'Q', 0x04: // q or Ctrl-D
				s.clear()
				s.log(fmt.Sprintf("Stopped answering; session %s keeps running.", a.session))
				return nil
			case 0x03: // Ctrl-C
				s.clear()
				return &exitError{code: exitInterrupted, err: errors.New("interrupted")}
			default:
				continue
			}
			if shown == nil {
				continue
			}
			r := *shown
			msg := fmt.Sprintf("%s %s %s", choiceNames[choice], termtext.Escape(r.Method), termtext.Escape(r.URL))
			if err := a.client.Decide(ctx, r.ID, choice); err != nil {
				msg = fmt.Sprintf("could not answer %s %s: %v", termtext.Escape(r.Method), termtext.Escape(r.URL), err)
			}
			s.clear()
			s.log(msg)
			draw()
		case <-ctx.Done():
			s.clear()
			return ctx.Err()
		}
	}
}

func termWidth(w io.Writer) int {
	if file, ok := w.(*os.File); ok {
		if width, _, err := term.GetSize(int(file.Fd())); err == nil && width > 20 {
			return width
		}
	}
	return 80
}

// screen draws the prompt block at the bottom of a raw-mode terminal, and
// log lines above it.
type screen struct {
	w     io.Writer
	width int
	color bool
	lines int // lines of the block now on screen
}

// clear removes the block.
func (s *screen) clear() {
	if s.lines > 0 {
		fmt.Fprintf(s.w, "\x1b[%dA\r\x1b[J", s.lines)
		s.lines = 0
	}
}

// log prints a line that stays, above the block.
func (s *screen) log(line string) {
	fmt.Fprintf(s.w, "%s\r\n", s.fit(line))
}

func (s *screen) draw(session string, r *approval.Request, n int, now time.Time) {
	var lines []string
	if r == nil {
		lines = []string{fmt.Sprintf("crewgate approve · session %s · waiting for requests (q quits)", session)}
	} else {
		head := fmt.Sprintf("%s %s", termtext.Escape(r.Method), termtext.Escape(r.URL))
		if s.color {
			head = "\x1b[1m" + s.fit(head) + "\x1b[0m"
		}
		lines = append(lines,
			fmt.Sprintf("crewgate approve · session %s · %d waiting · times out in %s", session, n, timeLeft(*r, now)),
			head,
			"rule "+ruleText(*r))
		if r.Identity != "" {
			lines = append(lines, "as "+termtext.Escape(r.Identity))
		}
		preview := previewLines(r.Preview)
		for i, l := range preview {
			if i == 4 && len(preview) > 5 {
				lines = append(lines, fmt.Sprintf("  … %d more lines", len(preview)-4))
				break
			}
			lines = append(lines, "  "+l)
		}
		lines = append(lines, "[a] allow once  [d/Esc] deny  [q] quit", "[s] "+sessionText(*r))
	}
	s.clear()
	for _, l := range lines {
		fmt.Fprintf(s.w, "%s\r\n", s.fit(l))
	}
	s.lines = len(lines)
}

// fit cuts a line to the terminal width so that nothing wraps and the block
// can be cleared by counting lines. Lines with colour codes are already cut.
func (s *screen) fit(l string) string {
	if strings.Contains(l, "\x1b[") {
		return l
	}
	r := []rune(l)
	if len(r) >= s.width {
		return string(r[:s.width-2]) + "…"
	}
	return l
}
