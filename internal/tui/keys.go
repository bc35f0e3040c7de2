package tui

import (
	"bytes"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
)

// decodeKey reads one key for the prompt from one read of the terminal.
// Ctrl-C anywhere denies; otherwise only a read that is exactly one key
// counts, so pastes and escape sequences (arrows, mouse reports, a lone
// ESC byte excepted) decide nothing.
func decodeKey(b []byte) (tea.KeyMsg, bool) {
	if bytes.IndexByte(b, 0x03) >= 0 {
		return tea.KeyMsg{Type: tea.KeyCtrlC}, true
	}
	if len(b) == 1 && b[0] == 0x1b {
		return tea.KeyMsg{Type: tea.KeyEsc}, true
	}
	c, size := utf8.DecodeRune(b)
	if size != len(b) || c == utf8.RuneError || c < 0x20 || c == 0x7f {
		return tea.KeyMsg{}, false
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{c}}, true
}
