package mask

import (
	"bytes"
	"strconv"
)

// maxEvent caps one SSE event; a longer event switches the rest of the body
// to the byte-stream masker rather than buffering without bound.
const maxEvent = 1 << 20

// maxStreams and maxTmplBytes bound what a body keeps for its open text
// streams; past them the oldest stream is flushed and forgotten.
const (
	maxStreams   = 64
	maxTmplBytes = 4 << 20
)

var (
	bom         = []byte("\xef\xbb\xbf")
	messageType = []byte("message") // the type a client gives an event without one
)

// sseProc masks a text/event-stream body event by event. Lines end at CR,
// LF or CRLF, as the SSE specification says, and a CR that ends a read
// never holds an event back. The text of each LLM stream (a chat choice, a
// tool call, a content block; see formats.go) and the data of the plain-text
// events of one event type are each masked as one text across events: the
// one-shot text is what a client that appends the pieces reads, the data
// lines of one event joined with "\n" and the data of successive events
// with nothing between them, so an event boundary is no word boundary. A
// piece that could still start a match is held and sent with the stream's
// next event, or in a flush event when the stream ends; an event whose text
// is all held and that carries nothing else is dropped.
type sseProc struct {
	e *Engine
	c *Counts
	t *table

	pending  []byte // the event being read
	scanned  int    // pending[:scanned] is split into lines
	crLine   bool   // the line before pending[scanned] ended with the last byte read, a CR: an LF there belongs to it
	crEvent  bool   // the last event ended with the last byte read, a CR: an LF first in the next read belongs to it
	crOut    bool   // and that event was written, so that LF is too
	started  bool   // the start was checked for a byte order mark
	fallback *textScanner

	streams   map[string]*stream
	order     []*stream // open streams, oldest first
	tmplBytes int
	serial    int         // events read
	mem       reservation // see room

	// Sequence numbers as sent (OpenAI Responses): upstream + seqShift.
	seqShift int64
	seqLast  int64 // the last number sent
	seqSent  bool
	seqTaken bool // a flush took seqLast: the next event must be numbered above it

	// Per-event scratch.
	ev       sseEvent
	data     []byte
	w        walker
	visitFn  func(byte, int, int)
	info     bool // the event holds a scalar no format names
	hits     []hit
	edits    []sedit
	spans    []sspan
	arena    []byte
	key      []byte
	typ      []byte
	unq      []byte
	text     []byte
	newData  []byte
	endKeys  [][2]int
	endArena []byte
	scratch  [2][]byte
	js       jsonState
	wrote    bool // the event just read was written (in part) rather than dropped

	// Flush scratch.
	ftext  []byte
	fedits []edit
	fbuf   []byte
	fdata  []byte
}

// stream is one text stream: its scanner and the last event that carried
// its text, from which a flush event is built.
type stream struct {
	key   string
	scope int // key[:scope] is what an end event names
	f     int // format; -1 for plain-text events
	s     textScanner
	tmpl  eventTmpl
	seen  int // serial of the last event with its text
	last  int // index in hits of its last text in that event
}

// eventTmpl is an event kept to build a flush event from: the stream's
// span holds the flushed text, other streams' spans "", and in an event that
// is not plain (see format.meta) the other strings "".
type eventTmpl struct {
	raw      []byte
	lines    []sseLine
	lastData int
	data     []byte // the JSON as sent; empty for plain-text events
	spans    []tspan
	plain    bool
	seq      int64
	seqFree  bool // the event was dropped, so its number seq was never sent
}

func (t *eventTmpl) size() int { return len(t.raw) + len(t.data) }

const (
	spanSelf = iota
	spanOther
	spanBlank
	spanSeq
)

type tspan struct {
	start, end int
	kind       byte
}

// sspan is a span of an event being processed; owner is the stream whose
// text it holds, nil for a blank or seq span.
type sspan struct {
	start, end int
	kind       byte
	owner      *stream
}

