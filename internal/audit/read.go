package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// hashSuffixLen is len(`,"hash":"` + 64 hex digits + `"}`).
const hashSuffixLen = 9 + 64 + 2

// maxLine bounds one line when reading; longer lines are reported bad.
const maxLine = 16 << 20

// Result is what Verify found.
type Result struct {
	Session string
	// Lines is how many complete lines verify, from the first.
	Lines int
	// OK is true when every complete line verifies and chains to the one
	// before it. A log cut short by a crash can be OK (see Abrupt).
	OK bool
	// BadLine is the first line (1-based) that does not verify; 0 when OK.
	BadLine int
	Reason  string
	// Abrupt is set when the log has no session_end: crewgate was killed or
	// crashed, or the end was cut off. Torn adds that the last line is
	// incomplete (a write cut short).
	Abrupt bool
	Torn   bool
}

// String is the result in one line for people.
func (r Result) String() string {
	switch {
	case !r.OK:
		return fmt.Sprintf("line %d: %s", r.BadLine, r.Reason)
	case r.Torn:
		return fmt.Sprintf("ok up to line %d; the session ended abruptly: line %d is incomplete (crewgate was killed mid-write)", r.Lines, r.Lines+1)
	case r.Abrupt:
		return fmt.Sprintf("ok, %d lines; the session ended abruptly: there is no session_end line (crewgate was killed or crashed, or the end was cut off)", r.Lines)
	}
	return fmt.Sprintf("ok, %d lines, chain holds from the start nonce to the session end", r.Lines)
}

// lineReader yields a file's lines, telling complete ones (ending in a
// newline) from a torn last one.
type lineReader struct {
	br *bufio.Reader
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line without its newline; complete is false for a
// last line without one. io.EOF after the last line.
func (l *lineReader) next() (line []byte, complete bool, err error) {
	line, err = l.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(buf) <= maxLine {
			line, err = l.br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	switch {
	case err == nil:
		return line[:len(line)-1], true, nil
	case errors.Is(err, io.EOF) && len(line) > 0:
		return line, false, nil
	case errors.Is(err, bufio.ErrBufferFull):
		return line, false, fmt.Errorf("a line longer than %d bytes", maxLine)
	}
	return nil, false, err
}

// checkLine verifies a line's own hash and decodes it.
func checkLine(line []byte) (Event, string) {
	var e Event
	if len(line) < hashSuffixLen+2 || !bytes.HasPrefix(line[len(line)-hashSuffixLen:], []byte(`,"hash":"`)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return e, "edited: not a session log line (no hash at its end)"
	}
	content := line[:len(line)-hashSuffixLen]
	sum := sha256.Sum256(content)
	if hex.EncodeToString(sum[:]) != string(line[len(line)-hashSuffixLen+9:len(line)-2]) {
		return e, "edited: its content does not match its hash"
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return e, "edited: not valid JSON: " + err.Error()
	}
	return e, ""
}

// Verify checks the session log at path: every line's own hash, and that
// each line chains to the one before it, the first to the nonce of its
// session_start, with no line after session_end. The error is for I/O
// trouble only; a broken chain is a Result that is not OK.
func Verify(path string) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	return verify(f)
}

func verify(r io.Reader) (Result, error) {
	var res Result
	lr := newLineReader(r)
	bad := func(n int, format string, args ...any) (Result, error) {
		res.OK, res.BadLine, res.Reason = false, n, fmt.Sprintf(format, args...)
		return res, nil
	}
	var prev string
	ended := 0
	for n := 1; ; n++ {
		line, complete, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bad(n, "%v", err)
		}
		if !complete {
			if ended > 0 {
				return bad(n, "appended after the session ended on line %d", ended)
			}
			res.Torn, res.Abrupt = true, true
			break
		}
		if ended > 0 {
			return bad(n, "appended after the session ended on line %d", ended)
		}
		e, why := checkLine(line)
		if why != "" {
			return bad(n, "%s", why)
		}
		if n == 1 {
			if e.Type != TypeSessionStart || e.Start == nil || len(e.Start.Nonce) != 64 {
				return bad(n, "the first line is not a session_start with a nonce (lines deleted from the start?)")
			}
			if e.Prev != e.Start.Nonce || e.Seq != 1 {
				return bad(n, "the first line does not chain to its session nonce")
			}
			res.Session = e.Session
		} else {
			switch {
			case e.Type == TypeSessionStart:
				return bad(n, "a second session_start (lines from another log?)")
			case e.Seq > int64(n):
				return bad(n, "holds event %d where event %d belongs: lines before it were deleted or moved", e.Seq, n)
			case e.Seq < int64(n):
				return bad(n, "holds event %d where event %d belongs: lines were reordered or repeated", e.Seq, n)
			case e.Prev != prev:
				return bad(n, "does not chain to line %d: a line was replaced or inserted", n-1)
			case e.Session != res.Session:
				return bad(n, "belongs to session %q, not %q", e.Session, res.Session)
			}
		}
		if e.Type == TypeSessionEnd {
			ended = n
		}
		prev = e.Hash
		res.Lines = n
	}
	if res.Lines == 0 && !res.Torn {
		return bad(1, "the log is empty")
	}
	if res.Lines == 0 {
		return bad(1, "the first line is incomplete")
	}
	res.OK = true
	res.Abrupt = ended == 0
	return res, nil
}

