package tui

import "testing"

func TestVTGround(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ground bool
	}{
		{"plain text", true},
		{"\x1b", false},
		{"\x1b[", false},
		{"\x1b[31", false},
		{"\x1b[31m", true},
		{"\x1b[?25l", true},
		{"\x1b]0;title", false},
		{"\x1b]0;title\x07", true},
		{"\x1b]0;title\x1b", false},
		{"\x1b]0;title\x1b\\", true},
		{"\x1bP+q544e\x1b\\", true},
		{"\x1b(", false},
		{"\x1b(0", true},
		{"é"[:1], false},
		{"é", true},
		{"€"[:2], false},
		{"€", true},
		{"\x1b[31\x18", true}, // CAN aborts
		{"\x1b[3\x1b[m", true},
	} {
		var v vt
		v.feed([]byte(tc.in))
		if v.ground() != tc.ground {
			t.Errorf("after %q: ground %v, want %v", tc.in, v.ground(), tc.ground)
		}
	}
}

func TestVTToGround(t *testing.T) {
	var v vt
	v.feed([]byte("ab\x1b[3"))
	rest := []byte("1mcd\x1b[0m")
	if n := v.toGround(rest); n != 2 || !v.ground() {
		t.Errorf("toGround = %d, ground %v; want 2, true", n, v.ground())
	}
	if n := v.toGround([]byte("xyz")); n != 0 {
		t.Errorf("toGround in the ground state = %d", n)
	}
}

func TestVTEvents(t *testing.T) {
	for _, tc := range []struct {
		in                     string
		repaint, region, saved bool
		bottom                 int
	}{
		{in: "hello\r\n"},
		{in: "\x1b[2J", repaint: true},
		{in: "\x1b[J", repaint: true},
		{in: "\x1b[K"},
		{in: "\x1b[r", repaint: true, region: true},
		{in: "\x1b[1;10r", repaint: true, region: true, bottom: 10},
		{in: "\x1b[?1049h", repaint: true, region: true},
		{in: "\x1b[?25h"},
		{in: "\x1bc", repaint: true, region: true},
		{in: "\x1b7", saved: true},
		{in: "\x1b7x\x1b8"},
		{in: "\x1b[s", saved: true},
		{in: "\x1b[s\x1b[u"},
		{in: "\x1b[1;5s"}, // DECSLRM, not a save
	} {
		var v vt
		v.feed([]byte(tc.in))
		if v.repaint != tc.repaint || v.region != tc.region || v.saved != tc.saved || v.bottom != tc.bottom {
			t.Errorf("%q: repaint %v region %v bottom %d saved %v; want %v %v %d %v",
				tc.in, v.repaint, v.region, v.bottom, v.saved, tc.repaint, tc.region, tc.bottom, tc.saved)
		}
	}
}

func TestDecodeKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"a", "a", true},
		{"s", "s", true},
		{"\x1b", "esc", true},
		{"\x03", "ctrl+c", true},
		{"ab", "", false},            // a paste or typing ahead decides nothing
		{"\x1b[A", "", false},        // an arrow key is not Esc
		{"\x1ba", "", false},         // Alt-a
		{"xx\x03yy", "ctrl+c", true}, // Ctrl-C anywhere denies
		{"\r", "", false},
		{"é", "é", true},
	} {
		k, ok := decodeKey([]byte(tc.in))
		if ok != tc.ok || (ok && k.String() != tc.want) {
			t.Errorf("decodeKey(%q) = %q, %v; want %q, %v", tc.in, k.String(), ok, tc.want, tc.ok)
		}
	}
}
