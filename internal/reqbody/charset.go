package reqbody

import (
	"bytes"
	"slices"
	"strings"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"
)

// reading is one conversion of the body's bytes to UTF-8.
type reading struct {
	name string // "UTF-16LE", one of the names encodingOf knows
	skip int    // BOM bytes to drop first
}

// unicodeCharsets maps the Content-Type charsets that are not ASCII
// supersets to their readings. A label without a byte order ("utf-16") is
// read both ways: RFC 2781 says big-endian, most Windows software and
// Python's codec assume little-endian.
var unicodeCharsets = map[string][]string{
	"utf-16": {"UTF-16BE", "UTF-16LE"}, "ucs-2": {"UTF-16BE", "UTF-16LE"}, "unicode": {"UTF-16BE", "UTF-16LE"},
	"utf-16le": {"UTF-16LE"}, "unicodefffe": {"UTF-16BE"}, "utf-16be": {"UTF-16BE"},
	"utf-32": {"UTF-32BE", "UTF-32LE"}, "ucs-4": {"UTF-32BE", "UTF-32LE"},
	"utf-32le": {"UTF-32LE"}, "utf-32be": {"UTF-32BE"},
}

func encodingOf(name string) encoding.Encoding {
	switch name {
	case "UTF-16LE":
		return unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM)
	case "UTF-16BE":
		return unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)
	case "UTF-32LE":
		return utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM)
	}
	return utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM)
}

// asciiCompatible reports whether a charset writes ASCII as ASCII, so that
// the body's bytes already read as the upstream will read a rule's words.
// Charsets that do not (UTF-7, EBCDIC, the escape-switching ISO-2022 and
// HZ) and ones crewgate does not know make the body uninspectable.
func asciiCompatible(cs string) bool {
	switch cs {
	case "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968", "iso-ir-6", "l1", "koi8-r", "koi8-u",
		"shift_jis", "sjis", "windows-31j", "euc-jp", "euc-kr", "gb2312", "gbk", "gb18030", "big5",
		"big5-hkscs", "tis-620", "ibm866", "cp866", "macintosh":
		return true
	}
	for _, p := range []string{"iso-8859-", "iso8859-", "iso_8859-", "windows-125", "cp125", "latin"} {
		if strings.HasPrefix(cs, p) {
			return true
		}
	}
	return false
}

// readingsOf returns the conversions b calls for: by its byte order mark,
// by each charset it is labelled with, and, without a BOM, by the zero bytes
// among its first four (RFC 4627 section 3: JSON text starts with two ASCII
// characters; Python's json.loads detects UTF-16 and UTF-32 so).
func readingsOf(b []byte, charsets []string) ([]reading, error) {
	var rs []reading
	add := func(name string, skip int) {
		if r := (reading{name, skip}); !slices.Contains(rs, r) {
			rs = append(rs, r)
		}
	}
	switch {
	case bytes.HasPrefix(b, []byte("\x00\x00\xfe\xff")):
		add("UTF-32BE", 4)
	case bytes.HasPrefix(b, []byte("\xff\xfe\x00\x00")): // or UTF-16LE's BOM and a NUL
		add("UTF-32LE", 4)
		add("UTF-16LE", 2)
	case bytes.HasPrefix(b, []byte("\xfe\xff")):
		add("UTF-16BE", 2)
	case bytes.HasPrefix(b, []byte("\xff\xfe")):
		add("UTF-16LE", 2)
	}
	bom := len(rs) > 0
	for _, cs := range charsets {
		if cs == "" {
			continue
		}
		names, ok := unicodeCharsets[cs]
		if !ok {
			if !asciiCompatible(cs) {
				return nil, uninspectable("unknown charset %s", shown(cs))
			}
			continue
		}
		for _, n := range names {
			add(n, 0)
		}
	}
	if !bom && len(b) >= 4 {
		z := [4]bool{b[0] == 0, b[1] == 0, b[2] == 0, b[3] == 0}
		switch z {
		case [4]bool{true, true, true, false}:
			add("UTF-32BE", 0)
		case [4]bool{false, true, true, true}:
			add("UTF-32LE", 0)
		case [4]bool{true, false, true, false}:
			add("UTF-16BE", 0)
		case [4]bool{false, true, false, true}:
			add("UTF-16LE", 0)
		}
	}
	return rs, nil
}

// convert returns b read as r, in UTF-8; invalid code units become U+FFFD.
func (v *View) convert(b []byte, r reading) ([]byte, error) {
	out, err := encodingOf(r.name).NewDecoder().Bytes(b[r.skip:])
	if err != nil {
		return nil, uninspectable("body cannot be read as %s: %v", r.name, err)
	}
	if len(out) > v.limit {
		return nil, uninspectable("body larger than %s as UTF-8 (read as %s)", FormatSize(v.limit), r.name)
	}
	return out, nil
}
