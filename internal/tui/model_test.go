package tui

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// decisions records what the model's commands decide.
type decisions struct {
	mu  sync.Mutex
	got []string
}

func (d *decisions) decide(id, choice string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, id+"="+choice)
	return nil
}

func (d *decisions) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.got, ",")
}

func prompt(id string) Prompt {
	return Prompt{
		ID: id, Method: "DELETE", URL: "https://crm.example.com/v1/contacts/" + id,
		Rule: "confirm-deletes", Reason: "deletes data in the CRM", Identity: "alice@example.com",
		Preview:  `{"id":42,"note":"[MASKED:email]"}`,
		Scope:    "DELETE crm.example.com:443/v1/contacts/" + id,
		Deadline: t0.Add(112 * time.Second),
	}
}

// step feeds msg to m and runs the commands it returns the way a runtime
// would, except that arming ticks are delivered at once.
func step(t *testing.T, m Model, msg tea.Msg) Model {
	t.Helper()
	next, cmd := m.Update(msg)
	m = next.(Model)
	for _, out := range run(cmd) {
		m = step(t, m, out)
	}
	return m
}

// run runs cmd, giving up on commands that wait longer than a moment (the
// arming tick of a long key delay).
func run(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	done := make(chan tea.Msg, 1)
	go func() { done <- cmd() }()
	var msg tea.Msg
	select {
	case msg = <-done:
	case <-time.After(100 * time.Millisecond):
		return nil
	}
	if b, ok := msg.(tea.BatchMsg); ok {
		var all []tea.Msg
		for _, c := range b {
			all = append(all, run(c)...)
		}
		return all
	}
	if msg == nil {
		return nil
	}
	return []tea.Msg{msg}
}

func runes(s string) tea.KeyMsg { return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)} }

func ready(t *testing.T, d *decisions, ps ...Prompt) Model {
	m := NewModel(d.decide, false, time.Millisecond)
	m = step(t, m, tea.WindowSizeMsg{Width: 100, Height: 30})
	m = step(t, m, StatusMsg{Session: "01JTESTSESSION", Requests: 12, Denied: 1, Masked: 3})
	return step(t, m, PromptsMsg{Pending: ps, Now: t0})
}

func TestKeysDecide(t *testing.T) {
	for _, tc := range []struct {
		key  tea.KeyMsg
		want string
	}{
		{runes("a"), "p1=once"},
		{runes("s"), "p1=session"},
		{runes("d"), "p1=deny"},
		{tea.KeyMsg{Type: tea.KeyEsc}, "p1=deny"},
		{tea.KeyMsg{Type: tea.KeyCtrlC}, "p1=deny"},
		{runes("x"), ""},
		{runes("A"), ""},
		{tea.KeyMsg{Type: tea.KeyEnter}, ""},
		{tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("a"), Alt: true}, ""},
	} {
		t.Run(tc.key.String(), func(t *testing.T) {
			var d decisions
			m := ready(t, &d, prompt("p1"))
			m = step(t, m, tc.key)
			if got := d.String(); got != tc.want {
				t.Errorf("decided %q, want %q", got, tc.want)
			}
			if m.Prompting() != (tc.want == "") {
				t.Errorf("Prompting() = %v after %q", m.Prompting(), tc.want)
			}
		})
	}
}

func TestNoKeysWithoutPrompt(t *testing.T) {
	var d decisions
	m := ready(t, &d)
	if m.Prompting() {
		t.Fatal("prompting with nothing pending")
	}
	m = step(t, m, runes("a"))
	m = step(t, m, tea.KeyMsg{Type: tea.KeyEsc})
	if d.String() != "" {
		t.Errorf("decided %q with no prompt", d.String())
	}
}

