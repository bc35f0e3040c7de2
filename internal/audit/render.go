package audit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crewgate/crewgate/internal/termtext"
)

// WriteTimeline writes a readable timeline of lg: a header about the
// session, then one line per event with its time since the start. res, when
// not nil, adds the verification result. Times are in UTC.
func WriteTimeline(w io.Writer, lg *Log, res *Result) error {
	ew := &errWriter{w: w}
	writeHeader(ew, lg, res)
	t0 := lg.Events[0].Time
	for _, e := range lg.Events[1:] {
		fmt.Fprintln(ew, FormatEvent(e, t0))
	}
	if lg.Abrupt {
		fmt.Fprintln(ew, "(no session end: crewgate was killed or crashed)")
	}
	return ew.err
}

func writeHeader(w io.Writer, lg *Log, res *Result) {
	first := lg.Events[0]
	st := lg.Start()
	fmt.Fprintf(w, "session  %s\n", first.Session)
	fmt.Fprintf(w, "started  %s\n", first.Time.UTC().Format("2006-01-02 15:04:05.000 MST"))
	who := st.Identity.Subject
	if st.Identity.Email != "" {
		who += " <" + st.Identity.Email + ">"
	}
	if who == "" {
		who = "(not logged in)"
	}
	if len(st.Identity.Groups) > 0 {
		who += "  groups: " + strings.Join(st.Identity.Groups, ", ")
	}
	fmt.Fprintf(w, "identity %s\n", who)
	fmt.Fprintf(w, "command  %s\n", quoteArgs(st.Command))
	ver := st.Version
	if ver == "" {
		ver = "unknown"
	}
	if digest := st.ConfigDigest; digest != "" {
		fmt.Fprintf(w, "crewgate %s  config sha256:%s\n", ver, digest[:min(12, len(digest))])
	} else {
		fmt.Fprintf(w, "crewgate %s\n", ver)
	}
	if res != nil {
		fmt.Fprintf(w, "chain    %s\n", res)
	}
	fmt.Fprintln(w)
}

// FormatEvent renders e on one line, its time relative to t0.
func FormatEvent(e Event, t0 time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%+9.3fs  %-5s ", e.Time.Sub(t0).Seconds(), e.ID)
	switch {
	case e.Request != nil:
		r := e.Request
		fmt.Fprintf(&b, "%s %s", r.Method, r.URL)
		if r.Upstream != "" {
			fmt.Fprintf(&b, "  -> %s", r.Upstream)
		} else if r.Route != "" {
			fmt.Fprintf(&b, "  -> (%s)", r.Route)
		}
		fmt.Fprintf(&b, "  %s", strings.ToUpper(string(r.Decision)))
		if r.Rule != "" {
			fmt.Fprintf(&b, " by rule %s", r.Rule)
		}
		if r.Refusal != "" {
			fmt.Fprintf(&b, " [%s]", r.Refusal)
		}
		if r.Reason != "" {
			fmt.Fprintf(&b, ": %s", r.Reason)
		}
	case e.Approval != nil:
		a := e.Approval
		fmt.Fprintf(&b, "approval: %s", strings.ToUpper(string(a.Decision)))
		if a.Scope != "" {
			fmt.Fprintf(&b, " (%s)", a.Scope)
		}
		if a.By != "" {
			fmt.Fprintf(&b, " by %s", a.By)
		}
		fmt.Fprintf(&b, " via %s after %s", a.How, ms(a.WaitedMS))
	case e.Response != nil:
		r := e.Response
		fmt.Fprintf(&b, "%d %s  %s  %s", r.Status, http.StatusText(r.Status), size(r.Bytes), ms(r.DurationMS))
		if r.Streamed {
			b.WriteString("  streamed")
		}
		if !r.Scanned {
			b.WriteString("  not scanned")
		} else if m := formatCounts(r.Masked); m != "" {
			b.WriteString("  masked " + m)
		}
		if r.Error != "" {
			b.WriteString("  error: " + r.Error)
		}
	case e.Tunnel != nil:
		t := e.Tunnel
		fmt.Fprintf(&b, "tunnel %s  up %s  down %s  %s", t.Host, size(t.BytesUp), size(t.BytesDown), ms(t.DurationMS))
	case e.Leak != nil:
		l := e.Leak
		fmt.Fprintf(&b, "LEAK ATTEMPT: placeholder of upstream %s on its way to %s", l.Upstream, l.To)
		if l.Where != "" {
			fmt.Fprintf(&b, " (in the %s)", l.Where)
		}
	case e.End != nil:
		t := e.End.Totals
		fmt.Fprintf(&b, "session end: exit %d after %s; %d requests, %d denied, %d approved, %d masked, %d tunnels",
			e.End.ExitCode, ms(e.End.DurationMS), t.Requests, t.Denied, t.Approved, t.Masked, t.Tunnels)
		if t.Leaks > 0 {
			fmt.Fprintf(&b, ", %d leak attempts", t.Leaks)
		}
		if t.Dropped > 0 {
			fmt.Fprintf(&b, ", %d events NOT RECORDED", t.Dropped)
		}
	case e.Gap != nil:
		fmt.Fprintf(&b, "GAP: %d events not recorded (%s)", e.Gap.Dropped, e.Gap.Reason)
	case e.Start != nil:
		fmt.Fprintf(&b, "session start: %s", quoteArgs(e.Start.Command))
	default:
		fmt.Fprintf(&b, "%s", e.Type)
	}
	return strings.TrimRight(b.String(), " ")
}

