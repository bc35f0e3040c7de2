package tui

import (
	"fmt"
	"io"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"
)

// Prompt is one request waiting for the human.
type Prompt struct {
	ID, Method, URL, Rule, Reason, Identity, Preview string
	// Scope is what "allow for the session" covers besides the rule, e.g.
	// "DELETE crm.example.com:443/v1/records/42", so that the prompt can say
	// exactly what `s` lets through unasked.
	Scope    string
	Deadline time.Time // when the request is denied by timeout
}

// Status is what the status line counts.
type Status struct {
	Session                  string
	Requests, Denied, Masked int64
}

// The choices passed to Source.Decide.
const (
	ChoiceOnce    = "once"
	ChoiceSession = "session"
	ChoiceDeny    = "deny"
)

// DefaultKeyDelay is how long a new prompt ignores `a`, `s` and `d`, so that
// a key typed for the crew just before it appeared does not decide it.
const DefaultKeyDelay = 500 * time.Millisecond

// PromptsMsg tells the model what waits now, oldest first.
type PromptsMsg struct {
	Pending []Prompt
	Now     time.Time
}

// StatusMsg updates the counts on the status line.
type StatusMsg Status

// TickMsg moves the model's clock (the prompt's countdown).
type TickMsg time.Time

// armMsg enables the decision keys of one prompt after the key delay.
type armMsg string

// decidedMsg reports the outcome of Source.Decide.
type decidedMsg struct {
	id  string
	err error
}

// Model is the status line and approval prompt. Update is pure: deciding is
// done by the tea.Cmd it returns. The zero Model is not usable; see NewModel.
type Model struct {
	decide   func(id, choice string) error
	keyDelay time.Duration
	st       styles

	width, height int
	now           time.Time
	status        Status
	pending       []Prompt
	decided       map[string]bool // answered here, until the source drops them
	armed         string
	errText       string
}

// NewModel returns a model whose keys call decide (from a tea.Cmd). color
// selects ANSI colours; keyDelay <= 0 means no delay.
func NewModel(decide func(id, choice string) error, color bool, keyDelay time.Duration) Model {
	return Model{decide: decide, keyDelay: keyDelay, st: newStyles(color)}
}

// Init implements tea.Model.
func (m Model) Init() tea.Cmd { return nil }

// Prompting reports whether a prompt is open, that is whether keys belong to
// the model rather than the crew.
func (m Model) Prompting() bool {
	_, ok := m.current()
	return ok
}

func (m Model) current() (Prompt, bool) {
	for _, p := range m.pending {
		if !m.decided[p.ID] {
			return p, true
		}
	}
	return Prompt{}, false
}

func (m Model) waiting() int {
	n := 0
	for _, p := range m.pending {
		if !m.decided[p.ID] {
			n++
		}
	}
	return n
}

// Update implements tea.Model.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	before, _ := m.current()
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case StatusMsg:
		m.status = Status(msg)
	case TickMsg:
		m.now = time.Time(msg)
	case PromptsMsg:
		m.now = msg.Now
		m.pending = msg.Pending
		// Forget answers the source has dropped, so the map stays small.
		decided := map[string]bool{}
		for _, p := range m.pending {
			if m.decided[p.ID] {
				decided[p.ID] = true
			}
		}
		m.decided = decided
	case armMsg:
		if p, ok := m.current(); ok && p.ID == string(msg) {
			m.armed = p.ID
		}
	case decidedMsg:
		if msg.err != nil {
			m.errText = "decision not recorded: " + msg.err.Error()
		}
	case tea.KeyMsg:
		return m.key(msg)
	}
	cmd := m.arm(before)
	return m, cmd
}

// arm starts the key delay when the prompt shown changed.
func (m *Model) arm(before Prompt) tea.Cmd {
	p, ok := m.current()
	if !ok || p.ID == before.ID || p.ID == m.armed {
		return nil
	}
	if m.keyDelay <= 0 {
		m.armed = p.ID
		return nil
	}
	id := p.ID
	return tea.Tick(m.keyDelay, func(time.Time) tea.Msg { return armMsg(id) })
}

func (m Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	p, ok := m.current()
	if !ok {
		return m, nil
	}
	armed := m.armed == p.ID
	var choice string
	switch {
	case k.Type == tea.KeyEsc || k.Type == tea.KeyCtrlC:
		choice = ChoiceDeny
	case k.Type != tea.KeyRunes || len(k.Runes) != 1 || k.Alt || !armed:
		return m, nil
	case k.Runes[0] == 'a':
		choice = ChoiceOnce
	case k.Runes[0] == 's':
		choice = ChoiceSession
	case k.Runes[0] == 'd':
		choice = ChoiceDeny
	default:
		return m, nil
	}
	decided := make(map[string]bool, len(m.decided)+1)
	for id := range m.decided {
		decided[id] = true
	}
	decided[p.ID] = true
	m.decided = decided
	m.errText = ""
	decide, id := m.decide, p.ID
	cmd := func() tea.Msg {
		if decide == nil {
			return nil
		}
		return decidedMsg{id: id, err: decide(id, choice)}
	}
	next := m.arm(p)
	return m, tea.Batch(cmd, next)
}

