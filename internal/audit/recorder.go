package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// What a Recorder does after it failed to record (OnError).
const (
	OnErrorStop     = "stop"
	OnErrorContinue = "continue"
)

// ErrQueueFull is reported when events come faster than the disk takes them.
var ErrQueueFull = errors.New("the recorder's queue is full: events are being dropped")

// Options tune a Recorder. The zero value is usable.
type Options struct {
	// OnError is "stop" (the default: stop recording and close Failed, so the
	// run can stop) or "continue" (keep recording what can be recorded; a
	// gap line counts what was lost).
	OnError string
	// Warn is called once per kind of trouble (disk, queue, collector), from
	// any goroutine; it must not block. The run prints it loudly.
	Warn func(error)
	// QueueSize bounds the events waiting for the writer (default 8192).
	QueueSize int
	// MaxWait is how long Record waits for room in a full queue before it
	// drops the event (default 100ms).
	MaxWait time.Duration
	// OTLPEndpoint, when set, is an OTLP/HTTP logs URL ("/v1/logs" is added
	// to a URL without a path) that gets a copy of every event.
	OTLPEndpoint string
	// OTLPClient sends to the collector; nil means a client with a 5s timeout.
	OTLPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	wrap func(logFile) logFile // tests: inject disk failures
}

// logFile is the part of *os.File the writer uses.
type logFile interface {
	Write([]byte) (int, error)
	Sync() error
	Truncate(int64) error
	Close() error
}

// Recorder appends a session's events to <dir>/<session>.jsonl. Record may
// be called from any goroutine; Close once, at the end. A nil *Recorder
// records nothing.
type Recorder struct {
	path    string
	session string
	opts    Options
	started time.Time

	q       chan Event
	closeq  chan Event
	done    chan struct{}
	failed  chan struct{}
	stopped atomic.Bool
	ids     atomic.Int64
	dropped atomic.Int64 // lost and not yet written as a gap

	failOnce  sync.Once
	queueOnce sync.Once
	diskOnce  sync.Once
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error
	closeErr  error
	otlp      *exporter
	totals    Totals // writer goroutine only
	f         logFile
	off       int64
	prev      string
	seq       int64
	// The writer's scratch space, kept between batches: the lines being
	// written, their events and the encoder.
	buf   []byte
	lines []Event
	enc   eventEncoder
}

// Path is the session log file of session in dir.
func Path(dir, session string) string { return filepath.Join(dir, session+".jsonl") }

// Open creates <dir>/<session>.jsonl (0600; dir 0700 when created), writes
// start (a session_start event; its nonce is generated) synchronously and
// starts the writer. An error means nothing will be recorded.
func Open(dir, session string, start Event, opts Options) (*Recorder, error) {
	if session == "" || filepath.Base(session) != session || session[0] == '.' {
		return nil, fmt.Errorf("audit: bad session id %q", session)
	}
	if opts.OnError == "" {
		opts.OnError = OnErrorStop
	}
	if opts.OnError != OnErrorStop && opts.OnError != OnErrorContinue {
		return nil, fmt.Errorf("audit: on_error %q is not stop or continue", opts.OnError)
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 8192
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 100 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Warn == nil {
		opts.Warn = func(error) {}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: creating the session directory: %w", err)
	}
	path := Path(dir, session)
	osf, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: creating the session log: %w", err)
	}
	var f logFile = osf
	if opts.wrap != nil {
		f = opts.wrap(f)
	}
	r := &Recorder{
		path: path, session: session, opts: opts,
		q:      make(chan Event, opts.QueueSize),
		closeq: make(chan Event),
		done:   make(chan struct{}),
		failed: make(chan struct{}),
		f:      f,
	}
	var nonce [32]byte
	rand.Read(nonce[:])
	start.Type = TypeSessionStart
	if start.Start == nil {
		start.Start = &Start{}
	}
	st := *start.Start
	st.Nonce = hex.EncodeToString(nonce[:])
	start.Start = &st
	r.prev = st.Nonce
	if start.Time.IsZero() {
		start.Time = opts.Now()
	}
	r.started = start.Time
	if opts.OTLPEndpoint != "" {
		r.otlp, err = newExporter(opts.OTLPEndpoint, opts.OTLPClient, st.Version, opts.Warn)
		if err != nil {
			f.Close()
			os.Remove(path)
			return nil, err
		}
	}
	if err := r.write(start); err != nil {
		f.Close()
		os.Remove(path)
		r.otlp.close(0)
		return nil, fmt.Errorf("audit: writing the session log: %w", err)
	}
	go r.run()
	return r, nil
}

