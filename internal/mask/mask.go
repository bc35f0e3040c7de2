// Package mask masks secrets and personal data in HTTP bodies as they stream.
//
// An Engine is built once per session from a Config and is safe for
// concurrent use. Each body gets its own masker:
//
//	counts, err := engine.WrapResponse(resp) // header now, body as it streams, trailer at its end
//	if err != nil { /* refuse: 502 response-uninspectable */ }
//
// Wrap picks the body form from the content type:
//
//   - text/event-stream: lines end at CR, LF or CRLF; the text of each LLM
//     stream (formats.go: OpenAI Chat, OpenAI Responses, Anthropic, Gemini)
//     and the plain-text data of each event type is masked as one text
//     across events; held text goes out with the stream's next event or in a
//     flush event before the event that ends it; a delta whose text is all
//     held and that carries nothing else is dropped.
//   - application/json and +json: string values are masked and json_fields
//     replaced; the output stays valid JSON. A document is held whole, against
//     Config.Budget; one over Config.JSONMaxBytes or without room is masked
//     as bytes, or, with json_fields, fails with ErrUninspectable.
//   - text/*, NDJSON, JSON Lines, XML, form bodies, bodies with a charset
//     and bodies without a content type: byte-stream masking with a bounded
//     hold-back.
//   - anything else is binary: the literals only, with a same-length fill.
//
// The literals (the values crewgate injected) are found in every form a
// client decodes (see literal.go) and everywhere: a literal-only pass
// follows the JSON and SSE maskers, and MaskHeader masks header and trailer
// values. gzip, deflate, br and zstd bodies are decoded first and sent
// uncompressed; FixHeader removes Content-Encoding then. Content-Length is
// removed whenever a body is rewritten. Any other encoding is an error
// (ErrUninspectable): such a body must be refused, not passed on.
//
// Streamed output equals one-shot output for every way of splitting the input
// into reads (and, for SSE, the text into events): every match decision at a
// position depends only on a bounded window of text around it (and, in raw
// JSON, on the parity of the backslashes before it, which is carried across
// reads), and the streaming masker holds back text exactly until that window
// is complete.
// See docs/masking.md for detectors, guarantees and limits.
package mask

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/template"
)

// DefaultReplacement is the replacement template used when Config.Replacement is empty.
const DefaultReplacement = "[MASKED:{{.Name}}]"

// DefaultJSONMaxBytes is the JSON size cap used when Config.JSONMaxBytes is zero.
const DefaultJSONMaxBytes = 8 << 20

// Config selects what an Engine masks. The zero value masks with the default detector set.
type Config struct {
	// Detectors lists built-in detector names. Empty or "default" means every
	// built-in detector; "none" means no built-in detector.
	Detectors []string
	// JSONFields names object keys (any depth, case-insensitive) whose values
	// are replaced whatever they contain.
	JSONFields []string
	// Custom adds regular-expression detectors.
	Custom []Custom
	// Replacement is a text/template executed with {{.Name}}, the detector name.
	Replacement string
	// Literals are exact values that are always masked, together with their
	// base64 (standard and URL alphabets, any alignment) and URL-encoded forms.
	Literals []Literal
	// Budget, when set, is the memory all bodies held at once may use
	// (mask.memory); a JSON document reserves twice its size from it as it
	// arrives (the document and its masked copy).
	Budget Budget
	// JSONMaxBytes caps how much of an application/json body is buffered;
	// larger bodies are masked as a byte stream.
	JSONMaxBytes int
}

// Budget is memory shared by every body crewgate holds. Reserve waits a
// bounded time for room and reports whether it got it.
type Budget interface {
	Reserve(n int64) bool
	Release(n int64)
}

// Custom is a regular-expression detector (Go regexp syntax).
type Custom struct {
	Name    string
	Pattern string
}

// Literal is an exact value to mask, such as a credential crewgate injects.
type Literal struct {
	Name  string // detector name in counts and replacements; "credential" when empty
	Value string
}

// JSONFieldName is the detector name counted for values replaced by Config.JSONFields.
const JSONFieldName = "json_field"

// minLiteral is the shortest literal accepted: shorter values over-mask ordinary text.
const minLiteral = 6

// Engine masks bodies. It is immutable and safe for concurrent use.
type Engine struct {
	dets    []*detector
	trig    [256]bool
	pair    [1 << 10]uint64 // bit c<<8|d is set when a match may start with byte c followed by d
	noStart [256][4]uint64  // noStart[c] has bit p set when no match starts at c after an unescaped p
	first   [256][]entry
	email   *detector
	kw      *keywordScan // gitleaks rules: tried where their keywords occur
	fields  map[string]bool
	jsonMax int
	budget  Budget
	fieldRp []byte

	// lit masks the literals only, with their replacements (headers);
	// fill masks them with a same-length fill (binary bodies).
	lit, fill *Engine
	fillMode  bool
	// lit only: the literals' values lower-cased, and the length of the
	// shortest, which no match of any of their forms is shorter than.
	lowerValues []string
	shortest    int
}

