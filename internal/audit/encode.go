package audit

import (
	"encoding"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The recorder encodes every event with a hand-written encoder instead of
// encoding/json: reflection, map key sorting and escaping were half of its
// time. The output is byte for byte what json.Marshal gives (the chain's
// hashes and every reader depend on it); FuzzEncodeEvent and
// TestEncodeEventMatchesJSON prove it.

// eventEncoder appends Events as JSON. Its scratch space makes it unsafe
// for concurrent use; the Recorder's writer owns one.
type eventEncoder struct {
	keys []string
}

// fastEncodeOK says whether the types the encoder knows are still the ones
// it was written for. When someone adds, renames, retypes or retags a field,
// or gives one of the types a MarshalJSON or MarshalText method, it is false
// and the recorder falls back to json.Marshal (TestEventLayoutIsKnown fails
// until the encoder is brought up to date).
var fastEncodeOK = eventLayoutKnown()

// knownLayouts is every field of every type the encoder writes, as
// fieldLayout prints it.
var knownLayouts = map[reflect.Type]string{
	reflect.TypeFor[Event]():    "Seq int64 json:\"seq\";Type audit.Type json:\"type\";Time time.Time json:\"time\";Session string json:\"session\";ID string json:\"id,omitempty\";Start *audit.Start json:\"start,omitempty\";Request *audit.Request json:\"request,omitempty\";Approval *audit.Approval json:\"approval,omitempty\";Response *audit.Response json:\"response,omitempty\";Tunnel *audit.Tunnel json:\"tunnel,omitempty\";Leak *audit.Leak json:\"leak,omitempty\";End *audit.End json:\"end,omitempty\";Gap *audit.Gap json:\"gap,omitempty\";Prev string json:\"prev\";Hash string json:\"hash,omitempty\";",
	reflect.TypeFor[Identity](): "Subject string json:\"subject,omitempty\";Email string json:\"email,omitempty\";Name string json:\"name,omitempty\";Issuer string json:\"issuer,omitempty\";Groups []string json:\"groups,omitempty\";",
	reflect.TypeFor[Start]():    "Identity audit.Identity json:\"identity\";Command []string json:\"command\";ConfigDigest string json:\"config_digest,omitempty\";Version string json:\"version,omitempty\";Nonce string json:\"nonce\";",
	reflect.TypeFor[Request]():  "Method string json:\"method\";URL string json:\"url\";Upstream string json:\"upstream,omitempty\";Route audit.Route json:\"route,omitempty\";Rule string json:\"rule,omitempty\";Decision audit.Decision json:\"decision\";Reason string json:\"reason,omitempty\";Refusal string json:\"refusal,omitempty\";Headers http.Header json:\"headers,omitempty\";Body *audit.Body json:\"body,omitempty\";",
	reflect.TypeFor[Approval](): "Decision audit.Decision json:\"decision\";Scope string json:\"scope,omitempty\";By string json:\"by,omitempty\";How string json:\"how\";WaitedMS int64 json:\"waited_ms\";",
	reflect.TypeFor[Response](): "Status int json:\"status\";Headers http.Header json:\"headers,omitempty\";Bytes int64 json:\"bytes\";Masked map[string]int json:\"masked,omitempty\";Scanned bool json:\"scanned\";Form string json:\"form,omitempty\";DurationMS int64 json:\"duration_ms\";Streamed bool json:\"streamed\";Error string json:\"error,omitempty\";Body *audit.Body json:\"body,omitempty\";",
	reflect.TypeFor[Tunnel]():   "Host string json:\"host\";BytesUp int64 json:\"bytes_up\";BytesDown int64 json:\"bytes_down\";DurationMS int64 json:\"duration_ms\";",
	reflect.TypeFor[Leak]():     "Upstream string json:\"upstream\";To string json:\"to\";Where string json:\"where,omitempty\";",
	reflect.TypeFor[End]():      "ExitCode int json:\"exit_code\";DurationMS int64 json:\"duration_ms\";Totals audit.Totals json:\"totals\";",
	reflect.TypeFor[Totals]():   "Requests int64 json:\"requests\";Denied int64 json:\"denied\";Approved int64 json:\"approved\";Masked int64 json:\"masked\";Tunnels int64 json:\"tunnels\";Leaks int64 json:\"leaks\";Dropped int64 json:\"dropped\";",
	reflect.TypeFor[Gap]():      "Dropped int64 json:\"dropped\";Reason string json:\"reason\";",
	reflect.TypeFor[Body]():     "Size int64 json:\"size\";SHA256 string json:\"sha256\";Preview string json:\"preview,omitempty\";Truncated bool json:\"truncated,omitempty\";Binary bool json:\"binary,omitempty\";",
}

func fieldLayout(t reflect.Type) string {
	var s strings.Builder
	for i := range t.NumField() {
		f := t.Field(i)
		s.WriteString(f.Name + " " + f.Type.String() + " " + string(f.Tag) + ";")
	}
	return s.String()
}

func eventLayoutKnown() bool {
	marshaler := reflect.TypeFor[json.Marshaler]()
	textMarshaler := reflect.TypeFor[encoding.TextMarshaler]()
	custom := func(t reflect.Type) bool {
		p := reflect.PointerTo(t)
		return t.Implements(marshaler) || t.Implements(textMarshaler) || p.Implements(marshaler) || p.Implements(textMarshaler)
	}
	for _, t := range []reflect.Type{reflect.TypeFor[Type](), reflect.TypeFor[Route](), reflect.TypeFor[Decision]()} {
		if custom(t) || t.Kind() != reflect.String {
			return false
		}
	}
	for t, want := range knownLayouts {
		if custom(t) || fieldLayout(t) != want {
			return false
		}
	}
	return true
}

// appendEvent appends e as json.Marshal encodes it. It reports false, with
// dst's contents past its original length undefined, when e holds a value
// json.Marshal refuses (a time outside RFC 3339) or the types changed since
// the encoder was written; the caller then asks encoding/json.
func (enc *eventEncoder) appendEvent(dst []byte, e *Event) ([]byte, bool) {
	if !fastEncodeOK {
		return dst, false
	}
	b := append(dst, `{"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"time":`...)
	b, ok := appendJSONTime(b, e.Time)
	if !ok {
		return b, false
	}
	b = append(b, `,"session":`...)
	b = appendJSONString(b, e.Session)
	if e.ID != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, e.ID)
	}
	if s := e.Start; s != nil {
		b = append(b, `,"start":{"identity":`...)
		b = appendIdentity(b, &s.Identity)
		b = append(b, `,"command":`...)
		b = appendStrings(b, s.Command)
		if s.ConfigDigest != "" {
			b = append(b, `,"config_digest":`...)
			b = appendJSONString(b, s.ConfigDigest)
		}
		if s.Version != "" {
			b = append(b, `,"version":`...)
			b = appendJSONString(b, s.Version)
		}
		b = append(b, `,"nonce":`...)
		b = appendJSONString(b, s.Nonce)
		b = append(b, '}')
	}
	if r := e.Request; r != nil {
		b = append(b, `,"request":{"method":`...)
		b = appendJSONString(b, r.Method)
		b = append(b, `,"url":`...)
		b = appendJSONString(b, r.URL)
		b = appendOptString(b, `,"upstream":`, r.Upstream)
		b = appendOptString(b, `,"route":`, string(r.Route))
		b = appendOptString(b, `,"rule":`, r.Rule)
		b = append(b, `,"decision":`...)
		b = appendJSONString(b, string(r.Decision))
		b = appendOptString(b, `,"reason":`, r.Reason)
		b = appendOptString(b, `,"refusal":`, r.Refusal)
		if len(r.Headers) > 0 {
			b = append(b, `,"headers":`...)
			b = enc.appendHeader(b, r.Headers)
		}
		if r.Body != nil {
			b = append(b, `,"body":`...)
			b = appendBody(b, r.Body)
		}
		b = append(b, '}')
	}
	if a := e.Approval; a != nil {
		b = append(b, `,"approval":{"decision":`...)
		b = appendJSONString(b, string(a.Decision))
		b = appendOptString(b, `,"scope":`, a.Scope)
		b = appendOptString(b, `,"by":`, a.By)
		b = append(b, `,"how":`...)
		b = appendJSONString(b, a.How)
		b = append(b, `,"waited_ms":`...)
		b = strconv.AppendInt(b, a.WaitedMS, 10)
		b = append(b, '}')
	}
	if r := e.Response; r != nil {
		b = append(b, `,"response":{"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
		if len(r.Headers) > 0 {
			b = append(b, `,"headers":`...)
			b = enc.appendHeader(b, r.Headers)
		}
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, r.Bytes, 10)
		if len(r.Masked) > 0 {
			b = append(b, `,"masked":`...)
			b = enc.appendCounts(b, r.Masked)
		}
		b = append(b, `,"scanned":`...)
		b = strconv.AppendBool(b, r.Scanned)
		b = appendOptString(b, `,"form":`, r.Form)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendInt(b, r.DurationMS, 10)
		b = append(b, `,"streamed":`...)
		b = strconv.AppendBool(b, r.Streamed)
		b = appendOptString(b, `,"error":`, r.Error)
		if r.Body != nil {
			b = append(b, `,"body":`...)
			b = appendBody(b, r.Body)
		}
		b = append(b, '}')
	}
	if t := e.Tunnel; t != nil {
		b = append(b, `,"tunnel":{"host":`...)
		b = appendJSONString(b, t.Host)
		b = append(b, `,"bytes_up":`...)
		b = strconv.AppendInt(b, t.BytesUp, 10)
		b = append(b, `,"bytes_down":`...)
		b = strconv.AppendInt(b, t.BytesDown, 10)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendInt(b, t.DurationMS, 10)
		b = append(b, '}')
	}
	if l := e.Leak; l != nil {
		b = append(b, `,"leak":{"upstream":`...)
		b = appendJSONString(b, l.Upstream)
		b = append(b, `,"to":`...)
		b = appendJSONString(b, l.To)
		b = appendOptString(b, `,"where":`, l.Where)
		b = append(b, '}')
	}
	if n := e.End; n != nil {
		t := &n.Totals
		b = append(b, `,"end":{"exit_code":`...)
		b = strconv.AppendInt(b, int64(n.ExitCode), 10)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendInt(b, n.DurationMS, 10)
		b = append(b, `,"totals":{"requests":`...)
		b = strconv.AppendInt(b, t.Requests, 10)
		b = append(b, `,"denied":`...)
		b = strconv.AppendInt(b, t.Denied, 10)
		b = append(b, `,"approved":`...)
		b = strconv.AppendInt(b, t.Approved, 10)
		b = append(b, `,"masked":`...)
		b = strconv.AppendInt(b, t.Masked, 10)
		b = append(b, `,"tunnels":`...)
		b = strconv.AppendInt(b, t.Tunnels, 10)
		b = append(b, `,"leaks":`...)
		b = strconv.AppendInt(b, t.Leaks, 10)
		b = append(b, `,"dropped":`...)
		b = strconv.AppendInt(b, t.Dropped, 10)
		b = append(b, "}}"...)
	}
	if g := e.Gap; g != nil {
		b = append(b, `,"gap":{"dropped":`...)
		b = strconv.AppendInt(b, g.Dropped, 10)
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, g.Reason)
		b = append(b, '}')
	}
	b = append(b, `,"prev":`...)
	b = appendJSONString(b, e.Prev)
	b = appendOptString(b, `,"hash":`, e.Hash)
	return append(b, '}'), true
}

// appendIdentity writes an object whose fields are all omitempty: each is
// written with a leading comma and the first comma becomes the brace.
func appendIdentity(b []byte, id *Identity) []byte {
	at := len(b)
	b = appendOptString(b, `,"subject":`, id.Subject)
	b = appendOptString(b, `,"email":`, id.Email)
	b = appendOptString(b, `,"name":`, id.Name)
	b = appendOptString(b, `,"issuer":`, id.Issuer)
	if len(id.Groups) > 0 {
		b = append(b, `,"groups":`...)
		b = appendStrings(b, id.Groups)
	}
	if len(b) == at {
		return append(b, "{}"...)
	}
	b[at] = '{'
	return append(b, '}')
}

func appendBody(b []byte, body *Body) []byte {
	b = append(b, `{"size":`...)
	b = strconv.AppendInt(b, body.Size, 10)
	b = append(b, `,"sha256":`...)
	b = appendJSONString(b, body.SHA256)
	b = appendOptString(b, `,"preview":`, body.Preview)
	if body.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	if body.Binary {
		b = append(b, `,"binary":true`...)
	}
	return append(b, '}')
}

// appendHeader writes a non-empty header as encoding/json writes a map:
// keys sorted bytewise, a nil value list as null.
func (enc *eventEncoder) appendHeader(b []byte, h http.Header) []byte {
	keys := enc.keys[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendStrings(b, h[k])
	}
	clear(keys)
	enc.keys = keys[:0]
	return append(b, '}')
}

func (enc *eventEncoder) appendCounts(b []byte, m map[string]int) []byte {
	keys := enc.keys[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(m[k]), 10)
	}
	clear(keys)
	enc.keys = keys[:0]
	return append(b, '}')
}

// appendStrings writes a []string field without omitempty: nil is null.
func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, key...), s)
}

// appendJSONTime writes t as time.Time.MarshalJSON does, and reports false
// where MarshalJSON fails (json.Marshal then fails too).
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	// The same checks as time's appendStrictRFC3339.
	if b[n0+len("9999")] != '-' {
		return b, false
	}
	if b[len(b)-1] != 'Z' {
		c := b[len(b)-len("Z07:00")]
		h := b[len(b)-len("07:00"):]
		if ('0' <= c && c <= '9') || 10*(h[0]-'0')+(h[1]-'0') >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}

const hexDigits = "0123456789abcdef"

// htmlSafe holds true for the ASCII bytes encoding/json writes as they are
// (it escapes <, > and & for HTML).
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString is encoding/json's appendString with HTML escaping, as
// json.Marshal uses it.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
