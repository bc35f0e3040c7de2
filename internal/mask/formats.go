package mask

import (
	"bytes"
	"slices"
	"strings"
	"sync"
)

// The streaming wire formats of LLM APIs, as data. An entry says where the
// text of a stream sits in an SSE event whose data is JSON, which stream a
// piece belongs to, which events end a stream, what else a delta event may
// carry, and which number orders the events. sseProc reads the table with
// one walker; supporting a provider is adding an entry.
//
// Paths name JSON values from the top of the event's data: object keys
// separated by '.', "[]" after a key for any element of the array there
// ("choices[].delta.content"). Keys are compared decoded, so an escaped
// key ("d\u0065lta") is the same key.
//
// A stream is named by its format, its text rule and the values of the
// rule's scope and sub parts. A part is
//   - "choices[]": the position of the element of that array on the path
//     of the text (or of the end field);
//   - "*": what the '*' of the rule's type pattern matched ("output_text"
//     in "response.output_text.delta");
//   - a path: the JSON text of the scalar there, its "[]" bound to the
//     positions of the text's path in order; empty when absent;
//   - "a|b": a, or b when a is absent.
//
// An end rule computes a scope the same way; every stream of the format
// with that scope ends there, its held text flushed.
type format struct {
	name   string
	texts  []textRule
	ends   []endRule
	endAll []string // values of "type" that end every stream of the format
	// seq is a top-level number that orders the events (OpenAI Responses'
	// sequence_number): a flush event needs one of its own.
	seq string
	// meta lists what a delta event may carry besides its text and the
	// fields its parts name (a path covers everything below it). A delta
	// event carrying only those is "plain": when all its text is held it is
	// dropped (if drop is set), and a flush event copied from it repeats
	// nothing a client would add up twice. A flush copied from an event that
	// is not plain has its other strings emptied.
	meta []string
	drop bool
}

type textRule struct {
	typ   string // what the event's top-level "type" must be: exact, or with one '*'; "" for any
	path  string
	scope []string
	sub   []string
}

type endRule struct {
	typ   string
	path  string // a string (not null) here ends the streams of its scope; "" for the event itself
	scope []string
}

var (
	chatChoice     = []string{"choices[].index|choices[]"}
	responsesScope = []string{"*", "item_id", "output_index", "content_index", "summary_index"}
	geminiCand     = []string{"candidates[].index|candidates[]"}
)

// formats. The SDKs they were checked against (openai-node and
// openai-python for chat and Responses, @anthropic-ai/sdk's MessageStream,
// google-genai) add deltas up by their indexes and ids and need no
// particular count of delta events, so a plain delta event whose text is all
// held is dropped in each format. For Gemini that matters: google-genai's
// chat leaves a turn out of its history when a chunk has a part with empty
// text. openai-python adds up every string of successive chat deltas but
// index and type, so a flush copied from a chunk that carries a tool call's
// id and name must not repeat them (see meta). [DONE] and the end of the
// body end every stream of every format.
var formats = []format{{
	name: "openai-chat",
	texts: []textRule{
		{path: "choices[].delta.content", scope: chatChoice},
		{path: "choices[].delta.reasoning_content", scope: chatChoice},
		{path: "choices[].delta.reasoning", scope: chatChoice},
		{path: "choices[].delta.refusal", scope: chatChoice},
		{path: "choices[].delta.tool_calls[].function.arguments", scope: chatChoice,
			sub: []string{"choices[].delta.tool_calls[].index|choices[].delta.tool_calls[]"}},
	},
	ends: []endRule{{path: "choices[].finish_reason", scope: chatChoice}},
	meta: []string{"id", "object", "created", "model", "system_fingerprint", "service_tier", "obfuscation",
		"choices[].delta.tool_calls[].type"},
	drop: true,
}, {
	name: "openai-responses",
	texts: []textRule{
		{typ: "response.*.delta", path: "delta", scope: responsesScope},
	},
	ends:   []endRule{{typ: "response.*.done", scope: responsesScope}},
	endAll: []string{"response.completed", "response.incomplete", "response.failed", "response.done", "error"},
	seq:    "sequence_number",
	meta:   []string{"obfuscation"},
	drop:   true,
}, {
	name: "anthropic",
	texts: []textRule{
		{typ: "content_block_delta", path: "delta.text", scope: []string{"index"}},
		{typ: "content_block_delta", path: "delta.partial_json", scope: []string{"index"}},
		{typ: "content_block_delta", path: "delta.thinking", scope: []string{"index"}},
	},
	ends:   []endRule{{typ: "content_block_stop", scope: []string{"index"}}},
	endAll: []string{"message_stop", "error"},
	meta:   []string{"delta.type"},
	drop:   true,
}, {
	// Gemini streams with ?alt=sse; each event is a whole
	// GenerateContentResponse whose parts carry the next piece of text.
	// Thought parts are a stream of their own.
	name: "gemini",
	texts: []textRule{
		{path: "candidates[].content.parts[].text", scope: geminiCand,
			sub: []string{"candidates[].content.parts[].thought"}},
	},
	ends: []endRule{{path: "candidates[].finishReason", scope: geminiCand}},
	meta: []string{"candidates[].content.role", "candidates[].safetyRatings", "usageMetadata", "modelVersion", "responseId", "createTime"},
	drop: true,
}}

