package tui

// vt follows the crew's output just enough to know when crewgate may write
// its own sequences (between the crew's escape sequences and characters,
// never inside one) and when the crew did something that undoes crewgate's
// rows: erased the display, reset the terminal, switched screens or set the
// scroll region.
type vt struct {
	state    uint8
	utf8Left int
	params   []byte // of the CSI sequence being read, capped
	private  bool   // the CSI sequence began with a private marker (?, >, =, <)

	// repaint: the crew may have erased or moved crewgate's rows.
	repaint bool
	// region: the crew set or reset the scroll region; bottom is the last
	// row it asked for, 0 for the whole screen.
	region bool
	bottom int
	// saved: the crew saved the cursor (DECSC) and has not restored it, so
	// crewgate's own save and restore would clobber its slot.
	saved bool
}

const (
	vtGround uint8 = iota
	vtEsc
	vtEscInter
	vtCSI
	vtString
	vtStringEsc
)

const maxParams = 32

func (v *vt) ground() bool { return v.state == vtGround && v.utf8Left == 0 }

func (v *vt) feed(b []byte) {
	for _, c := range b {
		v.step(c)
	}
}

// toGround consumes b up to the first point where the parser is in the
// ground state and returns how many bytes that took (0 when already there).
func (v *vt) toGround(b []byte) int {
	for i, c := range b {
		if v.ground() {
			return i
		}
		v.step(c)
	}
	return len(b)
}

func (v *vt) step(c byte) {
	if c == 0x18 || c == 0x1a { // CAN, SUB abort any sequence
		v.state, v.utf8Left = vtGround, 0
		return
	}
	switch v.state {
	case vtGround:
		if v.utf8Left > 0 {
			if c&0xc0 == 0x80 {
				v.utf8Left--
				return
			}
			v.utf8Left = 0
		}
		switch {
		case c == 0x1b:
			v.state = vtEsc
		case c >= 0xf0 && c < 0xf8:
			v.utf8Left = 3
		case c >= 0xe0 && c < 0xf0:
			v.utf8Left = 2
		case c >= 0xc0 && c < 0xe0:
			v.utf8Left = 1
		}
	case vtEsc:
		switch {
		case c == '[':
			v.state, v.params, v.private = vtCSI, v.params[:0], false
		case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
			v.state = vtString
		case c >= 0x20 && c <= 0x2f:
			v.state = vtEscInter
		case c == 0x1b || c < 0x20:
		default:
			v.state = vtGround
			switch c {
			case '7':
				v.saved = true
			case '8':
				v.saved = false
			case 'c': // RIS: the terminal is reset, region and all
				v.saved, v.repaint, v.region, v.bottom = false, true, true, 0
			}
		}
	case vtEscInter:
		switch {
		case c == 0x1b:
			v.state = vtEsc
		case c >= 0x30 && c <= 0x7e:
			v.state = vtGround
		}
	case vtCSI:
		switch {
		case c >= 0x40 && c <= 0x7e:
			v.state = vtGround
			v.csi(c)
		case c == 0x1b:
			v.state = vtEsc
		case c >= 0x3c && c <= 0x3f && len(v.params) == 0:
			v.private = true
			v.params = append(v.params, c)
		case c >= 0x20 && c <= 0x3f:
			if len(v.params) < maxParams {
				v.params = append(v.params, c)
			}
		}
	case vtString:
		switch c {
		case 0x07:
			v.state = vtGround
		case 0x1b:
			v.state = vtStringEsc
		}
	case vtStringEsc:
		if c == '\\' {
			v.state = vtGround
			return
		}
		// ESC ends the string and starts a new sequence.
		v.state = vtEsc
		v.step(c)
	}
}

func (v *vt) csi(final byte) {
	switch final {
	case 'J': // erase in display: may reach crewgate's rows
		v.repaint = true
	case 'r':
		if !v.private {
			v.region, v.repaint = true, true
			v.bottom = secondParam(v.params)
		}
	case 's':
		if len(v.params) == 0 {
			v.saved = true
		}
	case 'u':
		if len(v.params) == 0 {
			v.saved = false
		}
	case 'h', 'l':
		if v.private {
			for _, p := range splitParams(v.params[1:]) {
				if p == 1049 || p == 1047 || p == 47 { // screen switch
					v.repaint, v.region, v.bottom = true, true, 0
				}
			}
		}
	}
}

func splitParams(b []byte) []int {
	var out []int
	n, digits := 0, false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if n < 1e6 {
				n = n*10 + int(c-'0')
			}
			digits = true
		case c == ';':
			out = append(out, n)
			n, digits = 0, false
		}
	}
	if digits {
		out = append(out, n)
	}
	return out
}

func secondParam(b []byte) int {
	ps := splitParams(b)
	if len(ps) < 2 {
		return 0
	}
	return ps[1]
}