// entry ties a literal prefix (possibly empty) to the detector tried where it occurs.
type entry struct {
	lit string
	det *detector
}

// New builds an Engine from cfg. Errors name the offending detector or pattern.
func New(cfg Config) (*Engine, error) {
	tmplText := cfg.Replacement
	if tmplText == "" {
		tmplText = DefaultReplacement
	}
	tmpl, err := template.New("replacement").Option("missingkey=error").Parse(tmplText)
	if err != nil {
		return nil, fmt.Errorf("mask: replacement template: %w", err)
	}
	repl := func(name string) ([]byte, error) {
		var b bytes.Buffer
		if err := tmpl.Execute(&b, struct{ Name string }{name}); err != nil {
			return nil, fmt.Errorf("mask: replacement template for %q: %w", name, err)
		}
		return b.Bytes(), nil
	}

	e := &Engine{jsonMax: cfg.JSONMaxBytes, budget: cfg.Budget, fields: map[string]bool{}}
	if e.jsonMax <= 0 {
		e.jsonMax = DefaultJSONMaxBytes
	}

	names, err := selectBuiltins(cfg.Detectors)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		e.dets = append(e.dets, builtin(n))
	}
	seen := map[string]bool{}
	for _, d := range e.dets {
		seen[d.name] = true
	}
	for _, c := range cfg.Custom {
		if c.Name == "" {
			return nil, fmt.Errorf("mask: custom detector with pattern %q has no name", c.Pattern)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("mask: custom detector %q: name already used", c.Name)
		}
		seen[c.Name] = true
		d, err := newCustom(c.Name, c.Pattern)
		if err != nil {
			return nil, err
		}
		e.dets = append(e.dets, d)
	}
	var lits []*detector
	var lowerValues []string
	shortest := math.MaxInt
	for i, l := range cfg.Literals {
		name := l.Name
		if name == "" {
			name = "credential"
		}
		if len(l.Value) < minLiteral {
			return nil, fmt.Errorf("mask: literal %d (%s) is shorter than %d bytes", i, name, minLiteral)
		}
		lits = append(lits, literalDetectors(name, l.Value)...)
		lowerValues = append(lowerValues, strings.ToLower(l.Value))
		shortest = min(shortest, len(l.Value))
	}
	e.dets = append(e.dets, lits...)
	for _, f := range cfg.JSONFields {
		if f == "" {
			return nil, errors.New("mask: empty json_fields entry")
		}
		e.fields[strings.ToLower(f)] = true
	}
	if e.fieldRp, err = repl(JSONFieldName); err != nil {
		return nil, err
	}

	for i, d := range e.dets {
		d.prio = i
	}
	e.kw = newKeywordScan(e.dets)
	for _, d := range e.dets {
		if d.repl, err = repl(d.name); err != nil {
			return nil, err
		}
		if bytes.ContainsFunc(d.repl, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("mask: replacement %q for detector %q holds a control character; it must fit on one header line", d.repl, d.name)
		}
	}
	e.index()
	// Headers and binary bodies are searched for the literals only.
	e.lit = &Engine{dets: lits, lowerValues: lowerValues, shortest: shortest, fields: map[string]bool{}, jsonMax: e.jsonMax, fieldRp: e.fieldRp}
	e.lit.index()
	e.fill = &Engine{dets: lits, fields: map[string]bool{}, jsonMax: e.jsonMax, fieldRp: e.fieldRp, fillMode: true}
	e.fill.index()
	// A replacement that a detector would match again breaks idempotence.
	for _, d := range append(slices.Clone(e.dets), &detector{name: JSONFieldName, repl: e.fieldRp}) {
		if out := e.maskString(d.repl, nil); !bytes.Equal(out, d.repl) {
			return nil, fmt.Errorf("mask: replacement %q for detector %q is itself masked; change the template or the pattern", d.repl, d.name)
		}
	}
	return e, nil
}