// Log is a session log read back.
type Log struct {
	Events []Event
	// Abrupt: no session_end (crewgate was killed); Torn: the last line was
	// incomplete and is left out.
	Abrupt, Torn bool
}

// Start is the session_start event's details, or an empty Start.
func (l *Log) Start() Start {
	if len(l.Events) > 0 && l.Events[0].Start != nil {
		return *l.Events[0].Start
	}
	return Start{}
}

// Read reads every complete line of the log at path. It does not verify
// the chain (Verify does) but fails on a line that is not an event.
func Read(path string) (*Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lg := &Log{}
	lr := newLineReader(f)
	for n := 1; ; n++ {
		line, complete, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, n, err)
		}
		if !complete {
			lg.Torn = true
			break
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, n, err)
		}
		lg.Events = append(lg.Events, e)
	}
	if len(lg.Events) == 0 || lg.Events[0].Type != TypeSessionStart {
		return nil, fmt.Errorf("%s: not a session log (no session_start first)", path)
	}
	lg.Abrupt = lg.Events[len(lg.Events)-1].Type != TypeSessionEnd
	return lg, nil
}

// Summary is one session in a listing.
type Summary struct {
	ID         string     `json:"id"`
	Started    time.Time  `json:"started"`
	Ended      *time.Time `json:"ended"`
	DurationMS *int64     `json:"duration_ms"`
	Subject    string     `json:"subject"`
	Email      string     `json:"email,omitempty"`
	Command    []string   `json:"command"`
	Requests   int64      `json:"requests"`
	Denied     int64      `json:"denied"`
	Approved   int64      `json:"approved"`
	Masked     int64      `json:"masked"`
	ExitCode   *int       `json:"exit_code"`
	// Abrupt: the session has no end line (crewgate was killed); the counts
	// are then taken from the lines there are.
	Abrupt bool `json:"abrupt,omitempty"`
	// Problem says why a file could not be read as a session log.
	Problem string `json:"problem,omitempty"`
	Path    string `json:"-"`
}

// List summarises every session log in dir, oldest first. It reads only the
// first and last line of each log that ended properly; a missing dir is an
// empty list.
func List(dir string) ([]Summary, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	out := make([]Summary, 0, len(names))
	for _, p := range names {
		out = append(out, summarize(p))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func summarize(path string) Summary {
	s := Summary{ID: strings.TrimSuffix(filepath.Base(path), ".jsonl"), Path: path, Command: []string{}}
	f, err := os.Open(path)
	if err != nil {
		s.Problem = err.Error()
		return s
	}
	defer f.Close()
	first, complete, err := newLineReader(f).next()
	if err != nil || !complete {
		s.Problem = "no complete first line"
		return s
	}
	var start Event
	if json.Unmarshal(first, &start) != nil || start.Type != TypeSessionStart || start.Start == nil {
		s.Problem = "not a session log"
		return s
	}
	s.Started = start.Time
	s.Subject, s.Email = start.Start.Identity.Subject, start.Start.Identity.Email
	if start.Start.Command != nil {
		s.Command = start.Start.Command
	}
	if end, ok := lastLine(f); ok && end.Type == TypeSessionEnd && end.End != nil {
		t := end.Time
		s.Ended = &t
		d, code := end.End.DurationMS, end.End.ExitCode
		s.DurationMS, s.ExitCode = &d, &code
		tt := end.End.Totals
		s.Requests, s.Denied, s.Approved, s.Masked = tt.Requests, tt.Denied, tt.Approved, tt.Masked
		return s
	}
	// Abrupt: count what there is.
	s.Abrupt = true
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return s
	}
	var t Totals
	var last time.Time
	lr := newLineReader(f)
	for {
		line, complete, err := lr.next()
		if err != nil || !complete {
			break
		}
		var e Event
		if json.Unmarshal(line, &e) == nil {
			addTotals(&t, &e)
			last = e.Time
		}
	}
	s.Requests, s.Denied, s.Approved, s.Masked = t.Requests, t.Denied, t.Approved, t.Masked
	if !last.IsZero() {
		d := last.Sub(s.Started).Milliseconds()
		s.DurationMS = &d
	}
	return s
}

// lastLine decodes the last complete line of f, reading backwards from the
// end; ok is false when the file does not end with a complete line.
func lastLine(f *os.File) (Event, bool) {
	var e Event
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return e, false
	}
	size := st.Size()
	for chunk := int64(4096); ; chunk *= 4 {
		n := min(chunk, size)
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, size-n); err != nil && !errors.Is(err, io.EOF) {
			return e, false
		}
		if buf[len(buf)-1] != '\n' {
			return e, false // torn
		}
		body := buf[:len(buf)-1]
		i := bytes.LastIndexByte(body, '\n')
		if i < 0 && n < size && chunk < maxLine {
			continue
		}
		if json.Unmarshal(body[i+1:], &e) != nil {
			return e, false
		}
		return e, true
	}
}