// sedit replaces src[start:end] with repl; span, when >= 0, is the sspan
// that records where repl lands in the output.
type sedit struct {
	start, end int
	repl       []byte
	span       int
}

// hit is a scalar of an event's JSON: a string, a value a table names, or a
// json_fields value.
type hit struct {
	start, end int
	w          int32 // watch, or -1
	kind       byte
	esc        bool // a string holding a backslash
	caps       [maxCaps]int32
	st         *stream // the stream whose text it is
}

// sseEvent is one event as read: its lines and its data (the values of its
// data lines joined with "\n").
type sseEvent struct {
	raw      []byte
	lines    []sseLine
	lastData int
	data     []byte
	nData    int
	typ      []byte // the value of its event: line
	keep     bool   // it has id: or retry: lines, which a dropped event keeps
}

// sseLine is raw[start:end], ended by raw[end:next]; raw[val:end] is its
// field value.
type sseLine struct {
	start, end, next, val int
	field                 byte
}

// Fields of SSE lines.
const (
	fieldBlank = iota
	fieldData
	fieldEvent
	fieldID
	fieldRetry
	fieldComment
	fieldOther
)

func newSSE(e *Engine, c *Counts) *sseProc {
	p := &sseProc{e: e, c: c, t: sseTable(), streams: map[string]*stream{}, mem: reservation{b: e.budget}}
	p.visitFn = p.visit
	return p
}

func (p *sseProc) process(out, in []byte, eof bool) []byte {
	out, in = p.afterCR(out, in, eof)
	if p.fallback != nil {
		return p.fallback.feed(out, in, eof)
	}
	p.pending = append(p.pending, in...)
	if !p.started {
		var ok bool
		if out, ok = p.start(out, eof); !ok {
			return out
		}
	}
	out, start, fell := p.events(out, eof)
	if fell {
		return out
	}
	rest := len(p.pending) - start
	p.pending = p.pending[:copy(p.pending, p.pending[start:])]
	p.scanned -= start
	if rest > maxEvent || !p.room(cap(p.pending)+p.tmplBytes) {
		return p.toBytes(out, p.pending, eof)
	}
	if eof {
		out = p.flushAll(out)
		if rest > 0 {
			// An unterminated last event, which a client discards: mask its bytes as text.
			out = p.e.maskBytes(out, p.pending, p.c)
		}
		p.pending, p.scanned = p.pending[:0], 0
	}
	return out
}

// afterCR handles the first byte of a read that follows an event ended by
// a CR at the end of the last read: an LF there is the rest of its CRLF.
func (p *sseProc) afterCR(out, in []byte, eof bool) ([]byte, []byte) {
	if !p.crEvent || len(in) == 0 && !eof {
		return out, in
	}
	p.crEvent = false
	if len(in) > 0 && in[0] == '\n' {
		if p.crOut {
			out = append(out, '\n')
		}
		in = in[1:]
	}
	return out, in
}

// start passes a leading byte order mark on and leaves it out of the
// parse, as a client drops it. It reports false while the bytes so far
// could still be one.
func (p *sseProc) start(out []byte, eof bool) ([]byte, bool) {
	if len(p.pending) < len(bom) && !eof && bytes.HasPrefix(bom, p.pending) {
		return out, false
	}
	p.started = true
	if bytes.HasPrefix(p.pending, bom) {
		out = append(out, bom...)
		p.pending = p.pending[:copy(p.pending, p.pending[len(bom):])]
	}
	return out, true
}