// index builds the prefilter tables for e.dets.
func (e *Engine) index() {
	for _, d := range e.dets {
		if d.name == "email" {
			e.email = d
			continue
		}
		for _, p := range d.prefixes {
			e.addEntry(p[0], p, d)
		}
		if d.firstBytes != nil {
			for b := range 256 {
				if d.firstBytes[b] {
					e.addEntry(byte(b), "", d)
				}
			}
		}
	}
	leftBits := map[*[256]bool]*[4]uint64{}
	for c := range 256 {
		if len(e.first[c]) == 0 {
			continue
		}
		ns := [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
		for _, en := range e.first[c] {
			l := en.det.left
			if l == nil {
				ns = [4]uint64{}
				break
			}
			lb := leftBits[l]
			if lb == nil {
				lb = new([4]uint64)
				for p := range 256 {
					if l[p] {
						lb[p>>6] |= 1 << (p & 63)
					}
				}
				leftBits[l] = lb
			}
			for k := range ns {
				ns[k] &= lb[k]
			}
		}
		e.noStart[c] = ns
	}
}

// addEntry registers d to be tried where byte c starts lit (or anywhere c occurs when lit is empty).
func (e *Engine) addEntry(c byte, lit string, d *detector) {
	e.trig[c] = true
	if len(lit) >= 2 {
		x := uint(c)<<8 | uint(lit[1])
		e.pair[x>>6] |= 1 << (x & 63)
	} else {
		for d := range uint(256) {
			x := uint(c)<<8 | d
			e.pair[x>>6] |= 1 << (x & 63)
		}
	}
	e.first[c] = append(e.first[c], entry{lit: lit, det: d})
	// Longer literals first keeps the order of attempts deterministic and cheap.
	sort.SliceStable(e.first[c], func(i, j int) bool { return len(e.first[c][i].lit) > len(e.first[c][j].lit) })
}

// Detectors returns the names of the detectors the engine runs, in priority order.
func (e *Engine) Detectors() []string {
	var out []string
	for _, d := range e.dets {
		if !slices.Contains(out, d.name) {
			out = append(out, d.name)
		}
	}
	return out
}

// MaskString masks s in one shot, as if it were a whole text/plain body.
func (e *Engine) MaskString(s string) string {
	return string(e.maskString([]byte(s), nil))
}

func (e *Engine) maskString(b []byte, c *Counts) []byte {
	out, _ := e.scan(nil, b, 0, true, escNone, c)
	return out
}

// Counts reports what masking one body did. Its methods are safe to call
// while the body streams and after it is closed. The zero value counts a
// head alone (MaskHeader).
type Counts struct {
	mu      sync.Mutex
	scanned bool
	decoded bool
	form    string
	n       map[string]int
}

func newCounts(form string, scanned, decoded bool) *Counts {
	return &Counts{form: form, scanned: scanned, decoded: decoded, n: map[string]int{}}
}

func (c *Counts) add(name string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[name]++
	c.mu.Unlock()
}

// merge adds the counts of o, which nobody else uses, to c.
func (c *Counts) merge(o *Counts) {
	if c == nil || len(o.n) == 0 {
		return
	}
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	for k, v := range o.n {
		c.n[k] += v
	}
	c.mu.Unlock()
}

func (c *Counts) setForm(form string) {
	c.mu.Lock()
	c.form = form
	c.mu.Unlock()
}

// Scanned reports whether the body was inspected. A false value means the
// body passed through unmasked (binary type or unknown encoding), which is not
// the same as clean.
func (c *Counts) Scanned() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scanned
}

// Decoded reports whether the body was decompressed, so that the caller must
// drop Content-Encoding.
func (c *Counts) Decoded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.decoded
}

// Form names how the body was handled: "sse", "json", "bytes", "json-bytes"
// (JSON over the size cap or not parseable), or "none" when not scanned.
func (c *Counts) Form() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.form
}

// ByDetector returns a copy of the number of replacements per detector name.
func (c *Counts) ByDetector() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.n))
	for k, v := range c.n {
		m[k] = v
	}
	return m
}

// Total returns the number of replacements so far.
func (c *Counts) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, v := range c.n {
		t += v
	}
	return t
}

// FixHeader adjusts response (or request) headers for a body wrapped by
// Engine.Wrap: a scanned body loses Content-Length (masking changes lengths)
// and a decoded body also loses Content-Encoding. Call it before the headers
// are written.
func FixHeader(h http.Header, c *Counts) {
	if c.Scanned() {
		h.Del("Content-Length")
	}
	if c.Decoded() {
		h.Del("Content-Encoding")
	}
}

// WrapResponse masks resp for the crew: its header now, its body as it
// streams and its trailer once the body has been read; it fixes resp's
// headers and ContentLength to match. An error (wrapping ErrUninspectable)
// means resp must be refused; its body is left to the caller to close.
func (e *Engine) WrapResponse(resp *http.Response) (*Counts, error) {
	if resp.Body == nil || resp.Body == http.NoBody {
		c := newCounts("none", true, false)
		e.MaskHeader(resp.Header, c)
		return c, nil
	}
	body, c, err := e.wrap(resp.Body, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Encoding"), resp.ContentLength)
	if err != nil {
		return nil, err
	}
	e.MaskHeader(resp.Header, c)
	r, rewritten := body.(*reader)
	if !rewritten {
		return c, nil // a binary body and no literal to look for anywhere
	}
	// net/http fills resp.Trailer at the body's end, with a new map when
	// the head declared none: give it one now, so that the masker holds
	// the map the trailers arrive in, declared or not.
	if resp.Trailer == nil {
		resp.Trailer = http.Header{}
	}
	r.trailer, r.eng, r.counts = resp.Trailer, e, c
	resp.Body = body
	if c.Form() == "binary" && !c.Decoded() {
		return c, nil // a same-length fill: Content-Length stays true
	}
	FixHeader(resp.Header, c)
	resp.ContentLength = -1
	if c.Decoded() {
		resp.Uncompressed = true
	}
	return c, nil
}
