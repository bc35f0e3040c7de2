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
		// Every form of a value is at least as long as the value: most
		// names and many values are shorter than any, and cost nothing.
		if len(k) >= l.shortest && l.nameHolds(k) {
			delete(h, k)
			c.add(l.dets[0].name)
			continue
		}
		for i, v := range vals {
			if len(v) < l.shortest || l.nextTrig([]byte(v), 0) >= len(v) {
				continue // nothing a literal could start with
			}
			if out := l.maskString([]byte(v), c); !bytes.Equal(out, []byte(v)) {
				vals[i] = string(out)
			}
		}
	}
}

// nameHolds reports whether header name k holds a literal. Go
// canonicalises names (Sk-Live-…) and other clients show them lower-cased,
// so a name is compared in every case.
func (e *Engine) nameHolds(k string) bool {
	if e.holds(k) {
		return true
	}
	lower := strings.ToLower(k)
	if e.holds(lower) {
		return true
	}
	for _, v := range e.lowerValues {
		if strings.Contains(lower, v) {
			return true
		}
	}
	return false
}

// holds reports whether e would mask anything in s.
func (e *Engine) holds(s string) bool {
	b := []byte(s)
	if e.nextTrig(b, 0) >= len(b) {
		return false
	}
	return !bytes.Equal(e.maskString(b, nil), b)
}
