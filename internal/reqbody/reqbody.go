// Package reqbody decodes a request body into the view that policy rules
// read: the body as the upstream will understand it, whatever encodings the
// crew chose, so that a rule's words cannot hide behind an escape.
//
// Decode undoes Content-Encoding (gzip, x-gzip, deflate as zlib or raw, br,
// zstd, identity; stacked, in the order the header lists them), then reads
// the result twice over:
//
//   - as texts: the body itself and, when a byte order mark, the
//     Content-Type charset or the zero-byte pattern of RFC 4627 section 3
//     says it is UTF-16 or UTF-32, the body converted to UTF-8. The body as
//     sent stays a text beside its conversion, since an upstream may ignore
//     the label; when the label or the BOM is ambiguous ("utf-16" without a
//     BOM), both byte orders are read.
//   - as values, each on its own: the strings and object keys of JSON,
//     unescaped; form keys and values, percent- and plus-decoded; XML text
//     and attribute values with entities resolved; and the body of each
//     multipart part after its Content-Transfer-Encoding (base64,
//     quoted-printable, 7bit, 8bit, binary), itself read the same way by the
//     part's own Content-Type and charset, with the name and filename of its
//     Content-Disposition.
//
// Which readings apply follows the Content-Type (every Content-Type line the
// request carries, since upstreams differ in which one they honour): JSON
// for application/json, text/json, +json, NDJSON, JSON Lines and JSON
// sequences; form for application/x-www-form-urlencoded; XML for
// application/xml, text/xml and +xml; parts for multipart/*. A body of any
// other type (or none) that starts like JSON ('{', '[' or '"' after
// whitespace) is read as JSON too: many servers parse JSON whatever the
// label says. JSON strings are found by a lexical scan, not a full parse, so
// that a document that a lenient upstream accepts but encoding/json rejects
// (NaN, comments, trailing commas, raw control characters) still has its
// strings read; invalid JSON is never an error. XML is read the same way, up
// to the first error.
//
// A body Decode cannot read is an error wrapping ErrUninspectable with a
// reason a user can act on: an unknown Content-Encoding or
// Content-Transfer-Encoding, corrupt or trailing compressed data, an unknown
// charset, a multipart body that does not parse, or a body larger than the
// limit, raw or decoded. The limit bounds every text and value (a
// decompression bomb costs at most the limit, never its decoded size), and
// the view as a whole holds at most ViewFactor times the limit.
//
// NewDecoder and Encodings also serve response masking, so that crewgate has
// one Content-Encoding decoder.
package reqbody

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrUninspectable is wrapped by every error of Decode: the body cannot be
// read the way the upstream would read it.
var ErrUninspectable = errors.New("request body cannot be inspected")

// Error is a body Decode cannot read; Reason says why, in a sentence
// fragment fit for a refusal ("gzip body larger than 8 MiB after decoding").
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrUninspectable) hold.
func (e *Error) Unwrap() error { return ErrUninspectable }

