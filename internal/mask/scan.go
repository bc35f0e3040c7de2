package mask

import "bytes"

// scan masks b[pos:] and appends the result to out. b[:pos] is left context
// that was already emitted. Matching is leftmost; at one position the longest
// match wins, then the detector listed first. scan stops at the first
// position whose outcome depends on bytes past len(b) (never when eof) and
// returns it; the caller holds b[stop:] until more input arrives.
//
// Only positions where a detector's literal prefix or first byte occurs, and
// the starts of local parts before an '@', are ever examined: these literal
// prefilters keep the cost near a table lookup per byte.
func (e *Engine) scan(out, b []byte, pos int, eof bool, esc escMode, c *Counts) ([]byte, int) {
	n := len(b)
	tc := e.nextTrig(b, pos)
	ec := n
	if e.email != nil {
		ec = e.nextEmail(b, pos, eof, esc)
	}
	kc := n
	if e.kw != nil {
		kc = e.kw.next(b, pos, eof)
	}
	for {
		at := min(tc, ec, kc)
		if at >= n {
			break
		}
		var best *detector
		bestN, more := 0, false
		// In raw JSON a byte after an escaping backslash is part of an escape
		// sequence: a replacement there would break the document.
		if esc == escNone || !isEscapeLetter(b[at]) || !esc.escaped(b, at) {
			if tc == at {
				for _, en := range e.first[b[at]] {
					l := len(en.lit)
					if l > 0 {
						if n-at < l {
							if !eof && en.lit[:n-at] == string(b[at:]) {
								more = true
							}
							continue
						}
						if string(b[at:at+l]) != en.lit {
							continue
						}
					}
					m, mo := en.det.match(b, at, l, eof, esc)
					if mo {
						more = true
					} else if m > bestN || m > 0 && m == bestN && en.det.prio < best.prio {
						best, bestN = en.det, m
					}
				}
			}
			if ec == at {
				m, mo := e.email.match(b, at, 0, eof, esc)
				if mo {
					more = true
				} else if m > bestN || m > 0 && m == bestN && e.email.prio < best.prio {
					best, bestN = e.email, m
				}
			}
			if kc == at {
				for _, d := range e.kw.at(b, at) {
					m, mo := d.match(b, at, 0, eof, esc)
					if mo {
						more = true
					} else if m > bestN || m > 0 && m == bestN && d.prio < best.prio {
						best, bestN = d, m
					}
				}
			}
		}
		if more {
			return append(out, b[pos:at]...), at
		}
		if best == nil {
			if tc == at {
				tc = e.nextTrig(b, at+1)
			}
			if ec == at {
				ec = e.nextEmail(b, at+1, eof, esc)
			}
			if kc == at {
				kc = e.kw.next(b, at+1, eof)
			}
			continue
		}
		// A rule's key name before its value stays (api_key = "[MASKED:…]").
		k := 0
		if best.keep != nil {
			k = best.keep(b, at, bestN, esc)
		}
		out = append(out, b[pos:at+k]...)
		if e.fillMode {
			out = appendFill(out, bestN-k)
		} else {
			out = append(out, best.repl...)
		}
		c.add(best.name)
		pos = at + bestN
		if tc < pos {
			tc = e.nextTrig(b, pos)
		}
		if ec < pos {
			ec = e.nextEmail(b, pos, eof, esc)
		}
		if kc < pos {
			kc = e.kw.next(b, pos, eof)
		}
	}
	return append(out, b[pos:]...), n
}

// escMode says how backslashes in the scanned text are read.
type escMode uint8

const (
	escNone    escMode = iota // plain text
	escJSON                   // raw JSON: a backslash escapes the byte after it
	escJSONOdd                // raw JSON whose first byte is escaped by a backslash before the buffer
)

// escaped reports whether b[i] follows an escaping backslash, that is an odd
// run of backslashes. In a stream the run may begin before b; escJSONOdd
// carries its parity.
func (m escMode) escaped(b []byte, i int) bool {
	if m == escNone || i == 0 && m != escJSONOdd {
		return false
	}
	j := i
	for j > 0 && b[j-1] == '\\' {
		j--
	}
	n := i - j
	if j == 0 && m == escJSONOdd {
		n++
	}
	return n%2 == 1
}

func isEscapeLetter(c byte) bool {
	switch c {
	case 'b', 'f', 'n', 'r', 't', 'u', '"', '\\', '/':
		return true
	}
	return false
}