// sseTable is the compiled form of formats, built once.
var sseTable = sync.OnceValue(func() *table { return compileFormats(formats) })

// maxCaps bounds the arrays on one path of the table.
const maxCaps = 4

type pseg struct {
	key string
	arr bool // an array element, not a key
}

// watch is one path of the table and what the formats do with it.
type watch struct {
	segs   []pseg
	prefix bool   // also matches every path below
	seq    bool   // a sequence number
	fmask  uint32 // formats that name this path (their events may carry it)
	texts  []ref  // text rules at this path
	ends   []ref  // end rules at this path
}

type ref struct{ f, r int }

type table struct {
	fmts    []cformat
	watches []watch
	first   map[string][]int32 // watches by first key, exact paths first
	typW    int32              // the top-level "type"
	endAll  map[string]uint32  // "type" value -> formats it ends whole
}

type cformat struct {
	name     string
	texts    []ctext
	ends     []cend // rules whose path is a field
	typeEnds []cend // rules that end at the event itself
	seq      int32  // watch, or -1
	drop     bool
}

type ctext struct {
	typ        tpat
	scope, sub []cpart
}

type cend struct {
	typ   tpat
	scope []cpart
}

// tpat matches a "type" value: exactly pre, or pre*suf.
type tpat struct {
	set      bool
	star     bool
	pre, suf string
}

func parseTpat(s string) tpat {
	if s == "" {
		return tpat{}
	}
	pre, suf, star := strings.Cut(s, "*")
	return tpat{set: true, star: star, pre: pre, suf: suf}
}

// match reports whether typ matches and returns what '*' matched.
func (t *tpat) match(typ []byte) ([]byte, bool) {
	if !t.set {
		return nil, true
	}
	if !t.star {
		return nil, string(typ) == t.pre
	}
	if len(typ) < len(t.pre)+len(t.suf) || !bytes.HasPrefix(typ, []byte(t.pre)) || !bytes.HasSuffix(typ, []byte(t.suf)) {
		return nil, false
	}
	return typ[len(t.pre) : len(typ)-len(t.suf)], true
}

// cpart is a compiled key part.
type cpart struct {
	star bool
	pos  int   // >= 0: the position at the pos'th array of the path
	w    int32 // a value: its watch
	n    int   // arrays on the value's path, bound to the first n positions
	alt  *cpart
}