func uninspectable(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// ViewFactor bounds a View: its texts, values and their bookkeeping hold at
// most ViewFactor times the limit given to Decode. The body, its UTF-8
// conversion, its values and a multipart part's values each fit in the
// limit; the factor leaves room for all of them at once.
const ViewFactor = 4

// maxDepth is how deep multipart bodies may nest.
const maxDepth = 4

// Kind says what a value was in the body.
type Kind uint8

// Kinds of values.
const (
	JSONString Kind = iota + 1 // a JSON string or object key, unescaped
	FormField                  // a form key or value, percent- and plus-decoded
	XMLText                    // XML character data or an attribute value, entities resolved
	Part                       // a multipart part's body (or a reading of it), transfer-decoded
	PartName                   // a multipart part's Content-Disposition name or filename
)

func (k Kind) String() string {
	switch k {
	case JSONString:
		return "JSON string"
	case FormField:
		return "form field"
	case XMLText:
		return "XML text"
	case Part:
		return "multipart part"
	case PartName:
		return "multipart part name"
	}
	return "value"
}

// View is a decoded request body: its texts and its values. It is read-only
// once Decode returns it, and may share memory with the raw body given to
// Decode, which must then stay unchanged.
type View struct {
	texts  []text
	values []byte    // every value, back to back
	ends   []int32   // ends[i] is where value i ends in values
	kinds  []kindRun // the kind of each value, as runs
	size   int       // bytes held, as Size reports
	budget int       // what size may reach
	limit  int       // what one text or value may hold
}

type text struct {
	b    []byte
	name string
}

// kindRun says that values from first on, up to the next run, have kind.
type kindRun struct {
	first int32
	kind  Kind
}

// NumTexts is the number of texts: the body and its conversions.
func (v *View) NumTexts() int { return len(v.texts) }

// Text returns text i.
func (v *View) Text(i int) []byte { return v.texts[i].b }

// TextName says what text i is: "body", or "body as UTF-16LE".
func (v *View) TextName(i int) string { return v.texts[i].name }

// NumValues is the number of values.
func (v *View) NumValues() int { return len(v.ends) }

// Value returns value i.
func (v *View) Value(i int) []byte {
	start := int32(0)
	if i > 0 {
		start = v.ends[i-1]
	}
	return v.values[start:v.ends[i]]
}

// ValueKind says what value i was in the body.
func (v *View) ValueKind(i int) Kind {
	j, found := slices.BinarySearchFunc(v.kinds, int32(i), func(r kindRun, i int32) int { return int(r.first - i) })
	if !found {
		j--
	}
	return v.kinds[j].kind
}

// Values returns every value back to back and where each one ends, for
// matchers that search all values at once before trying each one.
func (v *View) Values() (values []byte, ends []int32) { return v.values, v.ends }

// Size is how many bytes the view holds: its texts, its values and four
// bytes of bookkeeping per value.
func (v *View) Size() int { return v.size }

// Decode reads raw, a request body as the crew sent it, into the view rules
// see, by the request's Content-Encoding and Content-Type headers. limit
// bounds the body, raw and decoded, and every reading of it (policy.max_body).
//
// On error the View is still usable: it holds what could be read (at least
// the first limit bytes of the body, decoded when decoding got that far),
// for a caller that lets uninspectable bodies through.
func Decode(h http.Header, raw []byte, limit int) (*View, error) {
	limit = max(limit, 1)
	v := &View{limit: limit, budget: int(min(int64(limit)*ViewFactor, math.MaxInt32))}
	if len(raw) > limit {
		v.addText("body", raw[:limit])
		return v, uninspectable("body larger than %s", FormatSize(limit))
	}
	encs, err := Encodings(strings.Join(h.Values("Content-Encoding"), ","))
	if err != nil {
		v.addText("body", raw)
		return v, err
	}
	body := raw
	if len(encs) > 0 {
		if body, err = decodeContent(raw, encs, limit); err != nil {
			if body == nil {
				body = raw
			}
			v.addText("body", body)
			return v, err
		}
	}
	return v, v.read(mediaTypes(h.Values("Content-Type")), body, 0)
}

// addText adds a reading of the whole body, unless the budget is spent.
func (v *View) addText(name string, b []byte) error {
	if v.size+len(b) > v.budget {
		return v.overBudget()
	}
	v.texts = append(v.texts, text{b: b, name: name})
	v.size += len(b)
	return nil
}

// endValue ends the value that starts at start in v.values: it is kept when
// it is not empty (a pattern matching the empty string would otherwise
// match every body that has an empty value) and fits the budget.
func (v *View) endValue(start int, kind Kind) error {
	n := len(v.values) - start
	switch {
	case n == 0:
		return nil
	case n > v.limit || v.size+n+4 > v.budget:
		v.values = v.values[:start]
		return v.overBudget()
	}
	if len(v.kinds) == 0 || v.kinds[len(v.kinds)-1].kind != kind {
		v.kinds = append(v.kinds, kindRun{first: int32(len(v.ends)), kind: kind})
	}
	v.ends = append(v.ends, int32(len(v.values)))
	v.size += n + 4
	return nil
}

// addValue adds b as one value.
func (v *View) addValue(b []byte, kind Kind) error {
	start := len(v.values)
	v.values = append(v.values, b...)
	return v.endValue(start, kind)
}

func (v *View) overBudget() error {
	return uninspectable("body decodes to more than %s of text and values (%d times the %s limit)",
		FormatSize(v.budget), ViewFactor, FormatSize(v.limit))
}

// FormatSize writes a byte count the way config sizes are written: "8 MiB",
// "512 KiB", "1.5 MiB", "100 bytes".
func FormatSize(n int) string {
	for _, u := range []struct {
		name  string
		scale int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.scale {
			if n%u.scale == 0 {
				return strconv.Itoa(n/u.scale) + " " + u.name
			}
			return strconv.FormatFloat(float64(n)/float64(u.scale), 'f', 1, 64) + " " + u.name
		}
	}
	if n == 1 {
		return "1 byte"
	}
	return strconv.Itoa(n) + " bytes"
}

// shown makes a crew-chosen header value safe and short for a reason.
func shown(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '"' }) {
		return s
	}
	return strconv.Quote(s)
}
