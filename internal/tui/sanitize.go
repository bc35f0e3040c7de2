package tui

import (
	"strings"
	"unicode/utf8"
)

// Caps on what a prompt shows of each field, in runes, before the line is
// also cut to the terminal's width.
const (
	maxPreview = 160
	maxURL     = 512
	maxField   = 200
)

// clean makes s safe to draw on a terminal: tabs and line breaks become
// spaces, other C0 and C1 controls, DEL, invalid UTF-8 and bidirectional
// overrides are dropped, and at most max runes are kept ("…" marks a cut).
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size <= 1:
			continue
		case r == '\t' || r == '\n' || r == '\r':
			r = ' '
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			continue
		case isBidiControl(r):
			continue
		}
		if n == max {
			b.WriteRune('…')
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

func isBidiControl(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f:
		return true
	case r >= 0x202a && r <= 0x202e:
		return true
	case r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