// events splits p.pending into lines from p.scanned on and masks each
// complete event. It returns where the incomplete event starts, or fell
// when the body switched to the byte-stream masker.
func (p *sseProc) events(out []byte, eof bool) (_ []byte, start int, fell bool) {
	buf := p.pending
	i := p.scanned
	if p.crLine && i < len(buf) {
		p.crLine = false
		if buf[i] == '\n' {
			i++
		}
	}
	for {
		line := i
		end := indexEOL(buf, line)
		if end < 0 {
			break
		}
		i = end + 1
		tail := false // a CR that ends what has arrived: an LF may follow
		if buf[end] == '\r' {
			if i < len(buf) {
				if buf[i] == '\n' {
					i++
				}
			} else if !eof {
				tail = true
			}
		}
		if end > line {
			if tail {
				p.crLine = true
				break
			}
			continue
		}
		// A blank line: the event is complete. Its length up to the blank
		// line decides the fallback, so that how it was read does not.
		if end-start > maxEvent {
			return p.toBytes(out, buf[start:], eof), 0, true
		}
		out = p.event(out, buf[start:i])
		start = i
		if tail {
			p.crEvent, p.crOut = true, p.wrote
			break
		}
	}
	p.scanned = i
	return out, start, false
}

// toBytes masks rest and everything after it as one byte stream.
func (p *sseProc) toBytes(out, rest []byte, eof bool) []byte {
	out = p.flushAll(out)
	p.c.setForm("sse-bytes")
	p.fallback = &textScanner{e: p.e, c: p.c}
	out = p.fallback.feed(out, rest, eof)
	p.pending = nil
	p.release()
	return out
}

// sseFree is what an SSE body holds without reserving it from the budget:
// an ordinary event and a few templates.
const sseFree = 16 << 10

// room reserves from the budget what holding n bytes (the event being read
// and the flush templates) needs beyond sseFree; false means no room came
// in time, and the body is masked as bytes from there on, which holds
// almost nothing.
func (p *sseProc) room(n int) bool { return p.mem.cover(int64(n - sseFree)) }

func (p *sseProc) release() { p.mem.release() }

func (e *Engine) maskBytes(out, b []byte, c *Counts) []byte {
	out, _ = e.scan(out, b, 0, true, escNone, c)
	return out
}

// indexEOL returns the index of the first CR or LF in b[i:], or -1.
func indexEOL(b []byte, i int) int {
	s := b[i:]
	k := bytes.IndexByte(s, '\n')
	lim := s
	if k >= 0 {
		lim = s[:k]
	}
	if j := bytes.IndexByte(lim, '\r'); j >= 0 {
		return i + j
	}
	if k < 0 {
		return -1
	}
	return i + k
}

// parse splits raw, a complete event, into lines and fields.
func (p *sseProc) parse(raw []byte) *sseEvent {
	ev := &p.ev
	*ev = sseEvent{raw: raw, lines: ev.lines[:0], lastData: -1}
	for i := 0; i < len(raw); {
		end := indexEOL(raw, i)
		if end < 0 {
			end = len(raw)
		}
		next := end
		if next < len(raw) {
			next++
			if raw[end] == '\r' && next < len(raw) && raw[next] == '\n' {
				next++
			}
		}
		l := sseLine{start: i, end: end, next: next, val: end}
		if end > i {
			name := raw[i:end]
			if c := bytes.IndexByte(name, ':'); c >= 0 {
				name, l.val = name[:c], i+c+1
				if l.val < end && raw[l.val] == ' ' {
					l.val++
				}
			}
			switch string(name) {
			case "data":
				l.field = fieldData
			case "event":
				l.field = fieldEvent
				ev.typ = raw[l.val:end]
			case "id":
				l.field, ev.keep = fieldID, true
			case "retry":
				l.field, ev.keep = fieldRetry, true
			case "":
				l.field = fieldComment
			default:
				l.field = fieldOther
			}
		}
		if l.field == fieldData {
			v := raw[l.val:end]
			switch ev.nData {
			case 0:
				ev.data = v
			case 1:
				p.data = append(append(append(p.data[:0], ev.data...), '\n'), v...)
				ev.data = p.data
			default:
				p.data = append(append(p.data, '\n'), v...)
				ev.data = p.data
			}
			ev.nData++
			ev.lastData = len(ev.lines)
		}
		ev.lines = append(ev.lines, l)
		i = next
	}
	return ev
}

