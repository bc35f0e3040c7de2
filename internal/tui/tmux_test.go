//go:build unix

package tui

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func requireTmux(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed; scripts/test.sh installs it")
		}
		t.Skip("tmux is not installed")
	}
}

// tmuxTerm is a real terminal: a private tmux server running one command.
type tmuxTerm struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T, cols, rows int, args ...string) *tmuxTerm {
	t.Helper()
	requireTmux(t)
	term := &tmuxTerm{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	line := []string{"env", "-i", "PATH=" + os.Getenv("PATH"), "TERM=xterm-256color"}
	var quoted []string
	for _, a := range append(line, args...) {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	// Keep the pane after the command exits so its last screen can be read.
	term.tmux("new-session", "-d", "-x", strconv.Itoa(cols), "-y", strconv.Itoa(rows), strings.Join(quoted, " ")+"; echo EXIT=$?; sleep 60")
	t.Cleanup(func() { exec.Command("tmux", "-S", term.sock, "kill-server").Run() })
	return term
}

func (term *tmuxTerm) tmux(args ...string) string {
	term.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", term.sock}, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (term *tmuxTerm) screen() string { return term.tmux("capture-pane", "-p") }

func (term *tmuxTerm) lines() []string {
	return strings.Split(strings.TrimSuffix(term.screen(), "\n"), "\n")
}

// waitFor polls the screen until re matches, and returns the screen.
func (term *tmuxTerm) waitFor(re string) string {
	term.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := term.screen()
		if rx.MatchString(s) {
			return s
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("the screen never showed %q:\n%s", re, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tuidemo")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/tuidemo").CombinedOutput()
	if err != nil {
		t.Fatalf("build tuidemo: %v\n%s", err, out)
	}
	return bin
}

// TestTmux answers a prompt in a real terminal: the crew's lines stay in
// view above the prompt, the key goes to the prompt, and the terminal is
// whole again when the run ends.
func TestTmux(t *testing.T) {
	requireTmux(t)
	bin := buildDemo(t)
	term := newTmux(t, 100, 20, bin, "-delay", "2s", "-key-delay", "300ms")

	term.waitFor(`(?m)^demo\$`)
	ls := term.lines()
	if last := ls[len(ls)-1]; !strings.HasPrefix(last, "crewgate  session demo-session  requests 0") {
		t.Fatalf("the last row is not the status line:\n%s", term.screen())
	}
	term.tmux("send-keys", "-l", "echo hi-$((1+1))")
	term.tmux("send-keys", "Enter")
	term.waitFor(`(?m)^hi-2$`)

	s := term.waitFor(`crewgate: approve this request\? \(1 of 1, 1m\d\ds left\)`)
	for _, want := range []string{
		"DELETE https://crm.example.com/v1/contacts/42",
		"rule confirm-deletes: deletes data in the CRM",
		"as alice@example.com",
		`"x":"[2J]0;owned"`, // the body's escapes are shown inert
		"a allow once   d/Esc deny",
		"s allow DELETE crm.example.com:443/v1/contacts/42 for the session (rule confirm-deletes)",
		"pending 1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the prompt lacks %q:\n%s", want, s)
		}
	}
	if !regexp.MustCompile(`(?m)^hi-2$`).MatchString(s) {
		t.Errorf("the prompt covered the crew's output:\n%s", s)
	}

	time.Sleep(400 * time.Millisecond) // past the key delay
	term.tmux("send-keys", "a")
	s = term.waitFor(`pending 0`)
	if strings.Contains(s, "approve this request") {
		t.Errorf("the prompt stayed:\n%s", s)
	}
	term.tmux("send-keys", "-l", "echo typed")
	term.tmux("send-keys", "Enter")
	s = term.waitFor(`(?m)^typed$`)
	if strings.Contains(s, "aecho typed") {
		t.Errorf("the prompt's key reached the crew:\n%s", s)
	}

	// The crew erasing the screen, and the window changing size, leave one
	// status line, on the last row.
	term.tmux("send-keys", "-l", "seq 1 30; clear")
	term.tmux("send-keys", "Enter")
	term.waitFor(`\A\s*demo\$\s*\n`)
	statusLast := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s := term.screen()
			ls := term.lines()
			if strings.HasPrefix(ls[len(ls)-1], "crewgate  session") && strings.Count(s, "crewgate  session") == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want one status line, on the last row:\n%s", s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	statusLast()
	term.tmux("send-keys", "-l", "seq 1 30")
	term.tmux("send-keys", "Enter")
	term.waitFor(`(?m)^30$`)
	for _, rows := range []int{26, 12} {
		term.tmux("resize-window", "-y", strconv.Itoa(rows))
		// Output that races the resize lands wherever the terminal put it;
		// give the relay its poll interval before the crew prints again.
		time.Sleep(2 * pollInterval)
		statusLast()
		term.tmux("send-keys", "-l", "stty size")
		term.tmux("send-keys", "Enter")
		term.waitFor(`(?m)^` + strconv.Itoa(rows-1) + ` 100$`)
		statusLast()
	}

	term.tmux("send-keys", "-l", "exit")
	term.tmux("send-keys", "Enter")
	s = term.waitFor(`(?m)^decisions: demo-1=once\nEXIT=0$`)
	if strings.Contains(s, "crewgate  session") {
		t.Errorf("the status line was left on the screen:\n%s", s)
	}
}