// A key typed for the crew just before the prompt appeared must not decide
// it; Esc and Ctrl-C deny at once (fail closed).
func TestKeyDelay(t *testing.T) {
	var d decisions
	m := NewModel(d.decide, false, time.Hour)
	next, cmd := m.Update(PromptsMsg{Pending: []Prompt{prompt("p1")}, Now: t0})
	m = next.(Model)
	if cmd == nil {
		t.Fatal("no arming command for a new prompt")
	}
	for _, k := range []string{"a", "s", "d"} {
		m = step(t, m, runes(k))
	}
	if d.String() != "" {
		t.Fatalf("decided %q before the key delay", d.String())
	}
	m = step(t, m, armMsg("p1"))
	m = step(t, m, runes("a"))
	if d.String() != "p1=once" {
		t.Fatalf("decided %q after arming", d.String())
	}

	var d2 decisions
	m = NewModel(d2.decide, false, time.Hour)
	m = step(t, m, PromptsMsg{Pending: []Prompt{prompt("p1")}, Now: t0})
	m = step(t, m, tea.KeyMsg{Type: tea.KeyCtrlC})
	if d2.String() != "p1=deny" {
		t.Fatalf("Ctrl-C before arming decided %q", d2.String())
	}
}

func TestQueue(t *testing.T) {
	var d decisions
	m := ready(t, &d, prompt("p1"), prompt("p2"), prompt("p3"))
	if v := m.View(); !strings.Contains(v, "(1 of 3,") || !strings.Contains(v, "contacts/p1") {
		t.Fatalf("view:\n%s", v)
	}
	if v := m.View(); !strings.Contains(v, "pending 3") {
		t.Errorf("status line does not count 3 pending:\n%s", v)
	}
	m = step(t, m, runes("a"))
	// The next one shows before the source has caught up.
	if v := m.View(); !strings.Contains(v, "(1 of 2,") || !strings.Contains(v, "contacts/p2") {
		t.Fatalf("after deciding p1:\n%s", v)
	}
	// A stale snapshot that still lists p1 does not bring it back.
	m = step(t, m, PromptsMsg{Pending: []Prompt{prompt("p1"), prompt("p2"), prompt("p3")}, Now: t0})
	if v := m.View(); !strings.Contains(v, "contacts/p2") {
		t.Fatalf("p1 came back:\n%s", v)
	}
	m = step(t, m, runes("d"))
	m = step(t, m, PromptsMsg{Pending: []Prompt{prompt("p3")}, Now: t0})
	m = step(t, m, runes("s"))
	if got := d.String(); got != "p1=once,p2=deny,p3=session" {
		t.Errorf("decisions %q", got)
	}
	m = step(t, m, PromptsMsg{Now: t0})
	if m.Prompting() || len(m.decided) != 0 {
		t.Errorf("prompting=%v decided=%v after the queue emptied", m.Prompting(), m.decided)
	}
}

func TestCountdown(t *testing.T) {
	var d decisions
	m := ready(t, &d, prompt("p1"))
	if v := m.View(); !strings.Contains(v, "1m52s left") {
		t.Fatalf("view:\n%s", v)
	}
	m = step(t, m, TickMsg(t0.Add(2500*time.Millisecond)))
	if v := m.View(); !strings.Contains(v, "1m49s left") {
		t.Fatalf("view after 2.5s:\n%s", v)
	}
	m = step(t, m, TickMsg(t0.Add(100*time.Second)))
	if v := m.View(); !strings.Contains(v, "12s left") {
		t.Fatalf("view after 100s:\n%s", v)
	}
	m = step(t, m, TickMsg(t0.Add(200*time.Second)))
	if v := m.View(); !strings.Contains(v, "0s left") {
		t.Fatalf("view past the deadline:\n%s", v)
	}
}