// writeEvent writes an event with its data replaced: data is split at
// '\n' over the data lines, each keeping its line end; extra pieces follow
// the last data line with its line end, and data lines left without a piece
// are dropped. A synthetic event keeps only event: and data lines and ends
// with the last data line's line end: the event it copies may have ended
// with a CR whose LF came in the next read.
func writeEvent(out, raw []byte, lines []sseLine, lastData int, data []byte, synthetic bool) []byte {
	rest, more := data, true
	for i, l := range lines {
		if l.field != fieldData {
			if !synthetic || l.field == fieldEvent {
				out = append(out, raw[l.start:l.next]...)
			}
			continue
		}
		term := raw[l.end:l.next]
		for more {
			piece := rest
			if k := bytes.IndexByte(rest, '\n'); k >= 0 {
				piece, rest = rest[:k], rest[k+1:]
			} else {
				more = false
			}
			out = append(out, "data: "...)
			out = append(out, piece...)
			out = append(out, term...)
			if i != lastData {
				break
			}
		}
	}
	if synthetic {
		l := lines[lastData]
		out = append(out, raw[l.end:l.next]...)
	}
	return out
}

// writeKept writes what a dropped event keeps: its id: and retry: lines,
// which change the client's state without dispatching anything.
func (p *sseProc) writeKept(out []byte, ev *sseEvent) []byte {
	p.wrote = ev.keep
	if !ev.keep {
		return out
	}
	for _, l := range ev.lines {
		if l.field == fieldID || l.field == fieldRetry || l.field == fieldBlank {
			out = append(out, ev.raw[l.start:l.next]...)
		}
	}
	return out
}

// event masks one complete event (raw ends with its blank line).
func (p *sseProc) event(out, raw []byte) []byte {
	p.serial++
	p.wrote = true
	ev := p.parse(raw)
	if ev.nData == 0 {
		return append(out, raw...)
	}
	if string(ev.data) == "[DONE]" {
		out = p.flushAll(out)
		return append(out, raw...)
	}
	if t := bytes.TrimLeft(ev.data, " \t\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		if r, ok := p.jsonEvent(out, ev); ok {
			return r
		}
	}
	return p.textEvent(out, ev)
}

// textEvent masks the data of an event that is not JSON as the next piece
// of the text of its event type: the one-shot text is the concatenation of
// the data of those events, as a client that appends them reads it.
func (p *sseProc) textEvent(out []byte, ev *sseEvent) []byte {
	typ := ev.typ
	if len(typ) == 0 {
		typ = messageType
	}
	p.key = append(append(p.key[:0], 0xff), typ...)
	st := p.stream(-1, len(p.key))
	st.seen = p.serial
	p.text = st.s.feed(p.text[:0], ev.data, false)
	p.spans = p.spans[:0]
	p.setTmpl(st, ev, nil, true, false, 0)
	switch {
	case bytes.Equal(p.text, ev.data):
		out = append(out, ev.raw...)
	case len(p.text) == 0:
		out = p.writeKept(out, ev)
	default:
		out = writeEvent(out, ev.raw, ev.lines, ev.lastData, p.text, false)
	}
	return p.evict(out)
}

func (p *sseProc) visit(kind byte, start, end int) {
	h := hit{start: start, end: end, kind: kind, w: -1}
	if kind != kField {
		h.esc = kind == kString && p.w.esc
		h.w = p.t.lookup(p.w.path)
		if h.w >= 0 {
			n := 0
			for _, s := range p.w.path {
				if s.idx >= 0 && n < maxCaps {
					h.caps[n] = int32(s.idx)
					n++
				}
			}
		} else if kind != kString {
			if kind != kOther || p.w.src[start] != 'n' {
				p.info = true
			}
			return
		}
	}
	p.hits = append(p.hits, h)
}

