package mask

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// seg is one step of a JSON path: an object key (idx < 0) or an array index.
type seg struct {
	key []byte // raw key bytes, without quotes
	idx int
}

// Kinds of values a walker reports.
const (
	kString = 's'
	kNumber = 'n'
	kOther  = 'o' // true, false, null
	kField  = 'f' // the whole value of a key listed in json_fields
)

const maxDepth = 512

var errJSON = errors.New("mask: invalid JSON")

// walker is a small JSON scanner that reports scalar values with their path
// and byte span, so that values can be replaced without re-encoding the rest.
type walker struct {
	src    []byte
	i      int
	path   []seg
	fields map[string]bool
	visit  func(kind byte, start, end int)
	lower  []byte
	esc    bool // the last string consumed holds a backslash
}

func (w *walker) walk() error {
	w.ws()
	if err := w.value(0); err != nil {
		return err
	}
	w.ws()
	if w.i != len(w.src) {
		return errJSON
	}
	return nil
}

func (w *walker) ws() {
	for w.i < len(w.src) {
		switch w.src[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

func (w *walker) value(depth int) error {
	if depth > maxDepth || w.i >= len(w.src) {
		return errJSON
	}
	start := w.i
	switch c := w.src[w.i]; {
	case c == '{':
		return w.object(depth)
	case c == '[':
		return w.array(depth)
	case c == '"':
		end, err := w.str()
		if err != nil {
			return err
		}
		w.visit(kString, start, end)
	case c == '-' || c >= '0' && c <= '9':
		w.i++
		for w.i < len(w.src) && isNumByte(w.src[w.i]) {
			w.i++
		}
		w.visit(kNumber, start, w.i)
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if len(w.src)-w.i >= len(lit) && string(w.src[w.i:w.i+len(lit)]) == lit {
				w.i += len(lit)
				w.visit(kOther, start, w.i)
				return nil
			}
		}
		return errJSON
	}
	return nil
}

func isNumByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// strStop marks the bytes that end a run of plain string bytes.
var strStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// str consumes a string literal and returns the index after its closing quote.
// A backslash escapes the next byte whatever it is; escapes are not validated.
func (w *walker) str() (int, error) {
	src := w.src
	i := w.i + 1
	w.esc = false
	for {
		for i+4 <= len(src) && !(strStop[src[i]] || strStop[src[i+1]] || strStop[src[i+2]] || strStop[src[i+3]]) {
			i += 4
		}
		for i < len(src) && !strStop[src[i]] {
			i++
		}
		if i >= len(src) {
			w.i = i
			return 0, errJSON
		}
		switch src[i] {
		case '"':
			w.i = i + 1
			return w.i, nil
		case '\\':
			w.esc = true
			i += 2
		default:
			w.i = i
			return 0, errJSON
		}
	}
}

func (w *walker) object(depth int) error {
	w.i++
	w.ws()
	if w.i < len(w.src) && w.src[w.i] == '}' {
		w.i++
		return nil
	}
	for {
		w.ws()
		if w.i >= len(w.src) || w.src[w.i] != '"' {
			return errJSON
		}
		ks := w.i
		ke, err := w.str()
		if err != nil {
			return err
		}
		w.ws()
		if w.i >= len(w.src) || w.src[w.i] != ':' {
			return errJSON
		}
		w.i++
		w.ws()
		key := w.src[ks+1 : ke-1]
		w.path = append(w.path, seg{key: key, idx: -1})
		if len(w.fields) > 0 && w.isField(key) {
			vs := w.i
			if err := w.skip(depth + 1); err != nil {
				return err
			}
			if string(w.src[vs:w.i]) != "null" {
				w.visit(kField, vs, w.i)
			}
		} else if err := w.value(depth + 1); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
		w.ws()
		if w.i >= len(w.src) {
			return errJSON
		}
		switch w.src[w.i] {
		case ',':
			w.i++
		case '}':
			w.i++
			return nil
		default:
			return errJSON
		}
	}
}

func (w *walker) array(depth int) error {
	w.i++
	w.ws()
	if w.i < len(w.src) && w.src[w.i] == ']' {
		w.i++
		return nil
	}
	for k := 0; ; k++ {
		w.ws()
		w.path = append(w.path, seg{idx: k})
		if err := w.value(depth + 1); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
		w.ws()
		if w.i >= len(w.src) {
			return errJSON
		}
		switch w.src[w.i] {
		case ',':
			w.i++
		case ']':
			w.i++
			return nil
		default:
			return errJSON
		}
	}
}

// skip consumes a value without reporting what is inside it.
func (w *walker) skip(depth int) error {
	visit := w.visit
	w.visit = func(byte, int, int) {}
	err := w.value(depth)
	w.visit = visit
	return err
}

func (w *walker) isField(raw []byte) bool {
	k := raw
	if containsByte(raw, '\\') {
		k = unquote(nil, raw)
	}
	w.lower = w.lower[:0]
	for _, c := range k {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		w.lower = append(w.lower, c)
	}
	return w.fields[string(w.lower)]
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// unquote appends the decoded contents of a JSON string body (no quotes) to dst.
func unquote(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		k := bytes.IndexByte(s[i:], '\\')
		if k < 0 {
			return append(dst, s[i:]...)
		}
		dst = append(dst, s[i:i+k]...)
		i += k
		if i+1 >= len(s) {
			dst = append(dst, '\\')
			continue
		}
		i++
		switch s[i] {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r, n := hex4(s[i+1:])
			if n == 0 {
				dst = append(dst, '\\', 'u')
				continue
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, n2 := hex4(s[min(i+3, len(s)):]); n2 > 0 && i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					}
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			dst = append(dst, s[i])
		}
	}
	return dst
}

func hex4(s []byte) (rune, int) {
	if len(s) < 4 {
		return 0, 0
	}
	v, err := strconv.ParseUint(string(s[:4]), 16, 32)
	if err != nil {
		return 0, 0
	}
	return rune(v), 4
}

const hexDigits = "0123456789abcdef"

// appendQuoted appends s as a JSON string literal.
func appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// edit replaces src[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

func applyEdits(dst, src []byte, edits []edit) []byte {
	last := 0
	for _, ed := range edits {
		dst = append(dst, src[last:ed.start]...)
		dst = append(dst, ed.repl...)
		last = ed.end
	}
	return append(dst, src[last:]...)
}

// maskJSON masks every string value of the JSON document src and replaces
// json_fields values. ok is false when src is not JSON; c is then untouched.
//
// Only the string literals whose masked text differs are rewritten; the rest
// of the document is copied byte for byte, and when nothing changed src
// itself is returned, so a clean body costs one walk and one scan of its
// strings. A string without backslashes is scanned in place, without a copy.
func (e *Engine) maskJSON(src []byte, c *Counts) ([]byte, bool) {
	var edits []edit
	var scratch [2][]byte
	found := newCounts("", true, false)
	grow := 0
	w := walker{src: src, fields: e.fields}
	w.visit = func(kind byte, start, end int) {
		var r []byte
		switch kind {
		case kField:
			found.add(JSONFieldName)
			r = appendQuoted(nil, e.fieldRp)
		case kString:
			var changed bool
			if r, changed = e.maskJSONString(&scratch, src[start+1:end-1], w.esc, found); !changed {
				return
			}
		default:
			return
		}
		edits = append(edits, edit{start, end, r})
		grow += len(r) - (end - start)
	}
	if w.walk() != nil {
		return nil, false
	}
	c.merge(found)
	if len(edits) == 0 {
		return src, true
	}
	return applyEdits(make([]byte, 0, len(src)+grow), src, edits), true
}

// maskJSONString masks the decoded contents of a string literal body (esc
// says it holds a backslash) and returns the new literal (quoted) when
// anything changed.
func (e *Engine) maskJSONString(scratch *[2][]byte, raw []byte, esc bool, c *Counts) ([]byte, bool) {
	text := raw
	if esc {
		scratch[0] = unquote(scratch[0][:0], raw)
		text = scratch[0]
	}
	out, _ := e.scan(scratch[1][:0], text, 0, true, escNone, c)
	scratch[1] = out
	if bytes.Equal(out, text) {
		return nil, false
	}
	return appendQuoted(nil, out), true
}

// jsonProc buffers an application/json body up to the cap, then masks its
// values; when the body is not JSON it masks bytes instead. A body over the
// cap, or one the memory budget has no room for, is masked as bytes when no
// json_fields are configured; with json_fields that would drop their
// masking, so it fails instead (ErrUninspectable).
type jsonProc struct {
	e        *Engine
	c        *Counts
	chunks   [][]byte // the body so far; each chunk is as large as all before it
	n        int
	mem      reservation // released by release, when the body is closed
	hint     int         // the Content-Length of an uncompressed body: reserved at once
	fallback *textScanner
	err      error
}

func (j *jsonProc) process(out, in []byte, eof bool) []byte {
	if j.fallback != nil {
		return j.fallback.feed(out, in, eof)
	}
	if j.err != nil {
		return out
	}
	if j.n+len(in) > j.e.jsonMax {
		return j.tooLarge(out, in, eof, "it is larger than "+strconv.Itoa(j.e.jsonMax>>20)+" MiB")
	}
	// Reserving a known length at once keeps many documents from each
	// holding part of the budget and none getting all it needs.
	if !j.mem.cover(2 * int64(max(j.n+len(in), min(j.hint, j.e.jsonMax)))) {
		return j.tooLarge(out, in, eof, "crewgate's memory for bodies (mask.memory) is full")
	}
	j.add(in)
	if !eof {
		return out
	}
	body := j.body()
	if r, ok := j.e.maskJSON(body, j.c); ok {
		j.chunks = nil
		if len(out) == 0 {
			return r // the reader serves it as is: no copy
		}
		return append(out, r...)
	}
	return j.toBytes(out, eof)
}

// tooLarge handles a document that cannot be held whole.
func (j *jsonProc) tooLarge(out, in []byte, eof bool, why string) []byte {
	if len(j.e.fields) > 0 {
		j.err = fmt.Errorf("%w: a JSON body must be read whole to mask its json_fields, and %s", ErrUninspectable, why)
		j.chunks = nil
		j.mem.release()
		return out
	}
	out = j.toBytes(out, false)
	j.mem.release()
	return j.fallback.feed(out, in, eof)
}

func (j *jsonProc) failure() error { return j.err }

func (j *jsonProc) release() { j.mem.release() }

// add buffers p in chunks that double in size, so that a large body is
// copied once while it arrives and once more when it is joined, and no
// chunk is copied as it grows.
func (j *jsonProc) add(p []byte) {
	for len(p) > 0 {
		k := len(j.chunks) - 1
		if k < 0 || len(j.chunks[k]) == cap(j.chunks[k]) {
			// The first chunk fits what arrived (small bodies stay small);
			// each later one doubles the total.
			j.chunks = append(j.chunks, make([]byte, 0, max(j.n, len(p), 512)))
			k++
		}
		c := j.chunks[k]
		m := min(len(p), cap(c)-len(c))
		j.chunks[k] = append(c, p[:m]...)
		j.n += m
		p = p[m:]
	}
}

// body returns the buffered body in one slice and keeps it as the only chunk.
func (j *jsonProc) body() []byte {
	if len(j.chunks) == 1 {
		return j.chunks[0]
	}
	b := make([]byte, 0, j.n)
	for _, c := range j.chunks {
		b = append(b, c...)
	}
	j.chunks = [][]byte{b}
	return b
}

func (j *jsonProc) toBytes(out []byte, eof bool) []byte {
	j.c.setForm("json-bytes")
	j.fallback = &textScanner{e: j.e, c: j.c, esc: true}
	buf := j.body()
	j.chunks = nil
	return j.fallback.feed(out, buf, eof)
}
