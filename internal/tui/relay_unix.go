//go:build unix

package tui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/creack/pty"
	"github.com/muesli/cancelreader"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Relay is the terminal of one run: it owns a pseudo-terminal for the
// child and crewgate's terminal in raw mode. See the package doc for how
// rows are kept and keys routed.
type Relay struct {
	opts   Options
	ptmx   *os.File // pollable, so reads and writes end at Close
	tty    *os.File
	in     cancelreader.CancelReader
	inFd   int
	old    *term.State
	winch  chan os.Signal
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watcher and the poller
	pumped chan struct{}
	inDone chan struct{}

	closeOnce sync.Once
	closeErr  error
	restore   sync.Once

	mu         sync.Mutex
	cond       *sync.Cond
	model      Model
	vt         vt
	rows, cols int
	reserved   int    // rows kept for crewgate now
	painted    string // the view last drawn
	dirty      bool   // the view differs from what is drawn
	full       bool   // set up the rows from scratch at the next paint
	dirtyAt    time.Time
	paused     bool // a prompt is drawn: the pty is not read
	closing    bool
}

// Start puts In in raw mode (restored by Close, also on a panic in the
// relay; defer Close right after Start so a panic in the caller restores it
// too), opens a pseudo-terminal sized to the terminal less the row crewgate
// keeps, and starts relaying. The child is started by the caller with TTY()
// as its stdin, stdout, stderr and controlling terminal.
func Start(opts Options) (_ *Relay, err error) {
	if opts.In == nil || opts.Out == nil {
		return nil, errors.New("relay the terminal: In and Out must be set")
	}
	inFd := int(opts.In.Fd())
	if !term.IsTerminal(inFd) {
		return nil, errors.New("relay the terminal: stdin is not a terminal")
	}
	rows, cols, err := winsize(opts.Out)
	if err != nil {
		return nil, fmt.Errorf("relay the terminal: read the window size: %w", err)
	}
	ptmx, tty, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("relay the terminal: open a pseudo-terminal: %w", err)
	}
	defer func() {
		if err != nil {
			ptmx.Close()
			tty.Close()
		}
	}()
	if err := setWinsize(ptmx, max(rows-1, 1), cols); err != nil {
		return nil, fmt.Errorf("relay the terminal: size the pseudo-terminal: %w", err)
	}
	in, err := cancelreader.NewReader(opts.In)
	if err != nil {
		return nil, fmt.Errorf("relay the terminal: read stdin: %w", err)
	}
	old, err := term.MakeRaw(inFd)
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("relay the terminal: raw mode: %w", err)
	}

	delay := opts.KeyDelay
	if delay == 0 {
		delay = DefaultKeyDelay
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{
		opts: opts, ptmx: ptmx, tty: tty, in: in, inFd: inFd, old: old,
		winch: make(chan os.Signal, 1), ctx: ctx, cancel: cancel,
		pumped: make(chan struct{}), inDone: make(chan struct{}),
		rows: rows, cols: cols, full: true, dirty: true,
	}
	r.cond = sync.NewCond(&r.mu)
	r.model = NewModel(r.decide, opts.Color, delay)
	m, _ := r.model.Update(tea.WindowSizeMsg{Width: cols, Height: rows})
	r.model = m.(Model)
	if opts.Status != nil {
		m, _ = r.model.Update(StatusMsg(opts.Status()))
		r.model = m.(Model)
	}
	r.mu.Lock()
	r.flushLocked()
	r.mu.Unlock()

	signal.Notify(r.winch, syscall.SIGWINCH)
	r.wg.Add(2)
	go r.watch()
	go r.poll()
	go r.pump()
	go r.input()
	return r, nil
}

// TTY returns the pseudo-terminal's child side. The Relay keeps its own
// copy open until Close, so the child's exit does not end the relay early.
func (r *Relay) TTY() *os.File { return r.tty }

