package policy

import (
	"regexp"
	"strings"
	"testing"
)

// The prefilter never changes an answer: bodyRegexp matches exactly what
// the plain regular expression matches.
func TestPolicyBodyPrefilterIsExact(t *testing.T) {
	patterns := []string{
		`(?i)\bdrop\s+table\b`, `drop table`, `(?i)desk`, `(?i)SKIP`, `(?i)straße`, `a+bc{2,}`,
		`(?i)(select|insert)\s+into`, `x?yz*`, `\x{FFFD}abc`, `(?i)ab(cd)+ef`, `(ab){0,3}cd`, `^$`,
		`(?s)BEGIN.*END`, `é(?i:É)`,
	}
	bodies := []string{
		"", "DROP TABLE users", "drop  table", "Drop\tTable x", "droptable", "please drop the table",
		"DESK", "des\u212a", "\u212aip", "s\u212aip", "\u017fkip", "STRASSE", "straße", "STRAẞE",
		"abcc", "abbbccc", "abc", "insert into", "SELECT\ninto", "yz", "y", "\xffabc", "\ufffdabc", "abcdcdef",
		"ABCDEF", "abcdabcdcd", "cd", "BEGIN x\n END", "éé", "éÉ",
	}
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		b := newBodyRegexp(re)
		for _, body := range bodies {
			if got, want := b.Match([]byte(body)), re.Match([]byte(body)); got != want {
				t.Errorf("%q on %q: prefiltered %v, regexp %v (required %v)", p, body, got, want, b.required)
			}
		}
	}
	if b := newBodyRegexp(regexp.MustCompile(`(?i)\bdrop\s+table\b`)); len(b.required) != 2 || string(b.required[0].s) != "table" {
		t.Errorf("required literals = %v", b.required)
	}
}

// FuzzBodyPrefilter checks the prefilter against the engine on random
// patterns and bodies.
func FuzzBodyPrefilter(f *testing.F) {
	f.Add(`(?i)\bdrop\s+table\b`, "DROP TABLE t")
	f.Add(`(?i)kiss`, "\u212aI\u017f\u017f")
	f.Add(`ab+c`, "xabbbc")
	f.Add(`\bdrop\b`, "xdrop drop")
	f.Add(`\bdrop\b`, "xdrop")
	f.Add(`(?i)\bdrop\s+table\b`, "please DROP\n\t TABLE users; the table of drops")
	f.Add(`^drop table`, "x drop table")
	f.Add(`drop.table`, "drop\xfftable")
	f.Add(`[^x]drop`, "\xc3drop")
	f.Add(`drop\b`, "drop\xe2\x82")
	f.Add(`(a|drop)+x`, "dropdropax")
	f.Add(`(?i)\bdrop\s+table\b`, "drop|table|drop table|DROP TABLE")
	f.Add(`^a$`, "ba|a|ab")
	f.Fuzz(func(t *testing.T, pattern, body string) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		b := newBodyRegexp(re)
		if got, want := b.Match([]byte(body)), re.MatchString(body); got != want {
			t.Fatalf("%q on %q: prefiltered %v, regexp %v", pattern, body, got, want)
		}
		// The body split at '|' into values: matchValues finds the first
		// value that matches on its own.
		var vals []byte
		var ends []int32
		want := -1
		for s := range strings.SplitSeq(body, "|") {
			if s == "" {
				continue
			}
			if want < 0 && re.MatchString(s) {
				want = len(ends)
			}
			vals = append(vals, s...)
			ends = append(ends, int32(len(vals)))
		}
		if got, _ := b.matchValues(vals, ends); got != want {
			t.Fatalf("%q on the values of %q: value %d, want %d", pattern, body, got, want)
		}
	})
}

// matchValues, which searches all values at once before trying each one,
// answers exactly what trying every value on its own answers.
func TestPolicyValuesPrefilterIsExact(t *testing.T) {
	patterns := []string{`(?i)\bdrop\s+table\b`, `drop table`, `^drop$`, `(?i)kiss`, `a+bc`, `x?`, `table\b`}
	sets := [][]string{
		{"drop", " table"}, {"xx", "drop table"}, {"drop tab", "le"}, {"DROP\tTABLE"}, {"drop"}, {"a", "drop", "b"},
		{"\u212aiss"}, {"abcabc", "x"}, {"ab", "bc"}, {"tables", "the table"}, {"droptable", "drop  table!"},
	}
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		b := newBodyRegexp(re)
		for _, set := range sets {
			var vals []byte
			var ends []int32
			want := -1
			for i, s := range set {
				vals = append(vals, s...)
				ends = append(ends, int32(len(vals)))
				if want < 0 && re.MatchString(s) {
					want = i
				}
			}
			if got, ok := b.matchValues(vals, ends); got != want || ok != (want >= 0) {
				t.Errorf("%q on %q: value %d (%v), want %d", p, set, got, ok, want)
			}
		}
	}
}
