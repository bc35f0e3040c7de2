package reqbody

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"slices"
	"strings"
	"unicode/utf8"
)

// format is a syntax values are read from; a body may be read in several.
type format uint8

const (
	jsonFormat format = 1 << iota
	formFormat
	xmlFormat
	multipartFormat
)

// formats says which media types are read in which format: exact types, a
// structured syntax suffix (RFC 6839) or a type prefix.
var formats = []struct {
	format format
	types  []string
	suffix string
	prefix string
}{
	{jsonFormat, []string{"application/json", "text/json", "application/x-ndjson", "application/ndjson",
		"application/jsonl", "application/x-jsonlines", "application/jsonlines", "application/json-seq"}, "+json", ""},
	{formFormat, []string{"application/x-www-form-urlencoded"}, "", ""},
	{xmlFormat, []string{"application/xml", "text/xml"}, "+xml", ""},
	{multipartFormat, nil, "", "multipart/"},
}

func formatOf(typ string) format {
	for _, f := range formats {
		if slices.Contains(f.types, typ) || f.suffix != "" && strings.HasSuffix(typ, f.suffix) ||
			f.prefix != "" && strings.HasPrefix(typ, f.prefix) {
			return f.format
		}
	}
	return 0
}

// mediaType is one Content-Type value.
type mediaType struct{ typ, charset, boundary string }

// mediaTypes parses every distinct Content-Type value.
func mediaTypes(values []string) []mediaType {
	var out []mediaType
	for _, ct := range values {
		if mt := parseMediaType(ct); !slices.Contains(out, mt) {
			out = append(out, mt)
		}
	}
	return out
}

func parseMediaType(ct string) mediaType {
	typ, params, err := mime.ParseMediaType(ct)
	if err != nil {
		typ, params = lenientMediaType(ct)
	}
	return mediaType{typ: typ, charset: strings.ToLower(strings.TrimSpace(params["charset"])), boundary: params["boundary"]}
}

// lenientMediaType reads a Content-Type that mime.ParseMediaType rejects (a
// repeated or malformed parameter) the way a forgiving server would: the
// type before the first ';', then name=value pairs, the first of a name
// winning.
func lenientMediaType(ct string) (string, map[string]string) {
	typ, rest, _ := strings.Cut(ct, ";")
	params := map[string]string{}
	for p := range strings.SplitSeq(rest, ";") {
		k, val, ok := strings.Cut(p, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if prev, dup := params[k]; ok && k != "" && !dup {
			params[k] = val
		} else if dup && k == "boundary" && prev != val {
			// Servers differ on which one wins: nobody can say where the
			// parts are.
			params[k] = ambiguousBoundary
		}
	}
	return strings.ToLower(strings.TrimSpace(typ)), params
}

// read adds the readings of body and their values, by types. At depth 0
// the readings are the view's texts; in a multipart part (depth > 0) they
// are Part values, the part's body itself already added by the caller.
func (v *View) read(types []mediaType, body []byte, depth int) error {
	var fs format
	charsets := make([]string, 0, len(types))
	for _, t := range types {
		fs |= formatOf(t.typ)
		charsets = append(charsets, t.charset)
	}
	first := body
	if depth == 0 {
		first = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
		if err := v.addText("body", first); err != nil {
			return err
		}
	}
	rs, err := readingsOf(body, charsets)
	if err != nil {
		return err
	}
	texts := [][]byte{first}
	for _, r := range rs {
		out, err := v.convert(body, r)
		if err == nil && depth == 0 {
			err = v.addText("body as "+r.name, out)
		} else if err == nil {
			err = v.addValue(out, Part)
		}
		if err != nil {
			return err
		}
		texts = append(texts, out)
	}
	if fs&multipartFormat != 0 {
		// Multipart framing is ASCII: only the body as sent has parts.
		for _, t := range types {
			if formatOf(t.typ) == multipartFormat {
				if err := v.multipart(first, t.boundary, depth); err != nil {
					return err
				}
			}
		}
	}
	for _, t := range texts {
		if err := v.valuesOf(t, fs); err != nil {
			return err
		}
	}
	return nil
}

// valuesOf adds the values of one reading in the formats fs names, and as
// JSON whenever it starts like JSON.
func (v *View) valuesOf(b []byte, fs format) error {
	json := fs&jsonFormat != 0 || looksJSON(b)
	if json || fs&(formFormat|xmlFormat) != 0 {
		// Decoded values are never longer than the text they come from:
		// room for them all at once saves copying as the buffer grows.
		v.values = slices.Grow(v.values, min(len(b), v.budget-v.size))
	}
	if json {
		if err := v.jsonStrings(b); err != nil {
			return err
		}
	}
	// A lenient parser (single quotes, comments, a multibyte charset that
	// swallows a backslash) may place string boundaries where the lexical
	// scan does not: the whole text with every escape decoded is a value
	// too, wherever the quotes are.
	if bytes.Contains(b, []byte(`\u`)) {
		s := len(v.values)
		v.values = appendJSONUnescaped(v.values, b)
		if err := v.endValue(s, JSONString); err != nil {
			return err
		}
	}
	if fs&formFormat != 0 {
		if err := v.form(b); err != nil {
			return err
		}
	}
	if fs&xmlFormat != 0 {
		return v.xmlValues(b)
	}
	return nil
}

// looksJSON reports whether b starts like a JSON object, array or string,
// after whitespace and JSON-sequence record separators.
func looksJSON(b []byte) bool {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n' || b[i] == 0x1e) {
		i++
	}
	return i < len(b) && (b[i] == '{' || b[i] == '[' || b[i] == '"')
}