// Close stops relaying, drains what the child printed (for up to a second),
// clears crewgate's rows, resets the scroll region and restores the
// terminal's mode. It is safe to call more than once.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Relay) close() error {
	r.cancel()
	signal.Stop(r.winch)
	r.wg.Wait()

	// With our copy of the child side closed, reads end with EIO once every
	// process holding it has exited and the buffer is empty.
	r.tty.Close()
	r.mu.Lock()
	r.closing, r.paused = true, false
	r.cond.Broadcast()
	r.mu.Unlock()
	_ = r.ptmx.SetReadDeadline(time.Now().Add(drainTimeout))
	<-r.pumped

	r.in.Cancel()
	r.ptmx.Close()
	<-r.inDone
	r.in.Close()

	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restoreTerminal()
}

// restoreTerminal gives the whole screen back and leaves raw mode. It does
// not take r.mu, so a panic under the lock can still call it.
func (r *Relay) restoreTerminal() error {
	var err error
	r.restore.Do(func() {
		var b bytes.Buffer
		b.WriteString("\x1b7\x1b[r\x1b8")
		if r.reserved > 0 {
			fmt.Fprintf(&b, "\x1b7\x1b[%d;1H\x1b[m\x1b[J\x1b8", r.rows-r.reserved+1)
		}
		_, _ = r.opts.Out.Write(b.Bytes())
		err = term.Restore(r.inFd, r.old)
	})
	return err
}

func (r *Relay) recoverPanic() {
	if p := recover(); p != nil {
		_ = r.restoreTerminal()
		panic(p)
	}
}

func (r *Relay) decide(id, choice string) error {
	if r.opts.Source == nil {
		return errors.New("no approval queue")
	}
	return r.opts.Source.Decide(id, choice)
}

// send feeds msg to the model and paints the result.
func (r *Relay) send(msg tea.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return
	}
	r.updateLocked(msg)
}

func (r *Relay) updateLocked(msg tea.Msg) {
	next, cmd := r.model.Update(msg)
	r.model = next.(Model)
	r.exec(cmd)
	if r.model.View() != r.painted {
		r.dirty = true
	}
	r.flushLocked()
}

// exec runs a command of the model the way a tea.Program would.
func (r *Relay) exec(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	go func() {
		defer r.recoverPanic()
		msg := cmd()
		if batch, ok := msg.(tea.BatchMsg); ok {
			for _, c := range batch {
				r.exec(c)
			}
			return
		}
		if msg != nil {
			r.send(msg)
		}
	}()
}

// watch follows the approval queue.
func (r *Relay) watch() {
	defer r.wg.Done()
	defer r.recoverPanic()
	if r.opts.Source == nil {
		return
	}
	for {
		changed := r.opts.Source.Changed()
		r.send(PromptsMsg{Pending: r.opts.Source.Pending(), Now: time.Now()})
		select {
		case <-changed:
		case <-r.ctx.Done():
			return
		}
	}
}

// poll reads the status and the window size a few times a second (SIGWINCH
// only reaches crewgate for its controlling terminal), moves the prompt's
// countdown and paints what waited for the crew to finish a sequence.
func (r *Relay) poll() {
	defer r.wg.Done()
	defer r.recoverPanic()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.winch:
			r.checkSize()
		case now := <-tick.C:
			r.checkSize()
			r.send(TickMsg(now))
			if r.opts.Status != nil {
				r.send(StatusMsg(r.opts.Status()))
			}
		}
	}
}

func (r *Relay) checkSize() {
	rows, cols, err := winsize(r.opts.Out)
	if err != nil || rows < 1 || cols < 1 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing || (rows == r.rows && cols == r.cols) {
		return
	}
	r.rows, r.cols = rows, cols
	_ = setWinsize(r.ptmx, max(rows-1, 1), cols)
	r.full = true
	r.updateLocked(tea.WindowSizeMsg{Width: cols, Height: rows})
}