// jsonEvent masks an event whose data is JSON; ok is false when it is not.
func (p *sseProc) jsonEvent(out []byte, ev *sseEvent) ([]byte, bool) {
	data := ev.data
	p.hits, p.info = p.hits[:0], false
	p.w = walker{src: data, fields: p.e.fields, visit: p.visitFn, path: p.w.path[:0], lower: p.w.lower}
	if p.w.walk() != nil {
		return out, false
	}
	j := &p.js
	*j = jsonState{data: data}
	typ := p.eventType(data)
	j.f, j.nText, j.plain = p.resolveTexts(data, typ)
	j.all = p.findEnds(data, typ)
	j.ending = j.all != 0 || len(p.endKeys) > 0
	if j.ending {
		// Streams that end here without text in this event are flushed
		// just before it.
		for _, st := range p.order {
			if st.seen != p.serial && p.ends(st, j.all) {
				out = p.flush(out, st)
			}
		}
	}
	p.editHits(j)
	drop := j.nText > 0 && j.plain && j.allHeld && !j.otherChanged && p.t.fmts[j.f].drop
	newData := data
	if j.changed || j.nText > 0 {
		newData = p.apply(data)
	}
	if j.nText > 0 {
		for i := range p.hits {
			if st := p.hits[i].st; st != nil && i == st.last {
				p.setTmpl(st, ev, newData, j.plain, drop && j.hasSeq, j.seq)
			}
		}
	}
	switch {
	case drop:
		out = p.writeKept(out, ev)
	case !j.changed:
		out = append(out, ev.raw...)
	default:
		out = writeEvent(out, ev.raw, ev.lines, ev.lastData, newData, false)
	}
	if j.hasSeq && !drop {
		p.seqLast, p.seqSent = j.seq, true
	}
	if j.ending {
		p.endStreams(j.all)
	}
	return p.evict(out), true
}

// jsonState is what masking one JSON event has found and decided.
type jsonState struct {
	data         []byte
	f, nText     int    // the event's format and how many stream texts it holds
	plain        bool   // every scalar is named by its format
	all          uint32 // formats whose streams all end here
	ending       bool   // some stream ends here
	changed      bool   // the data changes
	otherChanged bool   // something other than stream text or numbering changes
	allHeld      bool   // every stream text is held whole
	hasSeq       bool
	seq          int64 // the event's sequence number as sent
}

// editHits decides the edits of the event's scalars in document order.
func (p *sseProc) editHits(j *jsonState) {
	p.edits, p.spans, p.arena = p.edits[:0], p.spans[:0], p.arena[:0]
	j.allHeld = j.nText > 0
	for i := range p.hits {
		h := &p.hits[i]
		switch {
		case h.kind == kField:
			p.c.add(JSONFieldName)
			a := len(p.arena)
			p.arena = appendQuoted(p.arena, p.e.fieldRp)
			p.edits = append(p.edits, sedit{h.start, h.end, p.arena[a:], -1})
			j.changed, j.otherChanged = true, true
		case h.st != nil:
			p.textEdit(j, h, i)
		case h.kind == kNumber && h.w >= 0 && p.t.watches[h.w].seq:
			p.seqEdit(j, h)
		case h.kind == kString:
			r, ch := p.e.maskJSONString(&p.scratch, j.data[h.start+1:h.end-1], h.esc, p.c)
			repl := j.data[h.start:h.end]
			if ch {
				repl, j.changed, j.otherChanged = r, true, true
			}
			if j.nText > 0 && !j.plain && !p.named(h, j.f) {
				p.spanEdit(h.start, h.end, repl, spanBlank, nil)
			} else if ch {
				p.edits = append(p.edits, sedit{h.start, h.end, repl, -1})
			}
		}
	}
}

