package policy

import (
	"bytes"
	"cmp"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
)

// bodyRegexp is a body condition: a regular expression plus the literals
// that every match must contain. Go's regexp engine runs at tens of MB/s on
// a pattern like `(?i)\bdrop\s+table\b`, while finding a literal runs at
// memory speed, so a body lacking any required literal is rejected without
// running the engine. Bodies that contain them all still pay the engine.
type bodyRegexp struct {
	re       *regexp.Regexp
	required []literal // longest first
}

// literal is a byte string a match must contain; with fold, ASCII case is
// ignored (only literals whose case variants are all ASCII are kept).
type literal struct {
	s    []byte // lower-case when fold
	fold bool
}

func newBodyRegexp(re *regexp.Regexp) *bodyRegexp {
	b := &bodyRegexp{re: re}
	if tree, err := syntax.Parse(re.String(), syntax.Perl); err == nil {
		b.required = requiredLiterals(tree.Simplify(), nil)
		slices.SortStableFunc(b.required, func(x, y literal) int { return cmp.Compare(len(y.s), len(x.s)) })
		if len(b.required) > 4 {
			b.required = b.required[:4]
		}
	}
	return b
}

// Match reports whether the regular expression matches body.
func (b *bodyRegexp) Match(body []byte) bool {
	for _, l := range b.required {
		if !l.in(body) {
			return false
		}
	}
	return b.re.Match(body)
}

func (b *bodyRegexp) String() string { return b.re.String() }

// requiredLiterals appends to out the literals that every match of re
// contains. It may find fewer than exist, never one that is not required.
func requiredLiterals(re *syntax.Regexp, out []literal) []literal {
	switch re.Op {
	case syntax.OpLiteral:
		return append(out, literalParts(re.Rune, re.Flags&syntax.FoldCase != 0)...)
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			out = requiredLiterals(sub, out)
		}
	case syntax.OpCapture, syntax.OpPlus:
		out = requiredLiterals(re.Sub[0], out)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			out = requiredLiterals(re.Sub[0], out)
		}
	}
	return out
}

// literalParts splits a literal into the runs a byte search can find
// exactly. U+FFFD is left out (the engine matches it on invalid UTF-8), and
// so, when folding case, are non-ASCII runes and 'k' and 's', which fold to
// non-ASCII runes (the Kelvin sign, the long s).
func literalParts(runes []rune, fold bool) []literal {
	var out []literal
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			out = append(out, literal{s: cur, fold: fold})
			cur = nil
		}
	}
	for _, r := range runes {
		switch {
		case r == utf8.RuneError:
			flush()
		case !fold:
			cur = utf8.AppendRune(cur, r)
		case r >= utf8.RuneSelf || strings.ContainsRune("kKsS", r):
			flush()
		default:
			cur = append(cur, lower(byte(r)))
		}
	}
	flush()
	return out
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// in reports whether l occurs in b.
func (l literal) in(b []byte) bool {
	if !l.fold {
		return bytes.Contains(b, l.s)
	}
	first, rest := l.s[0], l.s[1:]
	upper := first
	if 'a' <= first && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	// Scan for either case of the first byte with the fast IndexByte, keeping
	// the next position of each so that neither is searched twice.
	nextLo, nextUp := -2, -2
	if upper == first {
		nextUp = -1
	}
	for i := 0; i+len(l.s) <= len(b); {
		if nextLo != -1 && nextLo < i {
			nextLo = index(b, i, first)
		}
		if nextUp != -1 && nextUp < i {
			nextUp = index(b, i, upper)
		}
		j := nextLo
		if j < 0 || (nextUp >= 0 && nextUp < j) {
			j = nextUp
		}
		if j < 0 || j+len(l.s) > len(b) {
			return false
		}
		if equalFoldLower(b[j+1:j+len(l.s)], rest) {
			return true
		}
		i = j + 1
	}
	return false
}

func index(b []byte, from int, c byte) int {
	if k := bytes.IndexByte(b[from:], c); k >= 0 {
		return from + k
	}
	return -1
}

// equalFoldLower compares b with the lower-case ASCII string lo, ignoring
// ASCII case in b.
func equalFoldLower(b, lo []byte) bool {
	for i, c := range lo {
		if lower(b[i]) != c {
			return false
		}
	}
	return true
}
