// Package termtext makes text that a crew controls (URLs, headers, body
// previews) safe to print on a terminal: nothing it contains can move the
// cursor, retitle the window, hide text or reorder it.
package termtext

import (
	"fmt"
	"strings"
	"unicode"
)

// Escape returns s with every rune that is not graphic written as a visible
// escape (\x1b, \u202e), so the reader sees that it was there; an invalid
// byte shows as U+FFFD. A tab becomes
// four spaces; a newline is escaped too, so the result is one line.
func Escape(s string) string {
	if isPlain(s, false) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t':
			b.WriteString("    ")
		case unicode.IsGraphic(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// EscapeLines is Escape for text of several lines: newlines stay.
func EscapeLines(s string) string {
	if isPlain(s, true) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Escape(l)
	}
	return strings.Join(lines, "\n")
}

// isPlain reports whether s is printable ASCII (and newlines, when
// allowed) only: the common case, which needs no copy.
func isPlain(s string, newlines bool) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && !(newlines && c == '\n')) || c >= 0x7f {
			return false
		}
	}
	return true
}