// Path is the file being written.
func (r *Recorder) Path() string {
	if r == nil {
		return ""
	}
	return r.path
}

// NextID returns a new request id ("r1", "r2", ...) to link a request's
// events.
func (r *Recorder) NextID() string {
	if r == nil {
		return ""
	}
	return "r" + strconv.FormatInt(r.ids.Add(1), 10)
}

// Record queues e. It returns at once, or after Options.MaxWait when the
// queue is full, in which case e is dropped and counted. The caller must not
// change what e points to afterwards.
func (r *Recorder) Record(e Event) {
	if r == nil {
		return
	}
	if r.stopped.Load() {
		r.dropped.Add(1)
		return
	}
	if e.Time.IsZero() {
		e.Time = r.opts.Now()
	}
	select {
	case r.q <- e:
		return
	default:
	}
	t := time.NewTimer(r.opts.MaxWait)
	defer t.Stop()
	select {
	case r.q <- e:
	case <-t.C:
		r.dropped.Add(1)
		r.queueOnce.Do(func() { r.opts.Warn(fmt.Errorf("session log %s: %w", r.path, ErrQueueFull)) })
		if r.opts.OnError == OnErrorStop {
			r.fail(ErrQueueFull)
		}
	}
}

// Failed is closed when recording stopped because of trouble with
// OnError "stop"; Err says why.
func (r *Recorder) Failed() <-chan struct{} { return r.failed }

// Err is the first trouble the recorder met, or nil.
func (r *Recorder) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

func (r *Recorder) setErr(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
}

func (r *Recorder) fail(err error) {
	r.setErr(err)
	r.failOnce.Do(func() {
		r.stopped.Store(true)
		close(r.failed)
	})
}

// Close writes end (a session_end event with the exit code; the totals and
// duration are computed from what was recorded), syncs and closes the file,
// and gives the collector a short while to take the last events. It returns
// the first recording error, if any.
func (r *Recorder) Close(end Event) error {
	if r == nil {
		return nil
	}
	r.closeOnce.Do(func() {
		end.Type = TypeSessionEnd
		if end.Time.IsZero() {
			end.Time = r.opts.Now()
		}
		if end.End == nil {
			end.End = &End{}
		}
		e := *end.End
		end.End = &e
		r.closeq <- end
		<-r.done
		r.otlp.close(2 * time.Second)
	})
	if r.closeErr != nil {
		return r.closeErr
	}
	return r.Err()
}

// run is the writer goroutine.
// batchLinger is how long the writer waits after each write so that a
// busy proxy's events gather: fewer wake-ups of the writer (each a futex
// call on the proxy's request path) and fewer writes. Events waiting in the
// queue are lost by a SIGKILL either way; what is written stays valid.
const batchLinger = 2 * time.Millisecond

func (r *Recorder) run() {
	defer close(r.done)
	for {
		select {
		case e := <-r.q:
			r.writeBatch(e)
			time.Sleep(batchLinger)
		case end := <-r.closeq:
			for {
				select {
				case e := <-r.q:
					r.writeBatch(e)
					continue
				default:
				}
				break
			}
			r.finish(end)
			return
		}
	}
}

// writeBatch writes e and whatever else is already queued, in one write of
// complete lines.
func (r *Recorder) writeBatch(e Event) {
	if r.stopped.Load() {
		r.dropped.Add(1)
		return
	}
	r.flushGap()
	r.buf = r.buf[:0]
	lines := r.lines[:0]
	r.appendLine(&e)
	lines = append(lines, e)
	for len(r.buf) < 64<<10 {
		select {
		case e := <-r.q:
			r.appendLine(&e)
			lines = append(lines, e)
			continue
		default:
		}
		break
	}
	r.commit(lines)
	// Keep the slice, not what its events point to.
	clear(lines)
	r.lines = lines[:0]
}

// flushGap writes a gap line for events dropped since the last write.
func (r *Recorder) flushGap() {
	n := r.dropped.Swap(0)
	if n == 0 {
		return
	}
	r.buf = r.buf[:0]
	g := Event{Type: TypeGap, Time: r.opts.Now(), Gap: &Gap{Dropped: n, Reason: "events dropped: queue full or log unwritable"}}
	r.appendLine(&g)
	if !r.commit([]Event{g}) {
		// commit counted the gap line itself as lost; it is not an event.
		r.dropped.Add(n - 1)
	}
}

