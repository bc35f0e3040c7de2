package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// DefaultGrace is how long a child has between SIGTERM and SIGKILL when the
// context is cancelled and Cmd.Grace is zero.
const DefaultGrace = 5 * time.Second

// Exit codes for a child that could not be started, as a POSIX shell uses them.
const (
	CodeNotFound      = 127
	CodeNotExecutable = 126
)

var (
	// ErrNotFound is wrapped by the error Run returns when the command does not exist.
	ErrNotFound = errors.New("command not found")
	// ErrNotExecutable is wrapped by the error Run returns when the command
	// exists but cannot be executed.
	ErrNotExecutable = errors.New("not executable")
)

// StartError reports a child that could not be started.
type StartError struct {
	Name string // the command as given (Args[0])
	Code int    // the exit code crewgate should exit with: 127 or 126
	Err  error  // wraps ErrNotFound or ErrNotExecutable, or the start failure
}

func (e *StartError) Error() string { return fmt.Sprintf("%s: %v", e.Name, e.Err) }

func (e *StartError) Unwrap() error { return e.Err }

// Cmd is a child to run.
type Cmd struct {
	Args []string // Args[0] is looked up in PATH of Env
	// Env is the child's whole environment, usually from BuildEnv. nil means
	// an empty environment, never crewgate's own.
	Env []string
	Dir string
	// Stdin, Stdout and Stderr default to crewgate's own os.Stdin, os.Stdout
	// and os.Stderr when nil; *os.File values are passed as file descriptors,
	// so the child sees the terminal itself.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Foreground reports that crewgate's stdin is a terminal shared with the
	// child, so terminal-generated signals (Ctrl-C -> SIGINT, Ctrl-\ -> SIGQUIT)
	// already reach the child's process group: forwarding them would double
	// them. IsForeground tells.
	Foreground bool
	// TTY, when set, is a terminal, typically the replica side of a
	// pseudo-terminal crewgate relays, that becomes the controlling terminal
	// of the child in a session of its own, and its Stdin, Stdout and Stderr
	// where those are nil. The terminal then turns the keys crewgate relays
	// (Ctrl-C, Ctrl-\) into the child's signals and crewgate's own terminal
	// reaches only crewgate, so Foreground should be false. Run does not close
	// it. Unix only.
	TTY *os.File
	// Grace is how long the child may take to exit after the SIGTERM that
	// context cancellation sends, before it is killed. Zero means DefaultGrace.
	Grace time.Duration
}

// Run starts the child and waits for it.
//
// While the child runs, SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to crewgate
// are forwarded to it, and only those: a catch-all would forward the runtime's
// own SIGURG and swallow SIGCHLD and SIGTTIN. In Foreground mode SIGINT and
// SIGQUIT are not forwarded, since the terminal delivered them to the child
// already. Either way crewgate does not die from these signals while the
// child runs: it keeps serving the proxy until the child exits. Callers should
// therefore not turn SIGINT or SIGTERM into a cancellation of ctx for the
// child's lifetime, or the child would receive them twice.
//
// Cancelling ctx sends the child SIGTERM and, after Grace, SIGKILL; it is
// meant for crewgate's own reasons to stop, such as its proxy failing. On
// Windows the child is killed at once.
//
// On Linux the child receives SIGKILL when crewgate dies (Pdeathsig), even
// from SIGKILL. Elsewhere a child outlives a crewgate that is killed outright.
//
// On Linux crewgate becomes a subreaper before the child starts (it stays
// one afterwards: the setting is the process's): descendants of the child
// whose parent exits are reparented to crewgate, so IsDescendant still finds
// them in its tree, and while the child runs, Run reaps those that exit.
//
// Run returns the exit code crewgate should exit with: the child's own, or
// 128+N when the child died of signal N. err is non-nil only when the child
// could not be started, or in the unlikely case that waiting for it failed
// (code 1). A start failure is ctx's error when ctx was done already, or a
// *StartError: code 127 when the command was not found (wrapping
// ErrNotFound), 126 when it could not be executed (wrapping ErrNotExecutable
// or the start failure).
func Run(ctx context.Context, c Cmd) (code int, err error) {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return CodeNotFound, &StartError{Name: `""`, Code: CodeNotFound, Err: fmt.Errorf("%w: no command given", ErrNotFound)}
	}
	env := c.Env
	if env == nil {
		env = []string{}
	}
	path, serr := lookPath(c.Args[0], env, c.Dir)
	if serr != nil {
		return serr.Code, serr
	}
	if err := ctx.Err(); err != nil {
		return 1, fmt.Errorf("start %s: %w", c.Args[0], err)
	}
	grace := c.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	var stdin io.Reader = os.Stdin
	var stdout, stderr io.Writer = os.Stdout, os.Stderr
	if c.TTY != nil {
		stdin, stdout, stderr = c.TTY, c.TTY, c.TTY
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   c.Args,
		Env:    env,
		Dir:    c.Dir,
		Stdin:  orDefault(c.Stdin, stdin),
		Stdout: orDefault(c.Stdout, stdout),
		Stderr: orDefault(c.Stderr, stderr),
		// Only for non-file streams: a background grandchild holding the
		// output pipe open must not keep crewgate waiting forever.
		WaitDelay:   grace,
		SysProcAttr: sysProcAttr(),
	}
	if c.TTY != nil {
		fd := slices.IndexFunc([]any{cmd.Stdin, cmd.Stdout, cmd.Stderr}, func(s any) bool { return s == any(c.TTY) })
		if fd < 0 {
			return CodeNotExecutable, &StartError{Name: c.Args[0], Code: CodeNotExecutable, Err: errors.New("the TTY must be one of the child's standard streams")}
		}
		attr, err := withTTY(cmd.SysProcAttr, fd)
		if err != nil {
			return CodeNotExecutable, &StartError{Name: c.Args[0], Code: CodeNotExecutable, Err: err}
		}
		cmd.SysProcAttr = attr
	}

	// Catch the signals before the child exists: one arriving between Start
	// and the forwarding loop must neither kill crewgate nor be lost.
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, notifySignals...)
	defer signal.Stop(sigc)

	// Before the child exists, so that none of its descendants can leave
	// crewgate's tree by a double fork.
	if err := becomeSubreaper(); err != nil {
		return 1, fmt.Errorf("becoming the subreaper of %s: %w", c.Args[0], err)
	}
	// See lockThread: the thread that starts the child must outlive it.
	unlock := lockThread()
	defer unlock()
	if err := cmd.Start(); err != nil {
		return CodeNotExecutable, &StartError{Name: c.Args[0], Code: CodeNotExecutable, Err: err}
	}
	stopReaping := reapOrphans(cmd.Process.Pid)
	defer stopReaping()
	t := newTree(cmd.Process.Pid)

	stop := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		supervise(ctx, cmd.Process, t, sigc, c.Foreground, grace, stop)
	}()
	werr := cmd.Wait()
	close(stop)
	<-forwarded
	// No descendant outlives the crew: daemons it left (setsid, double
	// fork, TERM ignored) get SIGTERM, then SIGKILL after grace.
	t.end(grace)

	if cmd.ProcessState == nil {
		// Start succeeded, so only a failing wait(2) lands here.
		return 1, fmt.Errorf("wait for %s: %w", c.Args[0], werr)
	}
	return exitCode(cmd.ProcessState), nil
}

