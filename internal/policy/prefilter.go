package policy

import (
	"bytes"
	"cmp"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/crewgate/crewgate/internal/reqbody"
)

// bodyRegexp is a body condition: a regular expression plus the literals
// that every match must contain. Go's regexp engine runs at tens of MB/s on
// a pattern like `(?i)\bdrop\s+table\b`, while finding a literal runs at
// memory speed, so a body lacking any required literal is rejected without
// running the engine. Bodies that contain them all still pay the engine.
type bodyRegexp struct {
	re       *regexp.Regexp
	required []literal // longest first
	// alphabet holds every byte a match can contain; nil when that is
	// every byte, or when the pattern has anchors or matches the empty
	// string. With it, the engine runs only on the runs of alphabet bytes
	// around an occurrence of the first required literal.
	alphabet *[256]bool
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
		if len(b.required) > 0 && !re.MatchString("") {
			var a [256]bool
			if alphabetOf(tree.Simplify(), &a) && slices.Contains(a[:], false) {
				b.alphabet = &a
			}
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
	if b.alphabet == nil {
		return b.re.Match(body)
	}
	// Every match is a run of alphabet bytes that holds the first required
	// literal, so only the maximal runs around its occurrences can match.
	// Each is tried once, with one byte of context on either side: that byte
	// cannot be part of a match, but \b needs to see it.
	a, lit := b.alphabet, b.required[0]
	occurrences := lit.finder(body)
	for from := 0; ; {
		j := occurrences.next(from)
		if j < 0 {
			return false
		}
		s, e := j, j+len(lit.s)
		for s > 0 && a[body[s-1]] {
			s--
		}
		for e < len(body) && a[body[e]] {
			e++
		}
		if b.allIn(body[s:e]) && b.re.Match(body[max(s-1, 0):min(e+1, len(body))]) {
			return true
		}
		from = e
	}
}

// matchView reports whether the pattern matches one of v's texts or, on its
// own, one of its values, and which: text i, or value i-v.NumTexts().
func (b *bodyRegexp) matchView(v *reqbody.View) (int, bool) {
	for i := range v.NumTexts() {
		if b.Match(v.Text(i)) {
			return i, true
		}
	}
	if i, ok := b.matchValues(v.Values()); ok {
		return v.NumTexts() + i, true
	}
	return -1, false
}

// matchValues reports whether the pattern matches one of the values laid
// back to back in vals (ends[i] is where value i ends), and which. A value
// can match only if it holds every required literal, so the literals are
// searched once over all values, and only the values that hold the first
// one are tried: a body of ten thousand short JSON strings costs one scan,
// not ten thousand.
func (b *bodyRegexp) matchValues(vals []byte, ends []int32) (int, bool) {
	if len(ends) == 0 {
		return -1, false
	}
	if len(b.required) == 0 {
		start := int32(0)
		for i, end := range ends {
			if b.re.Match(vals[start:end]) {
				return i, true
			}
			start = end
		}
		return -1, false
	}
	for _, l := range b.required[1:] {
		if !l.in(vals) {
			return -1, false
		}
	}
	lit := b.required[0]
	occurrences := lit.finder(vals)
	for from := 0; ; {
		j := occurrences.next(from)
		if j < 0 {
			return -1, false
		}
		i, _ := slices.BinarySearch(ends, int32(j+1)) // the value holding vals[j]
		start, end := 0, int(ends[i])
		if i > 0 {
			start = int(ends[i-1])
		}
		// An occurrence across the end of a value is none: the next one
		// starts in a later value.
		if j+len(lit.s) <= end && b.Match(vals[start:end]) {
			return i, true
		}
		from = end
	}
}

// allIn reports whether run holds every required literal but the first.
func (b *bodyRegexp) allIn(run []byte) bool {
	for _, l := range b.required[1:] {
		if !l.in(run) {
			return false
		}
	}
	return true
}

// alphabetOf adds to a every byte that a match of re can contain. It
// reports false when it cannot say: the pattern has anchors, whose meaning
// changes on a part of the body.
func alphabetOf(re *syntax.Regexp, a *[256]bool) bool {
	addRune := func(r rune) {
		if r >= utf8.RuneSelf {
			// Invalid UTF-8 matches as U+FFFD, one byte at a time: allow
			// every non-ASCII byte rather than just this rune's encoding.
			for c := utf8.RuneSelf; c < 256; c++ {
				a[c] = true
			}
			return
		}
		a[r] = true
	}
	switch re.Op {
	case syntax.OpNoMatch, syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			addRune(r)
			if re.Flags&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					addRune(f)
				}
			}
		}
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			for r := lo; r <= hi && r < utf8.RuneSelf; r++ {
				addRune(r)
			}
			if hi >= utf8.RuneSelf {
				addRune(utf8.RuneSelf)
			}
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		for c := range 256 {
			a[c] = true
		}
	case syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat, syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !alphabetOf(sub, a) {
				return false
			}
		}
	default: // ^, $, \A, \z and anything new
		return false
	}
	return true
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
func (l literal) in(b []byte) bool { return l.finder(b).next(0) >= 0 }

// finder finds the occurrences of one literal in one body, in order.
type finder struct {
	l              literal
	b              []byte
	nextLo, nextUp int // next position of each case of the first byte; -1 none left, -2 not searched
}

func (l literal) finder(b []byte) *finder {
	f := &finder{l: l, b: b, nextLo: -2, nextUp: -2}
	if !l.fold || 'a' > l.s[0] || l.s[0] > 'z' {
		f.nextUp = -1 // one case only
	}
	return f
}

// next returns the position of the first occurrence at or after from, or -1.
// Calls must not go backwards: the positions found stay cached, so a body
// is scanned once however often next is called.
func (f *finder) next(from int) int {
	l, b := f.l, f.b
	if !l.fold {
		if k := bytes.Index(b[from:], l.s); k >= 0 {
			return from + k
		}
		return -1
	}
	first, rest := l.s[0], l.s[1:]
	upper := first - 'a' + 'A'
	for i := from; i+len(l.s) <= len(b); {
		if f.nextLo != -1 && f.nextLo < i {
			f.nextLo = index(b, i, first)
		}
		if f.nextUp != -1 && f.nextUp < i {
			f.nextUp = index(b, i, upper)
		}
		j := f.nextLo
		if j < 0 || (f.nextUp >= 0 && f.nextUp < j) {
			j = f.nextUp
		}
		if j < 0 || j+len(l.s) > len(b) {
			return -1
		}
		if equalFoldLower(b[j+1:j+len(l.s)], rest) {
			return j
		}
		i = j + 1
	}
	return -1
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
