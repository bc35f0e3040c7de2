package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/testenv"
	"github.com/crewgate/crewgate/internal/testidp"
)

// terminal is a real terminal: a private tmux server running one command.
type terminal struct {
	t    *testing.T
	sock string
}

func newTerminal(t *testing.T, env []string, args ...string) *terminal {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed; scripts/test.sh installs it")
		}
		t.Skip("tmux is not installed; run scripts/test.sh")
	}
	term := &terminal{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	line := []string{"env", "-i"}
	line = append(line, env...)
	line = append(line, "TERM=xterm-256color")
	line = append(line, args...)
	// Keep the pane after the command exits so its last screen can be read.
	term.tmux("new-session", "-d", "-x", "150", "-y", "30", strings.Join(quoteAll(line), " ")+"; echo EXIT=$?; sleep 60")
	t.Cleanup(func() { exec.Command("tmux", "-S", term.sock, "kill-server").Run() })
	return term
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

func (term *terminal) tmux(args ...string) string {
	term.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", term.sock}, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (term *terminal) screen() string { return term.tmux("capture-pane", "-p") }

// waitFor polls the screen until re matches, and returns the match.
func (term *terminal) waitFor(re string) []string {
	term.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := term.screen()
		if m := rx.FindStringSubmatch(s); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("the screen never showed %q:\n%s", re, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLoginOnATerminalShowsASpinner(t *testing.T) {
	testenv.RequireKeyring(t)
	idp := testidp.Start(t, testidp.WithInterval(2*time.Second))
	s := newSandbox(t)
	term := newTerminal(t, s.env, crewgateBin, "login", "--no-browser", "--issuer", idp.Issuer)

	code := term.waitFor(`Your one-time code: (\S+)`)[1]
	// The spinner moves and counts down while nothing else happens.
	first := term.waitFor(`([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]) Waiting for you to confirm in the browser \(code expires in \d+m\d+s; Ctrl-C cancels\)`)[1]
	time.Sleep(300 * time.Millisecond)
	second := term.waitFor(`([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]) Waiting for you`)[1]
	if first == second {
		t.Errorf("the spinner did not move: %q then %q", first, second)
	}
	if err := idp.Approve(code, "alice", testidp.Password); err != nil {
		t.Fatal(err)
	}
	term.waitFor(`EXIT=0`)
	screen := term.screen()
	if strings.Contains(screen, "Waiting for you") {
		t.Errorf("the spinner line was not cleared:\n%s", screen)
	}
	if !strings.Contains(screen, "Logged in as alice") {
		t.Errorf("screen:\n%s", screen)
	}
}

func TestSecretSetPromptHidesInput(t *testing.T) {
	testenv.RequireKeyring(t)
	s := newSandbox(t)
	term := newTerminal(t, s.env, crewgateBin, "secret", "set", "openai")
	term.waitFor(`Value for secret "openai" \(input hidden\):`)
	const value = "typed-secret-7c1e"
	term.tmux("send-keys", "-l", value)
	term.tmux("send-keys", "Enter")
	term.waitFor(`EXIT=0`)
	screen := term.screen()
	if strings.Contains(screen, value) {
		t.Errorf("the secret was echoed:\n%s", screen)
	}
	if got, err := keyringValue(t, s.profile+"/secret/openai"); err != nil || got != value {
		t.Errorf("keyring holds %q (%v), want the typed value", got, err)
	}
}

// crewScript is a crew that reads a line from the user, then sends requests
// that need approval, printing what it got.
const crewScript = `import os, sys, urllib.request, urllib.error
def send(tag, method):
    req = urllib.request.Request("https://api.example.com/v1/files/1", method=method,
        headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            print(tag, r.status, flush=True)
    except urllib.error.HTTPError as e:
        print(tag, e.code, e.headers.get("X-Crewgate-Error"), flush=True)
name = input("your name? ")
print("hello", name, flush=True)
send("first", "DELETE")
send("second", "DELETE")
send("third", "DELETE")
send("fourth", "PUT")
send("fifth", "PUT")
`

// TestRunApprovalsInARealTerminal runs a crew in tmux: the crew's own stdin
// works, and the prompt takes a (allow once), s (allow for the session,
// after which the same request passes unasked), d (deny), and times out.
func TestRunApprovalsInARealTerminal(t *testing.T) {
	requirePython(t, "json")
	api := newStandIn(t)
	s := runSandbox(t, api, `rules:
  - {name: confirm-deletes, action: approve, reason: deletes data, match: {methods: [DELETE]}}
  - {name: confirm-puts, action: approve, reason: overwrites data, match: {methods: [PUT]}}
`)
	crew := filepath.Join(s.home, "crew.py")
	os.WriteFile(crew, []byte(crewScript), 0o600)
	term := newTerminal(t, s.env, crewgateBin, "run", "--approve-timeout", "3s", "--", "/usr/bin/python3", crew)

	term.waitFor(`your name\?`)
	term.waitFor(`crewgate\s+session \S+\s+requests 0`) // the status line
	term.tmux("send-keys", "-l", "bob")
	term.tmux("send-keys", "Enter")
	term.waitFor(`hello bob`)

	answer := func(method, key, want string) {
		t.Helper()
		term.waitFor(`approve this request\?[\s\S]*` + method + ` https://api\.example\.com/v1/files/1[\s\S]*rule confirm-`)
		time.Sleep(700 * time.Millisecond) // a new prompt ignores keys for a moment
		term.tmux("send-keys", key)
		term.waitFor(want)
	}
	answer("DELETE", "a", `first 200`)
	answer("DELETE", "s", `second 200`)
	term.waitFor(`third 200`) // the session grant: no prompt
	answer("PUT", "d", `fourth 403 approval-denied`)
	term.waitFor(`approve this request\?[\s\S]*PUT`)
	term.waitFor(`fifth 403 approval-timeout`)
	term.waitFor(`EXIT=0`)
	screen := term.screen()
	if !strings.Contains(screen, "crewgate: session ") || !strings.Contains(screen, "2 denied") {
		t.Errorf("no summary line:\n%s", screen)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.auths) != 3 {
		t.Errorf("the stand-in got %d requests, want the 3 allowed ones", len(api.auths))
	}
}

// TestRunOnATerminalKeepsRedirectedStdout: with the TUI on, a crew whose
// stdout the user redirected still writes there.
func TestRunOnATerminalKeepsRedirectedStdout(t *testing.T) {
	testenv.RequireKeyring(t)
	s := newSandbox(t)
	out := filepath.Join(s.home, "out.txt")
	term := newTerminal(t, s.env, "sh", "-c", `"$0" run -- sh -c 'echo to-stdout; echo to-stderr >&2' > `+out, crewgateBin)
	term.waitFor(`EXIT=0`)
	b, err := os.ReadFile(out)
	if err != nil || strings.TrimSpace(string(b)) != "to-stdout" {
		t.Errorf("redirected stdout holds %q (%v)", b, err)
	}
	if screen := term.screen(); !strings.Contains(screen, "to-stderr") || strings.Contains(screen, "to-stdout") {
		t.Errorf("screen:\n%s", screen)
	}
}