// View implements tea.Model: the prompt, when one is open, above the status
// line; one terminal row per line, each cut to the width.
func (m Model) View() string {
	var lines []string
	if p, ok := m.current(); ok {
		lines = m.promptLines(p)
	} else {
		lines = []string{m.statusLine()}
	}
	if m.width > 1 {
		for i, l := range lines {
			lines[i] = ansi.Truncate(l, m.width-1, "…")
		}
	}
	return strings.Join(lines, "\n")
}

func (m Model) statusLine() string {
	s := m.st
	n := m.waiting()
	parts := []string{
		s.brand.Render("crewgate"),
		s.label.Render("session ") + s.value.Render(clean(m.status.Session, 40)),
		s.label.Render("requests ") + s.value.Render(fmt.Sprint(m.status.Requests)),
		s.label.Render("denied ") + s.count(m.status.Denied, s.bad).Render(fmt.Sprint(m.status.Denied)),
		s.label.Render("masked ") + s.value.Render(fmt.Sprint(m.status.Masked)),
		s.label.Render("pending ") + s.count(int64(n), s.warn).Render(fmt.Sprint(n)),
	}
	line := strings.Join(parts, s.sep.Render("  "))
	if m.errText != "" {
		line += s.sep.Render("  ") + s.bad.Render(clean(m.errText, maxField))
	}
	return line
}

// promptLines lays out one prompt. On a short terminal the least needed
// lines go first, so that what and how to answer always show.
func (m Model) promptLines(p Prompt) []string {
	s := m.st
	type line struct {
		text string
		prio int // lower is kept longer
	}
	head := s.title.Render("crewgate: approve this request?")
	info := fmt.Sprintf("%d of %d", 1, m.waiting())
	if !p.Deadline.IsZero() && !m.now.IsZero() {
		info += ", " + left(p.Deadline.Sub(m.now)) + " left"
	}
	ls := []line{{head + " " + s.label.Render("("+info+")"), 0}}
	ls = append(ls, line{"  " + s.method.Render(clean(p.Method, 16)) + " " + s.value.Render(clean(p.URL, maxURL)), 0})
	if p.Rule != "" || p.Reason != "" {
		t := "  " + s.label.Render("rule ") + s.value.Render(clean(p.Rule, maxField))
		if p.Reason != "" {
			t += s.label.Render(": ") + s.value.Render(clean(p.Reason, maxField))
		}
		ls = append(ls, line{t, 3})
	}
	if p.Identity != "" {
		ls = append(ls, line{"  " + s.label.Render("as ") + s.value.Render(clean(p.Identity, maxField)), 4})
	}
	if p.Preview != "" {
		ls = append(ls, line{"  " + s.label.Render("body ") + s.preview.Render(clean(p.Preview, maxPreview)), 5})
	}
	ls = append(ls, line{"  " + s.key.Render("a") + " allow once   " + s.key.Render("d") + "/" + s.key.Render("Esc") + " deny", 1})
	ls = append(ls, line{"  " + s.key.Render("s") + " " + m.sessionText(p), 1})
	ls = append(ls, line{m.statusLine(), 2})

	room := len(ls)
	if m.height > 0 {
		room = max(1, m.height-1) // the crew keeps at least one row
	}
	for drop := 5; len(ls) > room && drop >= 1; drop-- {
		kept := ls[:0:0]
		for _, l := range ls {
			if l.prio != drop {
				kept = append(kept, l)
			}
		}
		ls = kept
	}
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.text)
	}
	if len(out) > room {
		out = out[:room]
	}
	return out
}

// sessionText says what `s` allows: the same rule, method, host, port and
// path, for the rest of the session.
func (m Model) sessionText(p Prompt) string {
	s := m.st
	t := "allow for the session"
	if p.Scope != "" {
		t = "allow " + s.value.Render(clean(p.Scope, maxURL)) + " for the session"
	}
	if p.Rule != "" {
		t += " " + s.label.Render("(rule ") + s.value.Render(clean(p.Rule, maxField)) + s.label.Render(")")
	}
	return t
}

// left formats the time to the deadline: 1m52s, 45s, 0s.
func left(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Truncate(time.Second)
	if d >= time.Minute {
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

type styles struct {
	brand, label, value, sep, bad, warn, title, method, preview, key lipgloss.Style
}

func (s styles) count(n int64, hot lipgloss.Style) lipgloss.Style {
	if n > 0 {
		return hot
	}
	return s.value
}

func newStyles(color bool) styles {
	r := lipgloss.NewRenderer(io.Discard)
	r.SetHasDarkBackground(true)
	if color {
		r.SetColorProfile(termenv.ANSI)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	st := r.NewStyle()
	return styles{
		brand:   st.Bold(true).Foreground(lipgloss.Color("6")),
		label:   st.Faint(true),
		value:   st,
		sep:     st,
		bad:     st.Foreground(lipgloss.Color("1")),
		warn:    st.Bold(true).Foreground(lipgloss.Color("3")),
		title:   st.Bold(true).Foreground(lipgloss.Color("3")),
		method:  st.Bold(true),
		preview: st.Foreground(lipgloss.Color("7")),
		key:     st.Bold(true).Foreground(lipgloss.Color("2")),
	}
}