// textEdit feeds a stream's text and puts what is safe in its place; the
// stream's last text in an event that ends it flushes it.
func (p *sseProc) textEdit(j *jsonState, h *hit, i int) {
	raw := j.data[h.start+1 : h.end-1]
	text := raw
	if h.esc {
		p.unq = unquote(p.unq[:0], raw)
		text = p.unq
	}
	eof := j.ending && i == h.st.last && p.ends(h.st, j.all)
	p.text = h.st.s.feed(p.text[:0], text, eof)
	if len(text) == 0 || len(p.text) > 0 {
		j.allHeld = false
	}
	repl := j.data[h.start:h.end]
	if !bytes.Equal(p.text, text) {
		a := len(p.arena)
		p.arena = appendQuoted(p.arena, p.text)
		repl, j.changed = p.arena[a:], true
	}
	p.spanEdit(h.start, h.end, repl, spanSelf, h.st)
}

// seqEdit numbers the event: its upstream number plus the shift that the
// flush events sent so far made necessary.
func (p *sseProc) seqEdit(j *jsonState, h *hit) {
	n, err := strconv.ParseInt(string(j.data[h.start:h.end]), 10, 64)
	if err != nil {
		return
	}
	if p.seqTaken && n+p.seqShift <= p.seqLast {
		p.seqShift = p.seqLast + 1 - n
	}
	p.seqTaken, j.hasSeq, j.seq = false, true, n+p.seqShift
	repl := j.data[h.start:h.end]
	if p.seqShift != 0 {
		a := len(p.arena)
		p.arena = strconv.AppendInt(p.arena, j.seq, 10)
		repl, j.changed = p.arena[a:], true
	}
	switch {
	case j.nText > 0:
		p.spanEdit(h.start, h.end, repl, spanSeq, nil)
	case p.seqShift != 0:
		p.edits = append(p.edits, sedit{h.start, h.end, repl, -1})
	}
}

// eventType returns the decoded top-level "type" of the event, or nil.
func (p *sseProc) eventType(data []byte) []byte {
	for i := range p.hits {
		h := &p.hits[i]
		if h.w != p.t.typW || h.kind != kString {
			continue
		}
		raw := data[h.start+1 : h.end-1]
		if !h.esc {
			return raw
		}
		p.typ = unquote(p.typ[:0], raw)
		return p.typ
	}
	return nil
}

// resolveTexts finds the strings that are stream text, binds each to its
// stream, and returns the event's format, how many texts it holds, and
// whether it is plain: every scalar it holds is named by its format.
func (p *sseProc) resolveTexts(data, typ []byte) (f, n int, plain bool) {
	f, plain = -1, !p.info
	for i := range p.hits {
		h := &p.hits[i]
		if h.kind != kString || h.w < 0 {
			continue
		}
		for _, r := range p.t.watches[h.w].texts {
			rule := &p.t.fmts[r.f].texts[r.r]
			star, ok := rule.typ.match(typ)
			if !ok {
				continue
			}
			p.key = append(p.key[:0], byte(r.f))
			p.key = p.appendParts(p.key, data, rule.scope, &h.caps, star)
			scope := len(p.key)
			p.key = append(p.key, 0x1e, byte(r.r))
			p.key = p.appendParts(p.key, data, rule.sub, &h.caps, star)
			h.st = p.stream(r.f, scope)
			h.st.seen, h.st.last = p.serial, i
			if f < 0 {
				f = r.f
			} else if f != r.f {
				plain = false
			}
			n++
			break
		}
	}
	if n == 0 {
		return f, 0, false
	}
	for i := range p.hits {
		h := &p.hits[i]
		if h.kind == kOther && data[h.start] == 'n' {
			continue // null says nothing
		}
		if h.kind == kField || h.st == nil && !p.named(h, f) {
			plain = false
		}
	}
	return f, n, plain
}

// named reports whether format f names the scalar of h.
func (p *sseProc) named(h *hit, f int) bool {
	return h.w >= 0 && f >= 0 && p.t.watches[h.w].fmask&(1<<f) != 0
}

