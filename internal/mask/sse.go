package mask

import (
	"bytes"
	"strconv"
	"strings"
)

// maxEvent caps one SSE event; a longer event switches the rest of the body
// to the byte-stream masker rather than buffering without bound.
const maxEvent = 1 << 20

// sseProc masks a text/event-stream body event by event, carrying the text
// of each LLM stream (choice, tool call, content block) across events.
type sseProc struct {
	e        *Engine
	c        *Counts
	pending  []byte
	scanned  int // pending[:scanned] holds no line end of the current event
	streams  map[string]*stream
	order    []string
	fallback *textScanner
	scratch  [2][]byte
}

// stream is the state of one LLM text stream.
type stream struct {
	s    textScanner
	tmpl *eventTmpl
}

// eventTmpl is the last output event that carried a stream's text: a flush
// event is a copy of it with the stream's text replaced and the other streams
// emptied.
type eventTmpl struct {
	lines [][]byte // non-data lines other than id:, with their line ends
	term  []byte
	data  []byte
	spans []span
}

type span struct {
	key        string
	start, end int
}

func newSSE(e *Engine, c *Counts) *sseProc {
	return &sseProc{e: e, c: c, streams: map[string]*stream{}}
}

func (p *sseProc) process(out, in []byte, eof bool) []byte {
	if p.fallback != nil {
		return p.fallback.feed(out, in, eof)
	}
	p.pending = append(p.pending, in...)
	start := 0
	i := p.scanned
	for {
		k := bytes.IndexByte(p.pending[i:], '\n')
		if k < 0 {
			break
		}
		nl := i + k
		line := p.pending[i:nl]
		i = nl + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			out = p.event(out, p.pending[start:i])
			start = i
		}
	}
	rest := len(p.pending) - start
	copy(p.pending, p.pending[start:])
	p.pending = p.pending[:rest]
	p.scanned = i - start
	if len(p.pending) > maxEvent {
		out = p.flushAll(out)
		p.c.setForm("sse-bytes")
		p.fallback = &textScanner{e: p.e, c: p.c}
		buf := p.pending
		p.pending = nil
		return p.fallback.feed(out, buf, eof)
	}
	if eof {
		out = p.flushAll(out)
		if len(p.pending) > 0 {
			// An unterminated last event: mask its bytes as text.
			out = p.e.maskBytes(out, p.pending, p.c)
			p.pending = p.pending[:0]
		}
	}
	return out
}

func (e *Engine) maskBytes(out, b []byte, c *Counts) []byte {
	out, _ = e.scan(out, b, 0, true, escNone, c)
	return out
}

// lines splits raw into lines that keep their line ends.
func lines(raw []byte) [][]byte {
	var ls [][]byte
	for len(raw) > 0 {
		k := bytes.IndexByte(raw, '\n')
		if k < 0 {
			ls = append(ls, raw)
			break
		}
		ls = append(ls, raw[:k+1])
		raw = raw[k+1:]
	}
	return ls
}

func trimEOL(l []byte) []byte {
	l = bytes.TrimSuffix(l, []byte("\n"))
	return bytes.TrimSuffix(l, []byte("\r"))
}

// event masks one complete event (raw ends with its blank line).
func (p *sseProc) event(out, raw []byte) []byte {
	ls := lines(raw)
	var data []byte
	nData := 0
	for _, l := range ls {
		if v, ok := bytes.CutPrefix(trimEOL(l), []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if nData > 0 {
				data = append(append(data[:len(data):len(data)], '\n'), v...)
			} else {
				data = v
			}
			nData++
		}
	}
	if nData == 0 {
		return append(out, raw...)
	}
	if string(data) == "[DONE]" {
		out = p.flushAll(out)
		return append(out, raw...)
	}
	if t := bytes.TrimLeft(data, " \t"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		if r, ok := p.jsonEvent(out, ls, data); ok {
			return r
		}
	}
	masked := p.e.maskBytes(nil, data, p.c)
	if bytes.Equal(masked, data) {
		return append(out, raw...)
	}
	return rebuild(out, ls, masked, false)
}

// rebuild writes the event with its data lines replaced by data. Synthetic
// events drop id: lines so that the client's last event id stays honest.
func rebuild(out []byte, ls [][]byte, data []byte, synthetic bool) []byte {
	done := false
	for _, l := range ls {
		t := trimEOL(l)
		isData := bytes.HasPrefix(t, []byte("data:"))
		if !isData {
			if synthetic && (bytes.HasPrefix(t, []byte("id:")) || len(t) == 0) {
				continue
			}
			out = append(out, l...)
			continue
		}
		if done {
			continue
		}
		done = true
		term := l[len(t):]
		for _, d := range bytes.Split(data, []byte("\n")) {
			out = append(out, "data: "...)
			out = append(out, d...)
			out = append(out, term...)
		}
		if synthetic {
			out = append(out, term...)
		}
	}
	return out
}