// WriteDetails writes everything e records, indented, for replay.
func WriteDetails(w io.Writer, e Event) {
	ind := "             "
	switch {
	case e.Request != nil:
		writeHeaders(w, ind, e.Request.Headers)
		writeBody(w, ind, e.Request.Body)
	case e.Response != nil:
		if e.Response.Form != "" {
			fmt.Fprintf(w, "%sread as %s\n", ind, e.Response.Form)
		}
		writeHeaders(w, ind, e.Response.Headers)
		writeBody(w, ind, e.Response.Body)
	}
}

func writeHeaders(w io.Writer, ind string, h http.Header) {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range h[k] {
			fmt.Fprintf(w, "%s%s: %s\n", ind, k, v)
		}
	}
}

func writeBody(w io.Writer, ind string, b *Body) {
	if b == nil {
		return
	}
	fmt.Fprintf(w, "%sbody %s sha256:%s\n", ind, size(b.Size), b.SHA256)
	switch {
	case b.Binary:
		fmt.Fprintf(w, "%s(binary, no preview)\n", ind)
	case b.Preview != "":
		for _, l := range strings.Split(strings.TrimRight(b.Preview, "\n"), "\n") {
			fmt.Fprintf(w, "%s| %s\n", ind, l)
		}
		if b.Truncated {
			fmt.Fprintf(w, "%s| ... (preview of the first %s)\n", ind, size(int64(len(b.Preview))))
		}
	}
}

// ReplayOptions pace a Replay.
type ReplayOptions struct {
	// Speed multiplies the recorded pace (2 is twice as fast); 0 means 1.
	Speed float64
	// MaxPause caps the wait between two events (default 5s), saying how
	// long the recorded pause was.
	MaxPause time.Duration
	// Step, when set, is called before each event instead of waiting; it
	// returns false to stop the replay.
	Step func() (bool, error)
	// Sleep waits d or until ctx ends; nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Replay writes lg event by event with each event's details, waiting between
// events as recorded (scaled by Speed) or for Step.
func Replay(ctx context.Context, w io.Writer, lg *Log, opts ReplayOptions) error {
	if opts.Speed <= 0 {
		opts.Speed = 1
	}
	if opts.MaxPause <= 0 {
		opts.MaxPause = 5 * time.Second
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	ew := &errWriter{w: w}
	writeHeader(ew, lg, nil)
	t0 := lg.Events[0].Time
	prev := t0
	for i, e := range lg.Events[1:] {
		if opts.Step != nil {
			more, err := opts.Step()
			if err != nil || !more {
				return err
			}
		} else if gap := time.Duration(float64(e.Time.Sub(prev)) / opts.Speed); gap > 0 {
			if gap > opts.MaxPause {
				fmt.Fprintf(ew, "           ... %s later\n", e.Time.Sub(prev).Round(time.Millisecond))
				gap = opts.MaxPause
			}
			if err := opts.Sleep(ctx, gap); err != nil {
				return err
			}
		}
		prev = e.Time
		fmt.Fprintf(ew, "[%d/%d] %s\n", i+1, len(lg.Events)-1, FormatEvent(e, t0))
		WriteDetails(ew, e)
		if ew.err != nil {
			return ew.err
		}
	}
	if lg.Abrupt {
		fmt.Fprintln(ew, "(no session end: crewgate was killed or crashed)")
	}
	return ew.err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func formatCounts(m map[string]int) string {
	names := make([]string, 0, len(m))
	for k, n := range m {
		if n > 0 {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func ms(n int64) string {
	return (time.Duration(n) * time.Millisecond).String()
}

func size(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// errWriter is where the timeline and replay write: it keeps the first
// write error, and escapes what a crew controlled (URLs, headers, previews)
// so a recorded escape sequence cannot drive the reader's terminal.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	_, e.err = io.WriteString(e.w, termtext.EscapeLines(string(p)))
	if e.err != nil {
		return 0, e.err
	}
	return len(p), nil
}