// findEnds records the scopes this event ends in p.endKeys and returns the
// formats whose streams it ends whole.
func (p *sseProc) findEnds(data, typ []byte) uint32 {
	p.endKeys, p.endArena = p.endKeys[:0], p.endArena[:0]
	var all uint32
	if typ != nil {
		all = p.t.endAll[string(typ)]
	}
	for i := range p.hits {
		h := &p.hits[i]
		if h.kind != kString || h.w < 0 {
			continue
		}
		for _, r := range p.t.watches[h.w].ends {
			rule := &p.t.fmts[r.f].ends[r.r]
			if star, ok := rule.typ.match(typ); ok {
				p.addEnd(data, r.f, rule.scope, &h.caps, star)
			}
		}
	}
	if typ != nil {
		var top [maxCaps]int32
		for f := range p.t.fmts {
			for _, rule := range p.t.fmts[f].typeEnds {
				if star, ok := rule.typ.match(typ); ok {
					p.addEnd(data, f, rule.scope, &top, star)
				}
			}
		}
	}
	return all
}

func (p *sseProc) addEnd(data []byte, f int, scope []cpart, caps *[maxCaps]int32, star []byte) {
	a := len(p.endArena)
	p.endArena = append(p.endArena, byte(f))
	p.endArena = p.appendParts(p.endArena, data, scope, caps, star)
	p.endKeys = append(p.endKeys, [2]int{a, len(p.endArena)})
}

// ends reports whether st ends at the current event.
func (p *sseProc) ends(st *stream, all uint32) bool {
	if st.f < 0 {
		return false
	}
	if all&(1<<st.f) != 0 {
		return true
	}
	sc := st.key[:st.scope]
	for _, k := range p.endKeys {
		if string(p.endArena[k[0]:k[1]]) == sc {
			return true
		}
	}
	return false
}

func (p *sseProc) appendParts(b, data []byte, parts []cpart, caps *[maxCaps]int32, star []byte) []byte {
	for i := range parts {
		b = append(b, 0x1f)
		b = p.appendPart(b, data, &parts[i], caps, star)
	}
	return b
}

func (p *sseProc) appendPart(b, data []byte, pt *cpart, caps *[maxCaps]int32, star []byte) []byte {
	switch {
	case pt.star:
		return append(b, star...)
	case pt.pos >= 0:
		return strconv.AppendInt(b, int64(caps[pt.pos]), 10)
	}
	for i := range p.hits {
		h := &p.hits[i]
		if h.w == pt.w && h.kind != kField && sameCaps(&h.caps, caps, pt.n) {
			return append(b, data[h.start:h.end]...)
		}
	}
	if pt.alt != nil {
		return p.appendPart(b, data, pt.alt, caps, star)
	}
	return b
}