// nextTrig returns the first position at or after i where a registered
// prefix could start: its first byte is there and, when the prefix is at
// least two bytes long, so is its second byte (or the text ends). One lookup
// of the byte pair in a 8 KiB bit table per position keeps common letters
// that merely start a prefix (e, s, r, g) from stopping the loop. Positions
// where every detector of that first byte needs a word boundary and the byte
// before is a word byte (the 2nd digit of a number, "sk" in "task") are
// skipped too, unless that byte could be escaped.
func (e *Engine) nextTrig(b []byte, i int) int {
	p := &e.pair
	for {
		for ; i+4 < len(b); i += 4 {
			x0 := uint(b[i])<<8 | uint(b[i+1])
			x1 := uint(b[i+1])<<8 | uint(b[i+2])
			x2 := uint(b[i+2])<<8 | uint(b[i+3])
			x3 := uint(b[i+3])<<8 | uint(b[i+4])
			if (p[x0>>6]>>(x0&63)|p[x1>>6]>>(x1&63)|p[x2>>6]>>(x2&63)|p[x3>>6]>>(x3&63))&1 != 0 {
				break
			}
		}
		for ; i+1 < len(b); i++ {
			x := uint(b[i])<<8 | uint(b[i+1])
			if p[x>>6]>>(x&63)&1 != 0 {
				break
			}
		}
		if i+1 >= len(b) {
			if i < len(b) && !e.trig[b[i]] {
				i++
			}
			return min(i, len(b))
		}
		if i < 2 || b[i-2] == '\\' {
			return i
		}
		c := b[i-1]
		if e.noStart[b[i]][c>>6]>>(c&63)&1 == 0 {
			return i
		}
		i++
	}
}

// nextEmail returns the first position at or after from where an e-mail
// address could start: the start of a run of local-part bytes that ends in
// '@' (or, before eof, that runs to the end of b and could still reach one).
func (e *Engine) nextEmail(b []byte, from int, eof bool, esc escMode) int {
	for a := from; a <= len(b); {
		k := bytes.IndexByte(b[a:], '@')
		if k < 0 {
			if eof {
				return len(b)
			}
			s := emailStart(b, len(b), esc)
			if s >= from && len(b)-s <= maxLocal {
				return s
			}
			return len(b)
		}
		at := a + k
		if s := emailStart(b, at, esc); s >= from {
			return s
		}
		a = at + 1
	}
	return len(b)
}

// textScanner masks one text stream incrementally. Its output, concatenated
// over all feeds, equals the one-shot scan of the concatenated input.
type textScanner struct {
	e   *Engine
	esc bool // raw JSON text
	odd bool // buf[0] is escaped by a backslash already dropped from buf
	c   *Counts
	buf []byte // buf[:ctx] is emitted left context, buf[ctx:] is held text
	ctx int
}

// feed appends p and returns out plus the text that is now safe to emit.
// With eof it flushes everything and resets the scanner to a fresh stream.
func (s *textScanner) feed(out, p []byte, eof bool) []byte {
	if len(p) == 0 && !eof {
		return out
	}
	if eof && len(s.buf) == 0 && !s.odd {
		// A whole text in one piece (a JSON document's literal pass): no
		// copy into the buffer.
		mode := escNone
		if s.esc {
			mode = escJSON
		}
		out, _ = s.e.scan(out, p, 0, true, mode, s.c)
		s.ctx = 0
		return out
	}
	s.buf = append(s.buf, p...)
	mode := escNone
	if s.esc {
		mode = escJSON
		if s.odd {
			mode = escJSONOdd
		}
	}
	out, stop := s.e.scan(out, s.buf, s.ctx, eof, mode, s.c)
	if eof {
		s.buf, s.ctx, s.odd = s.buf[:0], 0, false
		return out
	}
	k := max(0, stop-leftContext)
	if k > 0 && s.esc {
		s.odd = mode.escaped(s.buf, k)
	}
	s.buf = s.buf[:copy(s.buf, s.buf[k:])]
	s.ctx = stop - k
	return out
}

// held returns how many bytes of text the scanner is holding back.
func (s *textScanner) held() int { return len(s.buf) - s.ctx }

// fillByte replaces each byte of a literal in a binary body: the length
// stays, so offsets and length prefixes (gRPC frames, protobuf) stay valid.
const fillByte = '*'

func appendFill(out []byte, n int) []byte {
	for range n {
		out = append(out, fillByte)
	}
	return out
}