// supervise forwards signals to p and the rest of its tree, and turns ctx
// cancellation into SIGTERM, then SIGKILL after grace, until stop is
// closed. A forwarded signal (TERM, HUP; INT and QUIT when headless) also
// arms that SIGKILL for the whole tree, so that a daemon ignoring it does
// not keep the session alive; a second headless INT kills at once.
func supervise(ctx context.Context, p *os.Process, t tree, sigc <-chan os.Signal, foreground bool, grace time.Duration, stop <-chan struct{}) {
	done := ctx.Done()
	var kill <-chan time.Time
	arm := func() {
		if kill == nil {
			kill = time.NewTimer(grace).C
		}
	}
	killAll := func() {
		_ = p.Kill()
		t.signal(syscall.SIGKILL)
	}
	ints := 0
	for {
		select {
		case <-stop:
			return
		case s := <-sigc:
			// On a terminal, ^C and ^\ are the crew's (the terminal
			// delivered them to it): they are not forwarded and end
			// nothing, so an interactive crew keeps its ^C.
			if !shouldForward(s, foreground) {
				continue
			}
			if s == os.Interrupt {
				if ints++; ints > 1 {
					killAll()
					continue
				}
			}
			_ = p.Signal(s) // the child may just have exited
			if ss, ok := s.(syscall.Signal); ok {
				t.signal(ss)
			}
			arm()
		case <-done:
			done = nil
			if terminate(p) != nil {
				killAll()
				continue
			}
			t.signal(syscall.SIGTERM)
			arm()
		case <-kill:
			kill = nil
			killAll()
		}
	}
}

// lookPath finds name the way a shell would for the child: in the PATH of
// env, relative paths against dir.
func lookPath(name string, env []string, dir string) (string, *StartError) {
	fail := func(code int, err error) (string, *StartError) {
		return "", &StartError{Name: name, Code: code, Err: err}
	}
	if isPathName(name) {
		p := name
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		found, err := findExecutable(p)
		switch {
		case errors.Is(err, ErrNotFound):
			return fail(CodeNotFound, fmt.Errorf("%w: no such file", ErrNotFound))
		case err != nil:
			return fail(CodeNotExecutable, err)
		}
		if p == name {
			return found, nil
		}
		return name + found[len(p):], nil // keep the name relative to Dir; add any extension found
	}

	pathList, _ := lookupEnv(env, "PATH", runtime.GOOS == "windows")
	var denied error
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			d = "." // POSIX: an empty PATH entry is the current directory
		}
		p := filepath.Join(d, name)
		check := p
		if !filepath.IsAbs(p) && dir != "" {
			check = filepath.Join(dir, p)
		}
		found, err := findExecutable(check)
		switch {
		case err == nil && !filepath.IsAbs(p):
			// As os/exec does since Go 1.19: a relative PATH entry would run
			// whatever the working directory holds under that name.
			return fail(CodeNotExecutable, fmt.Errorf("%w: found as %s through a relative PATH entry; give the path instead", exec.ErrDot, found))
		case err == nil:
			return found, nil
		case denied == nil && !errors.Is(err, ErrNotFound):
			denied = err
		}
	}
	if denied != nil {
		return fail(CodeNotExecutable, denied)
	}
	return fail(CodeNotFound, fmt.Errorf("%w in the child's PATH", ErrNotFound))
}

// orDefault returns v, or def when v is nil.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
