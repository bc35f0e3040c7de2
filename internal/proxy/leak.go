package proxy

// Placeholder leaks. The crew holds a placeholder where it would hold an
// upstream's credential; the placeholder sent anywhere but that upstream is
// what a prompt-injected crew does when told to hand "the API key" on, so it
// is refused (placeholder-leak) and audited, in whatever form the receiving
// host could decode:
//
//   - the host name (before it is looked up), the URL and every header name
//     and value, after undoing escapes round by round until nothing changes
//     (at most maxRounds): %XX and %uXXXX, \uXXXX, \xXX and backslashed
//     punctuation, HTML numeric and a few named references, quoted-printable
//     =XX and soft line breaks, and CR and LF dropped (MIME base64 lines), so
//     that partial, mixed and double encodings come out as the placeholder;
//   - in each round's text, the placeholder in base64 (standard and URL
//     alphabets, padded or not, at each of the three alignments, so that it
//     is found inside a longer encoded string such as Basic credentials),
//     and, case-insensitively, raw, as hex, and as UTF-16 and UTF-32 (both
//     byte orders);
//   - in headers and the URL, every run of base64 characters long enough to
//     hold a form, decoded at each of its four offsets and searched again
//     (a form inside base64: Basic credentials with an escaped password,
//     base64 twice);
//   - in the body: the same search over the raw bytes and over the view
//     rules read (reqbody: Content-Encoding undone, charsets converted, JSON
//     strings, form fields, multipart parts, XML text), for the part read up
//     front; beyond it, the body is searched as it streams to the upstream
//     (leakBody), each window overlapping the last by the hold-back, and the
//     last hold-back bytes kept until the next window is searched, so the
//     upstream never gets a form whole (one longer than the hold-back, say
//     padded with line breaks, is found only in the part read up front). A
//     compressed body that is not decoded up front is decoded as it streams
//     and the decoding is what the upstream gets (see watchDecoded).

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/mask"
	"github.com/crewgate/crewgate/internal/reqbody"
)

// maxRounds bounds how many times escapes are undone: %252563 is two.
const maxRounds = 8

// leakChunk is how much of a streamed body is searched at a time.
const leakChunk = 32 << 10

// leakScratch is about what one search of a body holds besides the body: a
// window and two rounds of unescaping it.
const leakScratch = 3 * (leakChunk + 8<<10)

// maxEscape is the longest escape of one byte that unescape undoes:
// "&#x00000063;".
const maxEscape = 12

// leakFinder finds the placeholders of some upstreams in a text.
type leakFinder struct {
	exact  []formGroup // searched as they are (base64), by their first four bytes
	folded []formGroup // lower-case, matched whatever the case of letters, by their first byte
	min    int         // the shortest placeholder: a shorter text holds none
	minTok int         // the shortest base64 run that can decode to a form
	hold   int         // how far a form may reach back in a streamed body
}

// formGroup is the forms that share a prefix, searched for once.
type formGroup struct {
	prefix []byte
	forms  []placeholderForm
}

type placeholderForm struct {
	b     []byte
	owner string // the upstream whose placeholder it is
}

// newLeakFinder returns a finder for the placeholders of routes, or nil
// when there are none: the check then costs nothing.
func newLeakFinder(routes []*route) *leakFinder {
	if len(routes) == 0 {
		return nil
	}
	f := &leakFinder{min: int(^uint(0) >> 1)}
	longest := 0
	for _, r := range routes {
		ph := r.Placeholder
		f.min, longest = min(f.min, len(ph)), max(longest, len(ph))
		exact, folded := placeholderForms(ph)
		for _, s := range exact {
			f.exact = addForm(f.exact, s[:min(4, len(s))], s, r.Name)
		}
		for _, s := range folded {
			f.folded = addForm(f.folded, s[:1], s, r.Name)
		}
	}
	f.minTok = 4 * f.min / 3
	// The longest form searched is UTF-32 (four bytes a character), and
	// each of its bytes may be escaped.
	f.hold = max(4<<10, maxEscape*4*longest)
	return f
}