func TestResize(t *testing.T) {
	var d decisions
	m := ready(t, &d, prompt("p1"))
	full := strings.Split(m.View(), "\n")
	if len(full) != 8 {
		t.Fatalf("%d lines:\n%s", len(full), m.View())
	}
	m = step(t, m, tea.WindowSizeMsg{Width: 30, Height: 30})
	for _, l := range strings.Split(m.View(), "\n") {
		if w := len([]rune(l)); w > 29 {
			t.Errorf("line of width %d on a 30-column terminal: %q", w, l)
		}
	}
	m = step(t, m, tea.WindowSizeMsg{Width: 100, Height: 5})
	v := m.View()
	lines := strings.Split(v, "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines on a 5-row terminal:\n%s", len(lines), v)
	}
	// What to answer and what `s` covers outlast the status line.
	for _, want := range []string{"approve this request?", "DELETE https://", "allow once", "s allow DELETE crm.example.com:443/v1/contacts/p1 for the session (rule confirm-deletes)"} {
		if !strings.Contains(v, want) {
			t.Errorf("short view lacks %q:\n%s", want, v)
		}
	}
	m = step(t, m, tea.WindowSizeMsg{Width: 100, Height: 2})
	if v := m.View(); strings.Count(v, "\n") != 0 || !strings.Contains(v, "approve") {
		t.Errorf("2-row view:\n%s", v)
	}
}

func TestStripsControlCharacters(t *testing.T) {
	evil := Prompt{
		ID: "x", Method: "POST\x1b[2J", URL: "https://h.example/\x1b]0;owned\x07path\u202e",
		Rule: "r\x9b31m", Reason: "why\r\nnot", Identity: "eve\x1bP+q\x1b\\",
		Preview: "{\"a\":\"\x1b[31mred\x1b[0m\x1b]52;c;ZXZpbA==\x07\x07\x08\x7f\xff\"}",
	}
	for _, color := range []bool{false, true} {
		var d decisions
		m := NewModel(d.decide, color, 0)
		m = step(t, m, tea.WindowSizeMsg{Width: 200, Height: 30})
		m = step(t, m, StatusMsg{Session: "s\x1b[5mid"})
		m = step(t, m, PromptsMsg{Pending: []Prompt{evil}, Now: t0})
		v := m.View()
		// The only escapes left are the styles' own SGR sequences.
		rest := regexp.MustCompile(`\x1b\[[0-9;]*m`).ReplaceAllString(v, "")
		for i, r := range rest {
			if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u202e' || r == '\ufffd' {
				t.Errorf("colour=%v: control %U at %d in %q", color, r, i, rest)
			}
		}
		if !color && rest != v {
			t.Errorf("escapes without colour: %q", v)
		}
		for _, want := range []string{"POST[2J", "red[0m", "why  not"} {
			if !strings.Contains(rest, want) {
				t.Errorf("colour=%v: %q missing from %q", color, want, rest)
			}
		}
	}
}

func TestCleanCaps(t *testing.T) {
	long := strings.Repeat("é", 1000)
	got := clean(long, maxPreview)
	if n := len([]rune(got)); n != maxPreview+1 || !strings.HasSuffix(got, "…") {
		t.Errorf("clean kept %d runes: %q", n, got)
	}
	if got := clean("a\tb\x00c\u2066d", 10); got != "a bcd" {
		t.Errorf("clean = %q", got)
	}
}

func TestGolden(t *testing.T) {
	for _, color := range []bool{false, true} {
		suffix := "plain"
		if color {
			suffix = "color"
		}
		var d decisions
		m := NewModel(d.decide, color, 0)
		m = step(t, m, tea.WindowSizeMsg{Width: 100, Height: 30})
		m = step(t, m, StatusMsg{Session: "01JTESTSESSION", Requests: 12, Denied: 1, Masked: 3})
		m = step(t, m, PromptsMsg{Now: t0})
		golden(t, "status_"+suffix, m.View())
		m = step(t, m, PromptsMsg{Pending: []Prompt{prompt("p1"), prompt("p2"), prompt("p3")}, Now: t0})
		golden(t, "prompt_"+suffix, m.View())
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}