// Roles of string values in LLM stream events.
const (
	roleNone = iota
	roleChat
	roleReasoning
	roleTool
	roleTop   // Responses: top-level "delta"
	roleBlock // Anthropic: delta.text / delta.partial_json / delta.thinking
)

type strVal struct {
	start, end int
	role       int
	choice     int
	tool       int
}

func isKey(s seg, k string) bool { return s.idx < 0 && string(s.key) == k }

// jsonEvent masks an event whose data is JSON. ok is false when it is not.
func (p *sseProc) jsonEvent(out []byte, ls [][]byte, data []byte) ([]byte, bool) {
	var (
		strs     []strVal
		typ      string
		ids      [5]string // index, item_id, output_index, content_index, summary_index
		finishes []string
		toolIdx  map[[2]int]string
		fields   []edit
	)
	w := walker{src: data, fields: p.e.fields}
	w.visit = func(kind byte, start, end int) {
		path := w.path
		if kind == kField {
			fields = append(fields, edit{start, end, appendQuoted(nil, p.e.fieldRp)})
			return
		}
		v := strVal{start: start, end: end}
		switch len(path) {
		case 1:
			switch string(path[0].key) {
			case "type":
				if kind == kString {
					typ = string(data[start+1 : end-1])
				}
			case "index":
				ids[0] = string(data[start:end])
			case "item_id":
				ids[1] = string(data[start:end])
			case "output_index":
				ids[2] = string(data[start:end])
			case "content_index":
				ids[3] = string(data[start:end])
			case "summary_index":
				ids[4] = string(data[start:end])
			case "delta":
				v.role = roleTop
			}
		case 2:
			if isKey(path[0], "delta") {
				switch string(path[1].key) {
				case "text", "partial_json", "thinking":
					v.role = roleBlock
				}
			}
		case 3:
			if kind == kString && isKey(path[0], "choices") && path[1].idx >= 0 && isKey(path[2], "finish_reason") {
				finishes = append(finishes, "chat/"+strconv.Itoa(path[1].idx)+"/")
			}
		case 4:
			if isKey(path[0], "choices") && path[1].idx >= 0 && isKey(path[2], "delta") {
				v.choice = path[1].idx
				switch string(path[3].key) {
				case "content":
					v.role = roleChat
				case "reasoning_content":
					v.role = roleReasoning
				}
			}
		case 6:
			if kind == kNumber && isKey(path[0], "choices") && isKey(path[2], "delta") && isKey(path[3], "tool_calls") && path[4].idx >= 0 && isKey(path[5], "index") {
				if toolIdx == nil {
					toolIdx = map[[2]int]string{}
				}
				toolIdx[[2]int{path[1].idx, path[4].idx}] = string(data[start:end])
			}
		case 7:
			if isKey(path[0], "choices") && isKey(path[2], "delta") && isKey(path[3], "tool_calls") && isKey(path[5], "function") && isKey(path[6], "arguments") {
				v.role, v.choice, v.tool = roleTool, path[1].idx, path[4].idx
			}
		}
		if kind == kString {
			strs = append(strs, v)
		}
	}
	if w.walk() != nil {
		return out, false
	}
	for range fields {
		p.c.add(JSONFieldName)
	}
	// Stream keys and the streams this event ends.
	key := func(v strVal) string {
		switch v.role {
		case roleChat:
			return "chat/" + strconv.Itoa(v.choice) + "/c"
		case roleReasoning:
			return "chat/" + strconv.Itoa(v.choice) + "/r"
		case roleTool:
			t, ok := toolIdx[[2]int{v.choice, v.tool}]
			if !ok {
				t = "#" + strconv.Itoa(v.tool)
			}
			return "chat/" + strconv.Itoa(v.choice) + "/t/" + t
		case roleTop:
			if strings.HasPrefix(typ, "response.") && strings.HasSuffix(typ, ".delta") {
				return strings.TrimSuffix(typ, ".delta") + "/" + strings.Join(ids[1:], "/")
			}
		case roleBlock:
			if typ == "content_block_delta" {
				return "anth/" + ids[0]
			}
		}
		return ""
	}
	var ends func(string) bool
	switch {
	case typ == "content_block_stop":
		k := "anth/" + ids[0]
		ends = func(s string) bool { return s == k }
	case typ == "message_stop" || typ == "response.completed" || typ == "response.incomplete" ||
		typ == "response.failed" || typ == "response.done" || typ == "error":
		ends = func(string) bool { return true }
	case strings.HasPrefix(typ, "response.") && strings.HasSuffix(typ, ".done"):
		k := strings.TrimSuffix(typ, ".done") + "/" + strings.Join(ids[1:], "/")
		ends = func(s string) bool { return s == k }
	}
	if chatEnds := finishes; len(chatEnds) > 0 {
		prev := ends
		ends = func(s string) bool {
			for _, pre := range chatEnds {
				if strings.HasPrefix(s, pre) {
					return true
				}
			}
			return prev != nil && prev(s)
		}
	}

	keys := make([]string, len(strs))
	inEvent := map[string]bool{}
	for n, v := range strs {
		keys[n] = key(v)
		if keys[n] != "" {
			inEvent[keys[n]] = true
		}
	}
	// Streams that end here without text in this event are flushed in
	// synthetic events just before it.
	if ends != nil {
		for _, k := range p.order {
			if ends(k) && !inEvent[k] {
				out = p.flush(out, k)
			}
		}
	}

	edits := fields
	var tmplSpans []span
	for n, v := range strs {
		raw := data[v.start+1 : v.end-1]
		k := keys[n]
		if k == "" {
			if r, changed := p.e.maskJSONString(&p.scratch, raw, containsByte(raw, '\\'), p.c); changed {
				edits = append(edits, edit{v.start, v.end, r})
			}
			continue
		}
		st := p.streams[k]
		if st == nil {
			st = &stream{s: textScanner{e: p.e, c: p.c}}
			p.streams[k] = st
			p.order = append(p.order, k)
		}
		text := raw
		if containsByte(raw, '\\') {
			text = unquote(nil, raw)
		}
		eof := ends != nil && ends(k)
		emitted := st.s.feed(nil, text, eof)
		r := appendQuoted(nil, emitted)
		if !bytes.Equal(emitted, text) {
			edits = append(edits, edit{v.start, v.end, r})
		} else {
			r = data[v.start:v.end]
		}
		tmplSpans = append(tmplSpans, span{key: k, start: v.start, end: v.end})
	}
	if len(edits) == 0 && len(tmplSpans) == 0 {
		p.endStreams(ends)
		return append(out, joinLines(ls)...), true
	}
	sortEdits(edits)
	newData := applyEdits(nil, data, edits)
	if len(tmplSpans) > 0 {
		t := &eventTmpl{data: newData}
		// Map span positions into the new data.
		for _, s := range tmplSpans {
			shift := 0
			for _, ed := range edits {
				if ed.end <= s.start {
					shift += len(ed.repl) - (ed.end - ed.start)
				}
			}
			ns := s.start + shift
			ne := ns + (s.end - s.start)
			for _, ed := range edits {
				if ed.start == s.start {
					ne = ns + len(ed.repl)
				}
			}
			t.spans = append(t.spans, span{key: s.key, start: ns, end: ne})
		}
		for _, l := range ls {
			tl := trimEOL(l)
			if !bytes.HasPrefix(tl, []byte("data:")) && !bytes.HasPrefix(tl, []byte("id:")) && len(tl) > 0 {
				t.lines = append(t.lines, bytes.Clone(l))
			} else if len(tl) == 0 || bytes.HasPrefix(tl, []byte("data:")) {
				t.term = bytes.Clone(l[len(tl):])
			}
		}
		for _, s := range tmplSpans {
			if st := p.streams[s.key]; st != nil {
				st.tmpl = t
			}
		}
	}
	if len(edits) == 0 {
		out = append(out, joinLines(ls)...)
	} else {
		out = rebuild(out, ls, newData, false)
	}
	p.endStreams(ends)
	return out, true
}

