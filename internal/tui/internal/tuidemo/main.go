//go:build unix

// Command tuidemo runs sh on a tui.Relay with an approval queue of its own
// that asks one question after a delay, and prints the decisions when sh
// exits. The tmux test of package tui drives it; it is also a quick way to
// look at the terminal by hand.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crewgate/crewgate/internal/tui"
)

func main() {
	delay := flag.Duration("delay", 1500*time.Millisecond, "when the request that needs approval arrives")
	keyDelay := flag.Duration("key-delay", 0, "tui.Options.KeyDelay")
	color := flag.Bool("color", true, "draw in colour")
	timeout := flag.Duration("timeout", 2*time.Minute, "time the prompt allows")
	flag.Parse()
	os.Exit(run(*delay, *keyDelay, *timeout, *color))
}

func run(delay, keyDelay, timeout time.Duration, color bool) int {
	q := &queue{changed: make(chan struct{})}
	r, err := tui.Start(tui.Options{Source: q, Status: q.status, In: os.Stdin, Out: os.Stderr, Color: color, KeyDelay: keyDelay})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tuidemo:", err)
		return 1
	}
	defer r.Close()

	sh := exec.Command("sh")
	sh.Env = append(os.Environ(), "PS1=demo$ ")
	sh.Stdin, sh.Stdout, sh.Stderr = r.TTY(), r.TTY(), r.TTY()
	sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := sh.Start(); err != nil {
		r.Close()
		fmt.Fprintln(os.Stderr, "tuidemo:", err)
		return 1
	}
	go func() {
		time.Sleep(delay)
		q.add(tui.Prompt{
			ID: "demo-1", Method: "DELETE", URL: "https://crm.example.com/v1/contacts/42",
			Rule: "confirm-deletes", Reason: "deletes data in the CRM", Identity: "alice@example.com",
			Scope: "DELETE crm.example.com:443/v1/contacts/42",
			// The escape sequences must show as text, never act.
			Preview:  "{\"id\":42,\"email\":\"[MASKED:email]\",\"x\":\"\x1b[2J\x1b]0;owned\x07\"}",
			Deadline: time.Now().Add(timeout),
		})
	}()
	err = sh.Wait()
	if err := r.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "tuidemo: restore the terminal:", err)
	}
	fmt.Printf("decisions: %s\n", q.decisions())
	if err != nil {
		return 1
	}
	return 0
}

// queue is a stand-in for crewgate's approval queue.
type queue struct {
	mu       sync.Mutex
	pending  []tui.Prompt
	changed  chan struct{}
	decided  []string
	requests int64
}

func (q *queue) Pending() []tui.Prompt {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.pending)
}

func (q *queue) Changed() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.changed
}

func (q *queue) add(p tui.Prompt) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.requests++
	q.pending = append(q.pending, p)
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *queue) Decide(id, choice string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.decided = append(q.decided, id+"="+choice)
	q.pending = slices.DeleteFunc(q.pending, func(p tui.Prompt) bool { return p.ID == id })
	close(q.changed)
	q.changed = make(chan struct{})
	return nil
}

func (q *queue) decisions() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return strings.Join(q.decided, ",")
}

func (q *queue) status() tui.Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	denied := int64(0)
	for _, d := range q.decided {
		if strings.HasSuffix(d, "=deny") {
			denied++
		}
	}
	return tui.Status{Session: "demo-session", Requests: q.requests, Denied: denied}
}
