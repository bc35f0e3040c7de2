package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"html"
	"strings"
)

// Reveals reports whether b holds secret in any form a client could decode,
// and which: raw, base64 (both alphabets, any alignment, inside longer
// strings), hex (any case), percent-encoding, JSON and JavaScript escapes,
// HTML references, UTF-16 (either byte order), and those forms nested two
// deep (base64 of percent-encoding, ...). A test for a secret checks with
// it rather than with bytes.Contains, which sees the raw form only.
func Reveals(b []byte, secret string) (form string, ok bool) {
	return reveal(b, []byte(secret), "", 2)
}

func reveal(b, secret []byte, path string, depth int) (string, bool) {
	if bytes.Contains(b, secret) {
		if path == "" {
			path = "raw"
		}
		return path, true
	}
	if depth == 0 {
		return "", false
	}
	for _, d := range decoders {
		for _, out := range d.fn(b) {
			if len(out) == 0 || bytes.Equal(out, b) {
				continue
			}
			if f, ok := reveal(out, secret, strings.TrimPrefix(path+"+"+d.name, "+"), depth-1); ok {
				return f, true
			}
		}
	}
	return "", false
}

var decoders = []struct {
	name string
	fn   func([]byte) [][]byte
}{
	{"base64", decodeBase64Runs},
	{"hex", decodeHexRuns},
	{"percent", func(b []byte) [][]byte { return [][]byte{unescapeLenient(b)} }},
	{"html", func(b []byte) [][]byte { return [][]byte{[]byte(html.UnescapeString(string(b)))} }},
	{"utf16", func(b []byte) [][]byte { return [][]byte{everyOther(b, 0), everyOther(b, 1)} }},
}

// decodeBase64Runs decodes every run of base64 characters (either alphabet)
// at each of the four starting offsets, ignoring what does not decode.
func decodeBase64Runs(b []byte) [][]byte {
	var out [][]byte
	isB64 := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("+/-_=", c) >= 0
	}
	for i := 0; i < len(b); {
		if !isB64(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && isB64(b[j]) {
			j++
		}
		run := strings.TrimRight(string(b[i:j]), "=")
		run = strings.NewReplacer("-", "+", "_", "/").Replace(run)
		for off := range 4 {
			if off >= len(run) {
				break
			}
			s := run[off:]
			s = s[:len(s)-len(s)%4]
			if d, err := base64.StdEncoding.DecodeString(s); err == nil {
				out = append(out, d)
			}
			if r := run[off:]; len(r)%4 > 1 {
				if d, err := base64.RawStdEncoding.DecodeString(r); err == nil {
					out = append(out, d)
				}
			}
		}
		i = j
	}
	return out
}

// decodeHexRuns decodes every run of hex digits at both alignments.
func decodeHexRuns(b []byte) [][]byte {
	var out [][]byte
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	for i := 0; i < len(b); {
		if !isHex(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && isHex(b[j]) {
			j++
		}
		for off := range 2 {
			s := b[i+min(off, j-i) : j]
			s = s[:len(s)-len(s)%2]
			if d, err := hex.DecodeString(string(s)); err == nil && len(d) > 0 {
				out = append(out, d)
			}
		}
		i = j
	}
	return out
}

// unescapeLenient decodes %XX, %uXXXX, \uXXXX, \u{H…}, \xXX and JSON short escapes
// wherever they occur, leaving everything else as it is.
func unescapeLenient(b []byte) []byte {
	var out []byte
	hexv := func(s []byte) (int, bool) {
		v := 0
		for _, c := range s {
			d := strings.IndexByte("0123456789abcdef", c|0x20)
			if d < 0 {
				return 0, false
			}
			v = v<<4 | d
		}
		return v, true
	}
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '%' && i+5 < len(b) && (b[i+1] == 'u' || b[i+1] == 'U'):
			if v, ok := hexv(b[i+2 : i+6]); ok {
				out = append(out, string(rune(v))...)
				i += 5
				continue
			}
		case b[i] == '\\' && i+3 < len(b) && b[i+1] == 'u' && b[i+2] == '{':
			if k := bytes.IndexByte(b[i+3:], '}'); k > 0 && k <= 32 {
				if v, ok := hexv(bytes.TrimLeft(b[i+3:i+3+k], "0")); ok {
					out = append(out, string(rune(v))...)
					i += 3 + k
					continue
				}
			}
		case b[i] == '%' && i+2 < len(b):
			if v, ok := hexv(b[i+1 : i+3]); ok {
				out = append(out, byte(v))
				i += 2
				continue
			}
		case b[i] == '\\' && i+5 < len(b) && b[i+1] == 'u':
			if v, ok := hexv(b[i+2 : i+6]); ok {
				out = append(out, string(rune(v))...)
				i += 5
				continue
			}
		case b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x':
			if v, ok := hexv(b[i+2 : i+4]); ok {
				out = append(out, byte(v))
				i += 3
				continue
			}
		case b[i] == '\\' && i+1 < len(b) && strings.IndexByte(`/"\`, b[i+1]) >= 0:
			out = append(out, b[i+1])
			i++
			continue
		}
		out = append(out, b[i])
	}
	return out
}

func everyOther(b []byte, parity int) []byte {
	out := make([]byte, 0, len(b)/2+1)
	for i := parity; i < len(b); i += 2 {
		out = append(out, b[i])
	}
	return out
}