func addForm(groups []formGroup, prefix, s, owner string) []formGroup {
	p := []byte(prefix)
	fm := placeholderForm{b: []byte(s), owner: owner}
	for i := range groups {
		if bytes.Equal(groups[i].prefix, p) {
			groups[i].forms = append(groups[i].forms, fm)
			return groups
		}
	}
	return append(groups, formGroup{prefix: p, forms: []placeholderForm{fm}})
}

// placeholderForms returns the forms of ph searched as they are and those
// searched case-insensitively (lower-cased).
func placeholderForms(ph string) (exact, folded []string) {
	add := func(list *[]string, s string) {
		if s != "" && !slices.Contains(*list, s) {
			*list = append(*list, s)
		}
	}
	for _, f := range mask.Base64Fragments(ph) {
		add(&exact, f)
	}
	low := asciiLower(ph)
	add(&folded, low)
	add(&folded, hex.EncodeToString([]byte(ph)))
	u16le, u16be := mask.UTF16(low)
	var u32le, u32be []byte
	for _, r := range low {
		u32le = append(u32le, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
		u32be = append(u32be, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	for _, b := range [][]byte{u16le, u16be, u32le, u32be} {
		add(&folded, string(b))
	}
	return exact, folded
}

// finderFor is the finder for a request to route to (nil: a host no
// upstream claims).
func (p *Proxy) finderFor(to *route) *leakFinder {
	if to != nil {
		return to.leak
	}
	return p.leak
}

// scratch is the buffers one search reuses.
type scratch struct{ a, b, text []byte }

// find returns the owner of a placeholder b holds in any form, or "".
// tokens says how many times base64 runs are decoded and searched again.
func (f *leakFinder) find(b []byte, tokens int, s *scratch) string {
	if f == nil || len(b) < f.min {
		return ""
	}
	if s == nil {
		s = &scratch{}
	}
	cur := b
	for round := 0; ; round++ {
		if o := f.search(cur); o != "" {
			return o
		}
		if round == maxRounds {
			break
		}
		dst := &s.a
		if round%2 == 1 {
			dst = &s.b
		}
		next, changed := appendUnescaped((*dst)[:0], cur)
		*dst = next
		if !changed {
			break
		}
		cur = next
	}
	if tokens > 0 {
		return f.inBase64Runs(cur, tokens-1)
	}
	return ""
}

// search looks for the forms in b as it is.
func (f *leakFinder) search(b []byte) string {
	if o := searchGroups(b, f.exact); o != "" {
		return o
	}
	return searchFolded(b, f.folded)
}

// searchFolded is searchGroups for lower-case forms grouped by their first
// byte, matching ASCII letters in b in either case without copying b.
func searchFolded(b []byte, groups []formGroup) string {
	for _, g := range groups {
		first := g.prefix[0]
		for _, c := range [2]byte{first, upper(first)} {
			for i := 0; ; {
				j := bytes.IndexByte(b[i:], c)
				if j < 0 {
					break
				}
				at := b[i+j:]
				for _, fm := range g.forms {
					if hasPrefixFold(at, fm.b) {
						return fm.owner
					}
				}
				i += j + 1
			}
			if upper(first) == first {
				break
			}
		}
	}
	return ""
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// hasPrefixFold reports whether s starts with low, ASCII letters in s in
// either case.
func hasPrefixFold(s, low []byte) bool {
	if len(s) < len(low) {
		return false
	}
	for i, c := range low {
		if d := s[i]; d != c && upper(c) != d {
			return false
		}
	}
	return true
}

func searchGroups(b []byte, groups []formGroup) string {
	for _, g := range groups {
		for i := 0; ; {
			j := bytes.Index(b[i:], g.prefix)
			if j < 0 {
				break
			}
			at := b[i+j:]
			for _, fm := range g.forms {
				if bytes.HasPrefix(at, fm.b) {
					return fm.owner
				}
			}
			i += j + 1
		}
	}
	return ""
}

// scan is find over a body-sized text, a window at a time, as leakBody
// searches a stream: its buffers stay small whatever the text's size.
func (f *leakFinder) scan(b []byte, s *scratch) string {
	if f == nil {
		return ""
	}
	for start := 0; ; start += leakChunk {
		end := min(start+leakChunk, len(b))
		if o := f.find(b[max(0, start-f.hold):end], 0, s); o != "" {
			return o
		}
		if end == len(b) {
			return ""
		}
	}
}

// inBase64Runs decodes every run of base64 characters (either alphabet)
// long enough to hold a form, from each of its first four offsets, and
// searches the decoding.
func (f *leakFinder) inBase64Runs(b []byte, tokens int) string {
	for i := 0; i < len(b); {
		if !isBase64(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && isBase64(b[j]) {
			j++
		}
		if j-i >= f.minTok {
			run := bytes.Clone(b[i:j])
			for k, c := range run {
				switch c {
				case '-':
					run[k] = '+'
				case '_':
					run[k] = '/'
				}
			}
			for off := range 4 {
				r := run[off:]
				r = r[:len(r)-len(r)%4]
				if rest := run[off+len(r):]; len(rest) >= 2 {
					r = run[off : off+len(r)+len(rest)]
				}
				d, _ := base64.RawStdEncoding.AppendDecode(nil, r)
				if o := f.find(d, tokens, nil); o != "" {
					return o
				}
			}
		}
		i = j
	}
	return ""
}

func isBase64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// appendUnescaped appends s with one round of escapes undone (see the top
// of this file) and reports whether anything changed; when nothing did, it
// appends nothing. A malformed escape is kept as written.
func appendUnescaped(dst, s []byte) ([]byte, bool) {
	e := newEscapes(s)
	done, changed := 0, false // s[:done] is in dst
	for i := e.from(0); i < len(s); i = e.from(i) {
		v, k, n := unescapeAt(s[i:])
		if n == 0 {
			i++
			continue
		}
		dst = append(dst, s[done:i]...)
		switch k {
		case asByte:
			dst = append(dst, byte(v))
		case asRune:
			dst = utf8.AppendRune(dst, v)
		}
		i += n
		done, changed = i, true
	}
	if !changed {
		return dst, false
	}
	return append(dst, s[done:]...), true
}

// escapeStarts are the bytes an escape starts with.
const escapeStarts = "%\\&=\r\n"

// escapes finds where escapes may start in a text, each byte of
// escapeStarts with its own IndexByte, so that a text without escapes costs
// a few vectorised passes and one with many costs no more than one pass a
// byte.
type escapes struct {
	s    []byte
	next [len(escapeStarts)]int // the next occurrence of each byte, len(s) for none
}

func newEscapes(s []byte) escapes {
	e := escapes{s: s}
	for k := range e.next {
		e.next[k] = -1
	}
	return e
}

// from returns where the first possible escape at or after i starts, or
// len(s).
func (e *escapes) from(i int) int {
	m := len(e.s)
	for k, n := range e.next {
		if n < i {
			n = len(e.s)
			if j := bytes.IndexByte(e.s[i:], escapeStarts[k]); j >= 0 {
				n = i + j
			}
			e.next[k] = n
		}
		m = min(m, n)
	}
	return m
}

// What an escape stands for.
const (
	asNothing = iota // a line break, dropped
	asByte           // %XX, \xXX, =XX
	asRune           // the others, written in UTF-8
)

// unescapeAt decodes the escape at the start of s: its value, what the
// value is, and its length, 0 when s does not start with an escape.
func unescapeAt(s []byte) (v rune, kind, n int) {
	switch s[0] {
	case '\r', '\n':
		return 0, asNothing, 1
	case '%':
		if v, ok := hexN(s[1:], 2); ok {
			return v, asByte, 3
		}
		if len(s) > 1 && (s[1] == 'u' || s[1] == 'U') {
			if v, ok := hexN(s[2:], 4); ok {
				return v, asRune, 6
			}
		}
	case '=':
		if v, ok := hexN(s[1:], 2); ok {
			return v, asByte, 3
		}
		switch {
		case bytes.HasPrefix(s, []byte("=\r\n")):
			return 0, asNothing, 3
		case bytes.HasPrefix(s, []byte("=\n")):
			return 0, asNothing, 2
		}
	case '\\':
		return unbackslash(s)
	case '&':
		if r, n := unentity(s); n > 0 {
			return r, asRune, n
		}
	}
	return 0, 0, 0
}

func unbackslash(s []byte) (rune, int, int) {
	if len(s) < 2 {
		return 0, 0, 0
	}
	switch s[1] {
	case 'u', 'U':
		v, ok := hexN(s[2:], 4)
		if !ok {
			return 0, 0, 0
		}
		if 0xd800 <= v && v < 0xdc00 && len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
			if lo, ok := hexN(s[8:], 4); ok && 0xdc00 <= lo && lo < 0xe000 {
				return 0x10000 + (v-0xd800)<<10 + (lo - 0xdc00), asRune, 12
			}
		}
		return v, asRune, 6 // a lone surrogate comes out as U+FFFD
	case 'x', 'X':
		if v, ok := hexN(s[2:], 2); ok {
			return v, asByte, 4
		}
	case '/', '\\', '"', '\'':
		return rune(s[1]), asByte, 2
	}
	return 0, 0, 0
}

// namedRefs are the HTML named references that stand for a character a
// placeholder or an escape is written with.
var namedRefs = map[string]rune{
	"amp": '&', "percnt": '%', "bsol": '\\', "num": '#', "semi": ';', "equals": '=', "lowbar": '_',
	"UnderBar": '_', "period": '.', "sol": '/', "plus": '+', "colon": ':', "quot": '"', "apos": '\'',
	"lt": '<', "gt": '>', "hyphen": '-', "dash": '-', "minus": '-',
}

// unentity decodes an HTML reference: &#DDD; or &#xHH; (leading zeros and
// the ';' optional, as browsers read them) or a named one.
func unentity(s []byte) (rune, int) {
	if len(s) < 3 {
		return 0, 0
	}
	if s[1] != '#' {
		end := bytes.IndexByte(s[:min(len(s), 11)], ';')
		if end < 0 {
			return 0, 0
		}
		if r, ok := namedRefs[string(s[1:end])]; ok {
			return r, end + 1
		}
		return 0, 0
	}
	i, base := 2, rune(10)
	if s[2] == 'x' || s[2] == 'X' {
		i, base = 3, 16
	}
	var v rune
	j := i
	for j < len(s) && j-i < 8 {
		d, ok := digit(s[j], base)
		if !ok {
			break
		}
		v = v*base + d
		j++
	}
	if j == i || v > utf8.MaxRune {
		return 0, 0
	}
	if j < len(s) && s[j] == ';' {
		j++
	}
	return v, j
}

func digit(c byte, base rune) (rune, bool) {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0'), true
	case base == 16 && 'a' <= c && c <= 'f':
		return rune(c-'a') + 10, true
	case base == 16 && 'A' <= c && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

func hexN(s []byte, n int) (rune, bool) {
	if len(s) < n {
		return 0, false
	}
	var v rune
	for _, c := range s[:n] {
		d, ok := digit(c, 16)
		if !ok {
			return 0, false
		}
		v = v<<4 | d
	}
	return v, true
}

// findString is find for a URL or header: base64 runs are decoded once.
func (f *leakFinder) findString(v string, s *scratch) string {
	if len(v) < f.min {
		return ""
	}
	s.text = append(s.text[:0], v...)
	return f.find(s.text, 1, s)
}

// inURL returns the owner of a placeholder in the request's URL.
func (f *leakFinder) inURL(req *http.Request) string {
	if f == nil {
		return ""
	}
	s := &scratch{}
	return f.findString(req.URL.String(), s)
}

// inHeader returns the owner of a placeholder in a header name or value.
func (f *leakFinder) inHeader(h http.Header) string {
	if f == nil {
		return ""
	}
	s := &scratch{}
	for name, vals := range h {
		if o := f.findString(name, s); o != "" {
			return o
		}
		for _, v := range vals {
			if o := f.findString(v, s); o != "" {
				return o
			}
		}
	}
	return ""
}

// inView returns the owner of a placeholder in a body's view: each text
// and the values (back to back: a placeholder split over two values is
// found too).
func (f *leakFinder) inView(v *reqbody.View, s *scratch) string {
	for i := range v.NumTexts() {
		if o := f.scan(v.Text(i), s); o != "" {
			return o
		}
	}
	vals, _ := v.Values()
	return f.scan(vals, s)
}

// watch is how a body the body step did not search whole is searched as
// it goes to the upstream.
type watch uint8

const (
	watchNone watch = iota
	// watchRaw: the body as sent.
	watchRaw
	// watchDecoded: the body's Content-Encoding is undone as it streams, and
	// the decoding goes to the upstream instead of the body as sent. Passing
	// the compressed bytes on would need to know which of them the
	// decoding searched so far depends on, and decoders keep output back
	// (flate until its 32 KiB window fills or a block ends, and a block has
	// no bound): no fixed hold-back of compressed bytes would do. Sent
	// decoded, the hold-back is exact and small, as request masking does for
	// the same reason, and every server reads an uncompressed body. The
	// upstream may get many times the bytes the crew sent; the crew could
	// have sent them itself.
	watchDecoded
)

// bodyLeaks is the body step's leak check on raw, the part of the body
// read up front (more: the body goes on). It searches the view of a whole
// body, and raw as sent where no view covers it; what it cannot search
// whole it leaves to leakBody (o.watch). It reports false when it refused.
func (p *Proxy) bodyLeaks(req *http.Request, raw []byte, more bool, o *outcome) bool {
	f := p.finderFor(o.route)
	if f == nil || len(raw) == 0 {
		return true
	}
	s := &scratch{}
	encs, err := reqbody.Encodings(strings.Join(req.Header.Values("Content-Encoding"), ","))
	whole := false // the view holds the whole body, decoded
	if err == nil && !more {
		var owner string
		if owner, whole = p.viewLeaks(req.Header, raw, len(encs) > 0, f, s); owner != "" {
			o.leak(owner, "body")
			return false
		}
	}
	if !whole {
		if owner := f.scan(raw, s); owner != "" {
			o.leak(owner, "body")
			return false
		}
	}
	switch {
	case err != nil:
		if p.cfg.Policy.AllowOversize() {
			o.note = "policy.oversize allow: placeholders not searched in the decoded body: " + err.Error()
			if more {
				o.watch = watchRaw
			}
			return true
		}
		o.refuse(http.StatusForbidden, errUninspectable, "",
			"the request body cannot be decoded, and a placeholder of another upstream could hide in it: "+err.Error()+
				" (policy.oversize: allow lets such bodies through, audited)")
		return false
	case more && len(encs) > 0:
		o.watch = watchDecoded
	case more:
		o.watch = watchRaw
	case !whole && len(encs) > 0:
		return p.decodedLeaks(raw, encs, f, o)
	}
	return true
}

// viewLeaks searches the view of a whole body, when the body memory has
// room for it now (else raw is searched as sent, or decoded a window at a
// time: neither needs the room); whole says the view holds all of the body.
func (p *Proxy) viewLeaks(h http.Header, raw []byte, compressed bool, f *leakFinder, s *scratch) (owner string, whole bool) {
	size := int64(len(raw))
	if compressed {
		size = logPrefix // the bound the view decodes to
	}
	n := min(size*reqbody.ViewFactor+leakScratch, p.cfg.BodyMemory)
	if !p.bodies.TryAcquire(n) {
		return "", false
	}
	defer p.bodies.Release(n)
	v, err := reqbody.Decode(h, raw, logPrefix)
	return f.inView(v, s), err == nil
}

// decodedLeaks searches the decoding of a whole compressed body whose view
// could not hold it (larger than the view's bound, corrupt, or no memory
// for a view), a window at a time, up to max_body decoded bytes; beyond
// that it is left to leakBody. It reports false when it refused.
func (p *Proxy) decodedLeaks(raw []byte, encs []string, f *leakFinder, o *outcome) bool {
	lb := newLeakBody(io.NopCloser(bytes.NewReader(raw)), encs, f)
	defer lb.Close()
	n, _ := io.Copy(io.Discard, io.LimitReader(lb, int64(p.cfg.Policy.MaxBody())+1))
	if r := lb.refusal(); r != nil {
		o.refusal = r
		return false
	}
	if n > int64(p.cfg.Policy.MaxBody()) {
		o.watch = watchDecoded
	}
	return true
}

// leakBody searches a body as it streams to the upstream, and fails the
// upstream request (and has leakGuard refuse it) before a form of a
// placeholder leaves whole: every window it searches overlaps the last by
// the finder's hold-back, and the last hold-back bytes it has read wait for
// the next window (or the end). With encs, it decodes the body first and
// passes the decoding on.
type leakBody struct {
	body io.ReadCloser // the crew's body
	encs []string      // codings to undo, in the order applied
	f    *leakFinder
	s    scratch

	mu      sync.Mutex  // Read against Close: a decoder is not safe for both at once
	src     io.Reader   // what is searched and passed on
	closers []io.Closer // decoders
	buf     []byte      // read and searched; buf[off:] not yet passed on
	off     int
	eof     bool
	err     error

	refused atomic.Pointer[refused]
	once    sync.Once
	onLeak  func(owner string)
}

func newLeakBody(body io.ReadCloser, encs []string, f *leakFinder) *leakBody {
	return &leakBody{body: body, encs: encs, f: f}
}

// errLeakInBody fails the upstream request; leakGuard answers the crew.
var errLeakInBody = errors.New("crewgate stopped the request body")

// crewError is an error reading the crew's own body, as opposed to one
// decoding it.
type crewError struct{ error }

type crewReader struct{ r io.Reader }

func (c crewReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = crewError{err}
	}
	return n, err
}

func (b *leakBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		ready := len(b.buf) - b.off
		if !b.eof {
			ready -= b.f.hold
		}
		if ready > 0 {
			n := copy(p, b.buf[b.off:b.off+ready])
			b.off += n
			return n, nil
		}
		if b.eof {
			return 0, io.EOF
		}
		if b.err != nil {
			return 0, b.err
		}
		b.fill()
	}
}

// fill reads and searches the next chunk.
func (b *leakBody) fill() {
	if b.src == nil && !b.open() {
		return
	}
	// Keep what is not passed on yet and the hold-back the next window
	// overlaps.
	if drop := min(b.off, max(0, len(b.buf)-b.f.hold)); drop > 0 {
		b.buf = b.buf[:copy(b.buf, b.buf[drop:])]
		b.off -= drop
	}
	start := len(b.buf)
	b.buf = slices.Grow(b.buf, leakChunk)
	n, err := readChunk(b.src, b.buf[start:start+leakChunk])
	b.buf = b.buf[:start+n]
	if owner := b.f.find(b.buf[max(0, start-b.f.hold):], 0, &b.s); owner != "" {
		b.leaked(owner)
	} else if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.fail(err)
	}
	if b.err != nil {
		b.buf = b.buf[:b.off] // nothing more goes on
	}
}

// readChunk fills buf unless r ends or fails first, and returns r's error
// as it is (io.ReadFull would turn a decoder's io.ErrUnexpectedEOF, a
// truncated stream, into a short read).
func readChunk(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// open sets up the decoders.
func (b *leakBody) open() bool {
	var src io.Reader = crewReader{b.body}
	for i := len(b.encs) - 1; i >= 0; i-- {
		dec, err := reqbody.NewDecoder(b.encs[i], src)
		if err != nil {
			b.fail(err)
			return false
		}
		b.closers = append(b.closers, dec)
		src = dec
	}
	b.src = src
	return true
}

func (b *leakBody) leaked(owner string) {
	r := &refused{code: http.StatusForbidden, kind: errLeak, rule: "placeholder", leaked: owner, where: "body",
		reason: "the request carries the placeholder of upstream " + owner + ", which belongs to its own host only"}
	b.refused.CompareAndSwap(nil, r)
	b.err = errLeakInBody
	b.once.Do(func() {
		if b.onLeak != nil {
			b.onLeak(owner)
		}
	})
}

func (b *leakBody) fail(err error) {
	b.err = err
	if _, crew := errors.AsType[crewError](err); crew {
		return
	}
	b.refused.CompareAndSwap(nil, &refused{code: http.StatusForbidden, kind: errUninspectable,
		reason: "the request body cannot be decoded, and a placeholder of another upstream could hide in it: " +
			strings.Join(b.encs, ", ") + " body: " + err.Error()})
	b.err = errLeakInBody
}

// refusal is why the body was stopped, or nil.
func (b *leakBody) refusal() *refused { return b.refused.Load() }

// Close releases the decoders. The crew's body is left to its server: when
// the body was stopped early, closing it here would let net/http (which no
// longer sees its own body in the request) read the rest of it as the next
// request on the crew's connection; unclosed, net/http drains or drops it.
func (b *leakBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.closers {
		c.Close()
	}
	b.closers = nil
	return nil
}

// watchBody puts a leakBody between the crew's body and the upstream when
// the body step left part of the body to it; nil otherwise.
func (p *Proxy) watchBody(req *http.Request, o *outcome, st *reqState) *leakBody {
	if o.watch == watchNone || req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	var encs []string
	if o.watch == watchDecoded {
		encs, _ = reqbody.Encodings(strings.Join(req.Header.Values("Content-Encoding"), ","))
		req.Header.Del("Content-Encoding")
		req.Header.Del("Content-Length")
		req.ContentLength = -1
	}
	lb := newLeakBody(req.Body, encs, p.finderFor(o.route))
	to := o.dest.String()
	lb.onLeak = func(owner string) {
		p.denied.Add(1)
		p.log.Warn("request refused", "kind", errLeak, "method", req.Method, "host", req.URL.Host, "path", req.URL.Path,
			"reason", "placeholder of upstream "+owner+" in the request body")
		p.record(audit.Event{Type: audit.TypeLeak, ID: st.id, Leak: &audit.Leak{Upstream: owner, To: to, Where: "body"}})
	}
	req.Body = lb
	return lb
}

// leakGuard answers the crew with crewgate's refusal when leakBody stopped
// the request's body.
type leakGuard struct {
	next http.RoundTripper
	body *leakBody
	p    *Proxy
}

// guard wraps t when lb watches the body.
func (p *Proxy) guard(t http.RoundTripper, lb *leakBody) http.RoundTripper {
	if lb == nil {
		return t
	}
	return leakGuard{next: t, body: lb, p: p}
}

func (g leakGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(req)
	r := g.body.refusal()
	if r == nil {
		return resp, err
	}
	if resp != nil {
		resp.Body.Close()
	}
	if r.kind != errLeak { // a leak was counted and logged when found
		g.p.denied.Add(1)
		g.p.log.Warn("request refused", "kind", r.kind, "method", req.Method, "host", req.URL.Host, "path", req.URL.Path, "reason", r.reason)
	}
	return refusal(req, g.p.cfg.Session, r.code, r.kind, r.rule, r.reason), nil
}