// jsonStrings adds every JSON string literal in b, unescaped. The scan is
// lexical (outside a string only '"' matters, inside it a '"' after an even
// run of backslashes ends it), so it finds every string of a valid document
// and keeps going through an invalid one; an unterminated string runs to
// the end of b.
func (v *View) jsonStrings(b []byte) error {
	for i := 0; i < len(b); {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return nil
		}
		start := i + q + 1
		end := closingQuote(b, start)
		s := len(v.values)
		v.values = appendJSONUnescaped(v.values, b[start:end])
		if err := v.endValue(s, JSONString); err != nil {
			return err
		}
		i = end + 1
	}
	return nil
}

// closingQuote is the index of the '"' that ends the string starting at
// from, or len(b).
func closingQuote(b []byte, from int) int {
	for i := from; ; {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b)
		}
		j := i + q
		k := j
		for k > from && b[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return j
		}
		i = j + 1
	}
}

// appendJSONUnescaped appends the JSON string body s unescaped, as
// encoding/json reads a valid string (a lone surrogate becomes U+FFFD). It
// is hand-written rather than encoding/json's because it must not give up
// where lenient parsers do not: a malformed escape and raw control
// characters are kept as written, and invalid UTF-8 is left as it is.
func appendJSONUnescaped(dst, s []byte) []byte {
	for {
		i := bytes.IndexByte(s, '\\')
		if i < 0 || i+1 >= len(s) {
			return append(dst, s...)
		}
		dst, s = append(dst, s[:i]...), s[i:]
		switch c := s[1]; c {
		case '"', '\\', '/':
			dst, s = append(dst, c), s[2:]
		case 'b', 'f', 'n', 'r', 't':
			dst, s = append(dst, "\b\f\n\r\t"[strings.IndexByte("bfnrt", c)]), s[2:]
		case 'u':
			r, ok := hex4(s[2:])
			if !ok {
				dst, s = append(dst, s[:2]...), s[2:]
				continue
			}
			n := 6
			if 0xd800 <= r && r < 0xdc00 {
				if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
					if lo, ok := hex4(s[8:]); ok && 0xdc00 <= lo && lo < 0xe000 {
						r, n = 0x10000+(r-0xd800)<<10+(lo-0xdc00), 12
					}
				}
			}
			if 0xd800 <= r && r < 0xe000 {
				r = utf8.RuneError
			}
			dst, s = utf8.AppendRune(dst, r), s[n:]
		default:
			dst, s = append(dst, s[:2]...), s[2:]
		}
	}
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// form adds the keys and values of an application/x-www-form-urlencoded
// body.
func (v *View) form(b []byte) error {
	for len(b) > 0 {
		field := b
		if i := bytes.IndexByte(b, '&'); i >= 0 {
			field, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, _ := bytes.Cut(field, []byte("="))
		for _, part := range [2][]byte{key, val} {
			s := len(v.values)
			v.values = appendFormUnescaped(v.values, part)
			if err := v.endValue(s, FormField); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendFormUnescaped appends s with '+' as a space and each %XX as its
// byte. Unlike url.QueryUnescape it keeps a malformed escape as written
// instead of failing the field, as PHP and many servers do, so that "%zz"
// cannot hide the rest of a value.
func appendFormUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' {
			c = ' '
		} else if c == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				c, i = hi<<4|lo, i+2
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// xmlValues adds the character data and attribute values of an XML body,
// entities resolved (HTML's named ones too), up to the first error.
func (v *View) xmlValues(b []byte) error {
	// Go's reader does not expand entities a DOCTYPE declares; libxml2,
	// Java and .NET do, so their text is not what crewgate would read.
	if bytes.Contains(b, []byte("<!ENTITY")) {
		return uninspectable("XML body declares entities (<!ENTITY), which crewgate does not expand")
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = false
	d.Entity = xml.HTMLEntity
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil } // readings are UTF-8 already
	for {
		tok, err := d.RawToken()
		if err != nil {
			return nil // invalid XML: its texts remain
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				if err := v.addValue(t, XMLText); err != nil {
					return err
				}
			}
		case xml.StartElement:
			for _, a := range t.Attr {
				s := len(v.values)
				v.values = append(v.values, a.Value...)
				if err := v.endValue(s, XMLText); err != nil {
					return err
				}
			}
		}
	}
}

// multipart adds each part of a multipart body: its Content-Disposition
// name and filename, its body after the Content-Transfer-Encoding, and that
// body's own readings and values.
// ambiguousBoundary marks a Content-Type with two different boundaries.
const ambiguousBoundary = "\x00"

func (v *View) multipart(body []byte, boundary string, depth int) error {
	switch {
	case boundary == ambiguousBoundary:
		return uninspectable("multipart body names two different boundaries")
	case boundary == "":
		return uninspectable("multipart body without a boundary parameter")
	case depth >= maxDepth:
		return uninspectable("multipart body nested more than %d deep", maxDepth)
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return uninspectable("multipart body cannot be parsed: %v", err)
		}
		if err := v.part(p, depth); err != nil {
			return err
		}
	}
}

func (v *View) part(p *multipart.Part, depth int) error {
	if _, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil {
		for _, k := range []string{"name", "filename"} {
			s := len(v.values)
			v.values = append(v.values, params[k]...)
			if err := v.endValue(s, PartName); err != nil {
				return err
			}
		}
	}
	// The part's body goes straight into the values; later appends may move
	// v.values, but body keeps the bytes it was read into.
	start := len(v.values)
	var err error
	if v.values, err = v.appendPart(v.values, p); err != nil {
		v.values = v.values[:start]
		return err
	}
	body := v.values[start:]
	if err := v.endValue(start, Part); err != nil {
		return err
	}
	types := mediaTypes(p.Header.Values("Content-Type"))
	if len(types) == 0 {
		types = []mediaType{{typ: "text/plain"}}
	}
	return v.read(types, body, depth+1)
}

// appendPart appends a part's body after its Content-Transfer-Encoding.
func (v *View) appendPart(dst []byte, p *multipart.Part) ([]byte, error) {
	var r io.Reader = p
	switch cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
	case "quoted-printable":
		r = quotedprintable.NewReader(p)
	case "base64":
		enc, over, err := appendAtMost(nil, p, v.limit)
		if err == nil && !over {
			return appendBase64(dst, enc), nil
		}
		if err != nil {
			return dst, uninspectable("multipart part cannot be read: %v", err)
		}
		return dst, uninspectable("multipart part larger than %s", FormatSize(v.limit))
	default:
		return dst, uninspectable("multipart part with unknown Content-Transfer-Encoding %s", shown(cte))
	}
	out, over, err := appendAtMost(dst, r, v.limit)
	switch {
	case err != nil:
		return dst, uninspectable("multipart body cannot be parsed: %v", err)
	case over:
		return dst, uninspectable("multipart part larger than %s", FormatSize(v.limit))
	}
	return out, nil
}

// appendBase64 decodes MIME base64 as RFC 2045 asks: characters outside the
// alphabet (line breaks, spaces) are ignored. Padding ends a run; the next
// run is decoded on its own, as decoders that resume after padding do.
func appendBase64(dst, enc []byte) []byte {
	for run := range bytes.SplitSeq(enc, []byte("=")) {
		n := 0
		for _, c := range run {
			if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' {
				run[n] = c
				n++
			}
		}
		if n%4 == 1 {
			n-- // a lone sextet holds no whole byte
		}
		dst, _ = base64.RawStdEncoding.AppendDecode(dst, run[:n])
	}
	return dst
}