// commit writes r.buf; on failure it undoes a partial write and applies
// OnError. It reports whether the lines are on disk.
func (r *Recorder) commit(lines []Event) bool {
	saved := r.buf
	n, err := r.f.Write(saved)
	if err == nil {
		r.off += int64(n)
		for i := range lines {
			r.count(&lines[i])
		}
		r.otlp.enqueue(saved, lines)
		return true
	}
	if n > 0 {
		// Leave no torn line in the middle of the log.
		if terr := r.f.Truncate(r.off); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	r.rollback(lines)
	r.dropped.Add(int64(len(lines)))
	werr := fmt.Errorf("writing session log %s: %w", r.path, err)
	r.diskOnce.Do(func() { r.opts.Warn(werr) })
	r.setErr(werr)
	if r.opts.OnError == OnErrorStop {
		r.fail(werr)
	}
	return false
}

// rollback forgets the chain state of lines that did not reach the disk.
func (r *Recorder) rollback(lines []Event) {
	if len(lines) == 0 {
		return
	}
	r.seq = lines[0].Seq - 1
	r.prev = lines[0].Prev
}

func (r *Recorder) finish(end Event) {
	r.flushGap()
	t := r.totals
	t.Dropped += r.dropped.Load()
	end.End.Totals = t
	if end.End.DurationMS == 0 {
		end.End.DurationMS = end.Time.Sub(r.started).Milliseconds()
	}
	r.buf = r.buf[:0]
	r.appendLine(&end)
	if !r.commit([]Event{end}) {
		r.closeErr = r.Err()
	}
	if err := r.f.Sync(); err != nil && r.closeErr == nil {
		r.closeErr = fmt.Errorf("syncing session log %s: %w", r.path, err)
	}
	if err := r.f.Close(); err != nil && r.closeErr == nil {
		r.closeErr = fmt.Errorf("closing session log %s: %w", r.path, err)
	}
}

// write writes one event now (the start line, before the writer runs).
func (r *Recorder) write(e Event) error {
	r.buf = r.buf[:0]
	r.appendLine(&e)
	n, err := r.f.Write(r.buf)
	if err != nil {
		return err
	}
	r.off += int64(n)
	r.otlp.enqueue(r.buf, []Event{e})
	return nil
}

// appendLine encodes e as the next line of the chain into r.buf and fills
// in Seq, Session, Prev and Hash.
func (r *Recorder) appendLine(e *Event) {
	r.seq++
	e.Seq = r.seq
	if e.Session == "" {
		e.Session = r.session
	}
	e.Prev = r.prev
	e.Hash = ""
	at := len(r.buf)
	b, ok := r.enc.appendEvent(r.buf, e)
	if !ok {
		// encoding/json decides what the encoder does not know.
		data, err := json.Marshal(e)
		if err != nil {
			// Only an unencodable value gets here; record that rather than nothing.
			g := Event{Seq: e.Seq, Type: TypeGap, Time: e.Time, Session: e.Session, ID: e.ID,
				Gap: &Gap{Dropped: 1, Reason: "event could not be encoded: " + err.Error()}, Prev: e.Prev}
			if data, err = json.Marshal(g); err != nil {
				// The time itself is what cannot be encoded.
				g.Time = time.Time{}
				data, _ = json.Marshal(g)
			}
		}
		b = append(b[:at], data...)
	}
	b = b[:len(b)-1] // without the closing brace
	sum := sha256.Sum256(b[at:])
	b = append(b, `,"hash":"`...)
	b = hex.AppendEncode(b, sum[:])
	e.Hash = string(b[len(b)-2*sha256.Size:])
	r.buf = append(b, "\"}\n"...)
	r.prev = e.Hash
}

// count adds a written event to the session's totals.
func (r *Recorder) count(e *Event) {
	addTotals(&r.totals, e)
}

func addTotals(t *Totals, e *Event) {
	switch e.Type {
	case TypeRequest:
		t.Requests++
		if e.Request != nil && e.Request.Decision == DecisionDeny {
			t.Denied++
		}
	case TypeApproval:
		// A refused approval is counted once, by its request's deny.
		if e.Approval != nil && e.Approval.Decision == DecisionAllow {
			t.Approved++
		}
	case TypeResponse:
		if e.Response != nil {
			for _, n := range e.Response.Masked {
				t.Masked += int64(n)
			}
		}
	case TypeTunnel:
		t.Tunnels++
	case TypeLeak:
		t.Leaks++
	case TypeGap:
		if e.Gap != nil {
			t.Dropped += e.Gap.Dropped
		}
	}
}