func joinLines(ls [][]byte) []byte { return bytes.Join(ls, nil) }

func sortEdits(es []edit) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].start < es[j-1].start; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// endStreams forgets the streams that ended (they were flushed in place or
// just before the event).
func (p *sseProc) endStreams(ends func(string) bool) {
	if ends == nil {
		return
	}
	kept := p.order[:0]
	for _, k := range p.order {
		if ends(k) {
			delete(p.streams, k)
			continue
		}
		kept = append(kept, k)
	}
	p.order = kept
}

// flush emits the held text of stream k in a synthetic event built from its template.
func (p *sseProc) flush(out []byte, k string) []byte {
	st := p.streams[k]
	if st == nil || st.s.held() == 0 {
		return out
	}
	text := st.s.feed(nil, nil, true)
	t := st.tmpl
	if len(text) == 0 || t == nil {
		return out
	}
	var edits []edit
	for _, s := range t.spans {
		r := []byte(`""`)
		if s.key == k {
			r = appendQuoted(nil, text)
		}
		edits = append(edits, edit{s.start, s.end, r})
	}
	data := applyEdits(nil, t.data, edits)
	for _, l := range t.lines {
		out = append(out, l...)
	}
	term := t.term
	if len(term) == 0 {
		term = []byte("\n")
	}
	out = append(out, "data: "...)
	out = append(out, data...)
	out = append(out, term...)
	return append(out, term...)
}

func (p *sseProc) flushAll(out []byte) []byte {
	for _, k := range p.order {
		out = p.flush(out, k)
	}
	p.streams = map[string]*stream{}
	p.order = p.order[:0]
	return out
}