func sameCaps(a, b *[maxCaps]int32, n int) bool {
	for i := range min(n, maxCaps) {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// spanEdit records an edit whose place in the output a template needs.
func (p *sseProc) spanEdit(start, end int, repl []byte, kind byte, owner *stream) {
	p.spans = append(p.spans, sspan{kind: kind, owner: owner})
	p.edits = append(p.edits, sedit{start, end, repl, len(p.spans) - 1})
}

// apply applies p.edits (in order) to data and records the spans.
func (p *sseProc) apply(data []byte) []byte {
	out := p.newData[:0]
	last := 0
	for _, ed := range p.edits {
		out = append(out, data[last:ed.start]...)
		s := len(out)
		out = append(out, ed.repl...)
		if ed.span >= 0 {
			p.spans[ed.span].start, p.spans[ed.span].end = s, len(out)
		}
		last = ed.end
	}
	out = append(out, data[last:]...)
	p.newData = out
	return out
}

// stream returns the stream named p.key, opening it if need be.
func (p *sseProc) stream(f, scope int) *stream {
	if st := p.streams[string(p.key)]; st != nil {
		return st
	}
	st := &stream{key: string(p.key), scope: scope, f: f, s: textScanner{e: p.e, c: p.c}}
	p.streams[st.key] = st
	p.order = append(p.order, st)
	return st
}

// setTmpl keeps ev (its data as sent, with p.spans) as st's template. An
// event that is not plain replaces only a template that is not plain either.
func (p *sseProc) setTmpl(st *stream, ev *sseEvent, data []byte, plain, seqFree bool, seq int64) {
	t := &st.tmpl
	if !plain && t.plain {
		return
	}
	p.tmplBytes -= t.size()
	t.raw = append(t.raw[:0], ev.raw...)
	t.lines = append(t.lines[:0], ev.lines...)
	t.lastData = ev.lastData
	t.data = append(t.data[:0], data...)
	t.spans = t.spans[:0]
	for _, s := range p.spans {
		k := s.kind
		if s.owner != nil && s.owner != st {
			k = spanOther
		}
		t.spans = append(t.spans, tspan{s.start, s.end, k})
	}
	t.plain, t.seqFree, t.seq = plain, seqFree, seq
	p.tmplBytes += t.size()
}

// flush sends the text st still holds in a flush event built from its
// template. Its sequence number is the template's own when that event was
// dropped and no later number has gone out (the usual case: the last word
// of a text is held, so its delta was dropped); otherwise the number after
// the last one sent, and the events after it are numbered up to stay above.
func (p *sseProc) flush(out []byte, st *stream) []byte {
	if st.s.held() == 0 {
		return out
	}
	p.ftext = st.s.feed(p.ftext[:0], nil, true)
	if len(p.ftext) == 0 {
		return out
	}
	t := &st.tmpl
	if st.f < 0 {
		return writeEvent(out, t.raw, t.lines, t.lastData, p.ftext, true)
	}
	p.fedits, p.fbuf = p.fedits[:0], p.fbuf[:0]
	for _, s := range t.spans {
		a := len(p.fbuf)
		switch s.kind {
		case spanSelf:
			p.fbuf = appendQuoted(p.fbuf, p.ftext)
		case spanOther:
			p.fbuf = append(p.fbuf, `""`...)
		case spanBlank:
			if t.plain {
				continue
			}
			p.fbuf = append(p.fbuf, `""`...)
		case spanSeq:
			n := t.seq
			if !t.seqFree || p.seqSent && n <= p.seqLast {
				n = p.seqLast + 1
			}
			t.seqFree = false
			p.seqLast, p.seqSent, p.seqTaken = n, true, true
			p.fbuf = strconv.AppendInt(p.fbuf, n, 10)
		}
		p.fedits = append(p.fedits, edit{s.start, s.end, p.fbuf[a:len(p.fbuf):len(p.fbuf)]})
	}
	p.fdata = applyEdits(p.fdata[:0], t.data, p.fedits)
	return writeEvent(out, t.raw, t.lines, t.lastData, p.fdata, true)
}

// endStreams forgets the streams that end at the current event: flushed
// before it, or in place.
func (p *sseProc) endStreams(all uint32) {
	kept := p.order[:0]
	for _, st := range p.order {
		if p.ends(st, all) {
			p.forget(st)
			continue
		}
		kept = append(kept, st)
	}
	clear(p.order[len(kept):])
	p.order = kept
}

func (p *sseProc) forget(st *stream) {
	delete(p.streams, st.key)
	p.tmplBytes -= st.tmpl.size()
}

// evict flushes and forgets the oldest streams past the bounds.
func (p *sseProc) evict(out []byte) []byte {
	n := 0
	for len(p.order)-n > maxStreams || p.tmplBytes > maxTmplBytes && len(p.order)-n > 0 {
		out = p.flush(out, p.order[n])
		p.forget(p.order[n])
		n++
	}
	if n > 0 {
		k := copy(p.order, p.order[n:])
		clear(p.order[k:])
		p.order = p.order[:k]
	}
	return out
}

func (p *sseProc) flushAll(out []byte) []byte {
	for _, st := range p.order {
		out = p.flush(out, st)
	}
	clear(p.streams)
	clear(p.order)
	p.order, p.tmplBytes = p.order[:0], 0
	return out
}