func compileFormats(fs []format) *table {
	t := &table{first: map[string][]int32{}, endAll: map[string]uint32{}}
	byPath := map[string]int32{}
	watchOf := func(path string, prefix bool, f int) int32 {
		k := path
		if prefix {
			k += ".*"
		}
		w, ok := byPath[k]
		if !ok {
			w = int32(len(t.watches))
			byPath[k] = w
			t.watches = append(t.watches, watch{segs: parsePath(path), prefix: prefix})
		}
		t.watches[w].fmask |= 1 << f
		return w
	}
	var part func(s string, f int) cpart
	part = func(s string, f int) cpart {
		if a, b, ok := strings.Cut(s, "|"); ok {
			p := part(a, f)
			alt := part(b, f)
			p.alt = &alt
			return p
		}
		switch {
		case s == "*":
			return cpart{star: true, pos: -1, w: -1}
		case strings.HasSuffix(s, "[]"):
			return cpart{pos: strings.Count(s, "[]") - 1, w: -1}
		}
		return cpart{pos: -1, w: watchOf(s, false, f), n: strings.Count(s, "[]")}
	}
	parts := func(ss []string, f int) []cpart {
		var ps []cpart
		for _, s := range ss {
			ps = append(ps, part(s, f))
		}
		return ps
	}
	t.typW = -1
	for fi, f := range fs {
		cf := cformat{name: f.name, seq: -1, drop: f.drop}
		for ri, r := range f.texts {
			if r.typ != "" {
				t.typW = watchOf("type", false, fi)
			}
			w := watchOf(r.path, false, fi)
			t.watches[w].texts = append(t.watches[w].texts, ref{fi, ri})
			cf.texts = append(cf.texts, ctext{typ: parseTpat(r.typ), scope: parts(r.scope, fi), sub: parts(r.sub, fi)})
		}
		for _, r := range f.ends {
			if r.typ != "" {
				t.typW = watchOf("type", false, fi)
			}
			ce := cend{typ: parseTpat(r.typ), scope: parts(r.scope, fi)}
			if r.path == "" {
				cf.typeEnds = append(cf.typeEnds, ce)
				continue
			}
			w := watchOf(r.path, false, fi)
			t.watches[w].ends = append(t.watches[w].ends, ref{fi, len(cf.ends)})
			cf.ends = append(cf.ends, ce)
		}
		for _, typ := range f.endAll {
			t.typW = watchOf("type", false, fi)
			t.endAll[typ] |= 1 << fi
		}
		if f.seq != "" {
			cf.seq = watchOf(f.seq, false, fi)
			t.watches[cf.seq].seq = true
		}
		for _, m := range f.meta {
			watchOf(m, true, fi)
		}
		t.fmts = append(t.fmts, cf)
	}
	// Exact paths before prefixes: lookup returns the first that matches,
	// so an exact path also carries the formats of the prefixes above it.
	for i := range t.watches {
		for _, pw := range t.watches {
			if e := &t.watches[i]; !e.prefix && pw.prefix && len(pw.segs) <= len(e.segs) && slices.Equal(pw.segs, e.segs[:len(pw.segs)]) {
				e.fmask |= pw.fmask
			}
		}
	}
	for _, pass := range []bool{false, true} {
		for i, w := range t.watches {
			if w.prefix == pass {
				t.first[w.segs[0].key] = append(t.first[w.segs[0].key], int32(i))
			}
		}
	}
	return t
}

func parsePath(p string) []pseg {
	var segs []pseg
	for _, k := range strings.Split(p, ".") {
		name := strings.TrimRight(k, "[]")
		segs = append(segs, pseg{key: name})
		for range strings.Count(k[len(name):], "[]") {
			segs = append(segs, pseg{arr: true})
		}
	}
	return segs
}

// lookup returns the watch whose path is path, or -1.
func (t *table) lookup(path []seg) int32 {
	if len(path) == 0 || path[0].idx >= 0 {
		return -1
	}
	k := path[0].key
	if containsByte(k, '\\') {
		k = unquote(nil, k)
	}
	for _, w := range t.first[string(k)] {
		if t.watches[w].match(path) {
			return w
		}
	}
	return -1
}

func (w *watch) match(path []seg) bool {
	if len(path) < len(w.segs) || !w.prefix && len(path) != len(w.segs) {
		return false
	}
	for i := 1; i < len(w.segs); i++ {
		s, p := w.segs[i], path[i]
		if s.arr != (p.idx >= 0) {
			return false
		}
		if !s.arr && !keyIs(p.key, s.key) {
			return false
		}
	}
	return true
}

func keyIs(raw []byte, k string) bool {
	if containsByte(raw, '\\') {
		return string(unquote(nil, raw)) == k
	}
	return string(raw) == k
}