// pump relays the child's output.
func (r *Relay) pump() {
	defer close(r.pumped)
	defer r.recoverPanic()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.ptmx.Read(buf)
		if n > 0 {
			r.output(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (r *Relay) output(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(b) > 0 {
		for r.paused && !r.closing {
			r.cond.Wait()
		}
		k := len(b)
		if r.wantsPaint() && !r.vt.ground() {
			// Write up to the end of the sequence in progress, then paint.
			k = r.vt.toGround(b)
		} else {
			r.vt.feed(b)
		}
		_, _ = r.opts.Out.Write(b[:k])
		b = b[k:]
		if r.vt.region && r.vt.bottom > 0 && r.vt.bottom <= r.rows-r.reserved {
			// The crew set a scroll region inside its rows: leave it.
			r.vt.region = false
		}
		r.flushLocked()
	}
}

func (r *Relay) wantsPaint() bool {
	return r.dirty || r.full || r.vt.repaint || r.vt.region
}

// flushLocked paints when something changed and the crew's output is at a
// point where crewgate may write, or when it has waited paintDeadline.
func (r *Relay) flushLocked() {
	if !r.wantsPaint() {
		return
	}
	now := time.Now()
	if r.dirtyAt.IsZero() {
		r.dirtyAt = now
	}
	if (!r.vt.ground() || r.vt.saved) && now.Sub(r.dirtyAt) < paintDeadline {
		return // the pump or the poller comes back
	}
	r.paintLocked(r.model.View())
}

// paintLocked draws view in the bottom rows, growing or shrinking them as
// described in the package doc.
func (r *Relay) paintLocked(view string) {
	lines := strings.Split(view, "\n")
	n := min(len(lines), max(r.rows-1, 0))
	lines = lines[len(lines)-n:]

	full := r.full
	setRegion := full || n != r.reserved || r.vt.region
	var b bytes.Buffer
	grow := n - r.reserved
	if full {
		b.WriteString("\x1b7\x1b[r\x1b8")
		grow = n
	}
	if grow > 0 {
		// Make room below the crew's cursor, scrolling its lines up.
		b.WriteString(strings.Repeat("\x1bD", grow))
		fmt.Fprintf(&b, "\x1b[%dA", grow)
	}
	b.WriteString("\x1b7\x1b[m")
	if full {
		// Erase below the crew's line: stale copies of our rows after a resize.
		b.WriteString("\x1bE\x1b[J")
	}
	b.WriteString("\x1b(B\x0f\x1b[?6l")
	if setRegion && n > 0 {
		fmt.Fprintf(&b, "\x1b[1;%dr", r.rows-n)
	}
	top := r.rows - n + 1
	for row := r.rows - r.reserved + 1; row < top; row++ {
		fmt.Fprintf(&b, "\x1b[%d;1H\x1b[2K", row) // rows given back to the crew
	}
	for i, l := range lines {
		fmt.Fprintf(&b, "\x1b[%d;1H\x1b[2K%s\x1b[m", top+i, l)
	}
	b.WriteString("\x1b8")
	_, _ = r.opts.Out.Write(b.Bytes())

	r.reserved, r.painted = n, view
	r.dirty, r.full, r.dirtyAt = false, false, time.Time{}
	// Our ESC ended whatever sequence the terminal was in, and our save
	// replaced the crew's.
	r.vt = vt{params: r.vt.params[:0]}
	paused := r.model.Prompting() && !r.closing
	if r.paused && !paused {
		r.cond.Broadcast()
	}
	r.paused = paused
}

// input routes crewgate's stdin: to the prompt while one is open, else to
// the crew.
func (r *Relay) input() {
	defer close(r.inDone)
	defer r.recoverPanic()
	buf := make([]byte, 4096)
	for {
		n, err := r.in.Read(buf)
		if n > 0 {
			r.mu.Lock()
			prompting := r.model.Prompting() && !r.closing
			if prompting {
				if k, ok := decodeKey(buf[:n]); ok {
					r.updateLocked(k)
				}
			}
			r.mu.Unlock()
			if !prompting {
				if _, werr := r.ptmx.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// openPTY opens a pseudo-terminal whose crewgate side is non-blocking, so
// that deadlines and Close end pending reads and writes.
func openPTY() (*os.File, *os.File, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	fd, err := unix.FcntlInt(ptmx.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	ptmx.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		tty.Close()
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), "ptmx"), tty, nil
}

func winsize(f *os.File) (rows, cols int, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var ws *unix.Winsize
	cerr := rc.Control(func(fd uintptr) { ws, err = unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ) })
	if cerr != nil {
		return 0, 0, cerr
	}
	if err != nil {
		return 0, 0, err
	}
	return int(ws.Row), int(ws.Col), nil
}

func setWinsize(f *os.File, rows, cols int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	cerr := rc.Control(func(fd uintptr) {
		err = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	})
	if cerr != nil {
		return cerr
	}
	return err
}
