package mask

import (
	"bytes"
	"net/http"
	"strings"
)

// MaskHeader masks the literals (never the detectors: a header is not
// text a person wrote) in every value of h, in place, and counts the
// replacements into c. A value stays one line: replacements hold no control
// character (New refuses a template that makes one). A field whose name
// holds a literal is removed, since a name cannot carry a replacement.
func (e *Engine) MaskHeader(h http.Header, c *Counts) {
	l := e.lit
	if len(l.dets) == 0 {
		return
	}
	for k, vals := range h {
		// Go canonicalises names (Sk-Live-…) and other clients show them
		// lower-cased: a name is compared in every case.
		if l.holds(k) || l.holds(strings.ToLower(k)) || l.holdsFolded(k) {
			delete(h, k)
			c.add(l.dets[0].name)
			continue
		}
		for i, v := range vals {
			if l.nextTrig([]byte(v), 0) >= len(v) {
				continue // the common case: nothing a literal could start with
			}
			if out := l.maskString([]byte(v), c); !bytes.Equal(out, []byte(v)) {
				vals[i] = string(out)
			}
		}
	}
}

// holds reports whether e would mask anything in s.
func (e *Engine) holds(s string) bool {
	b := []byte(s)
	if e.nextTrig(b, 0) >= len(b) {
		return false
	}
	return !bytes.Equal(e.maskString(b, nil), b)
}

// holdsFolded reports whether s holds a literal's value in any letter case.
func (e *Engine) holdsFolded(s string) bool {
	s = strings.ToLower(s)
	for _, v := range e.values {
		if strings.Contains(s, strings.ToLower(v)) {
			return true
		}
	}
	return false
}
