package policy

import (
	"regexp"
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
	f.Fuzz(func(t *testing.T, pattern, body string) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		if got, want := newBodyRegexp(re).Match([]byte(body)), re.MatchString(body); got != want {
			t.Fatalf("%q on %q: prefiltered %v, regexp %v", pattern, body, got, want)
		}
	})
}
