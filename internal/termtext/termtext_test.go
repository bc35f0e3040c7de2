package termtext

import "testing"

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"GET https://api.example.com/v1", "GET https://api.example.com/v1"},
		{"a\x1b]0;pwned\x07b", `a\x1b]0;pwned\x07b`},
		{"\x1b[2Jclear", `\x1b[2Jclear`},
		{"evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"tab\there", "tab    here"},
		{"line1\nline2", `line1\x0aline2`},
		{"\u0085nel", `\u0085nel`},
		{"naïve ✓", "naïve ✓"},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := EscapeLines("a\x1b[1m\nb\x9b"); got != "a\\x1b[1m\nb\ufffd" {
		t.Errorf("EscapeLines = %q", got)
	}
}
