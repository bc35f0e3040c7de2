package mask

import (
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"unicode/utf16"
)

// Literals are the exact values crewgate injected. A hostile upstream can
// hand one back in any form its client decodes, so each value is searched in
// every form of DESIGN.md's mask contract. No library searches a stream for
// a value under several encodings at once without holding it whole, so the
// matchers are written here, on the scanner's bounded-window contract:
//
//   - exact forms, matched as prefixes: base64 (standard and URL alphabets,
//     padded or not, and the characters that depend only on the value at
//     each of the three alignments, so it is found inside a longer encoded
//     string such as Basic credentials) and UTF-16 (LE and BE);
//   - hex, case-insensitive;
//   - the value itself, where any byte may instead be written %XX (or
//     %25XX), \uXXXX, \xXX, a JSON short escape, an HTML numeric reference
//     (&#DDD; or &#xHH;, leading zeros, ';' optional) or an HTML named
//     reference: partial or every-byte encodings, mixed as an attacker
//     likes.

// literalDetectors returns the detectors that find v in all its forms.
func literalDetectors(name, v string) []*detector {
	exact := []string{}
	add := func(s string) {
		if len(s) >= minLiteral && s != v && !slices.Contains(exact, s) {
			exact = append(exact, s)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		add(strings.TrimRight(enc.EncodeToString([]byte(v)), "="))
	}
	for _, f := range Base64Fragments(v) {
		add(f)
	}
	le, be := UTF16(v)
	add(string(le))
	add(string(be))
	dets := []*detector{{
		name:     name,
		prefixes: flexPrefixes(v),
		match:    flexMatch(v),
	}, {
		name:     name,
		prefixes: hexPrefixes(v),
		match:    hexMatch(hex.EncodeToString([]byte(v))),
	}}
	if len(exact) > 0 {
		dets = append(dets, &detector{name: name, prefixes: exact, match: func(_ []byte, _, plen int, _ bool, _ escMode) (int, bool) {
			return plen, false
		}})
	}
	return dets
}

// flexMatch matches v where each byte is raw or encoded (see encodedByte).
func flexMatch(v string) matchFunc {
	return func(b []byte, i, _ int, eof bool, _ escMode) (int, bool) {
		j := i
		for k := range len(v) {
			n, more := encodedByte(b, j, v[k], eof)
			if more {
				return 0, true
			}
			if n == 0 {
				return 0, false
			}
			j += n
		}
		return j - i, false
	}
}

// encodedByte returns the length of a form of c at b[j:], 0 when there is
// none, or more when that depends on bytes past len(b).
func encodedByte(b []byte, j int, c byte, eof bool) (n int, more bool) {
	if j >= len(b) {
		return 0, !eof
	}
	switch b[j] {
	case '%':
		n, more = percentByte(b, j, c, eof)
	case '\\':
		n, more = backslashByte(b, j, c, eof)
	case '&':
		n, more = entityByte(b, j, c, eof)
	}
	if n > 0 || more {
		return n, more
	}
	if b[j] == c {
		return 1, false
	}
	return 0, false
}

// hexAt decodes the k hex digits at b[j:]; ok is false when they are not
// hex, more when b ends first.
func hexAt(b []byte, j, k int, eof bool) (v int, ok, more bool) {
	for x := range k {
		if j+x >= len(b) {
			return 0, false, !eof
		}
		d := unhex(b[j+x])
		if d < 0 {
			return 0, false, false
		}
		v = v<<4 | d
	}
	return v, true, false
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// percentByte reads %XX, %25XX (a percent sign encoded twice over) and
// %uXXXX (JavaScript's escape()).
func percentByte(b []byte, j int, c byte, eof bool) (int, bool) {
	if j+1 < len(b) && (b[j+1] == 'u' || b[j+1] == 'U') {
		v, ok, more := hexAt(b, j+2, 4, eof)
		if ok && v == int(c) {
			return 6, false
		}
		return 0, more
	}
	v, ok, more := hexAt(b, j+1, 2, eof)
	if !ok {
		return 0, more
	}
	if v == int(c) {
		return 3, false
	}
	if v == '%' {
		v, ok, more = hexAt(b, j+3, 2, eof)
		if ok && v == int(c) {
			return 5, false
		}
		return 0, more
	}
	return 0, false
}

// backslashByte reads \uXXXX, \u{H…}, \xXX and the JSON short escapes \/ \" \\.
func backslashByte(b []byte, j int, c byte, eof bool) (int, bool) {
	if j+1 >= len(b) {
		return 0, !eof
	}
	switch b[j+1] {
	case 'u':
		if j+2 < len(b) && b[j+2] == '{' {
			return braceEscape(b, j, c, eof)
		}
		v, ok, more := hexAt(b, j+2, 4, eof)
		if ok && v == int(c) {
			return 6, false
		}
		return 0, more
	case 'x':
		v, ok, more := hexAt(b, j+2, 2, eof)
		if ok && v == int(c) {
			return 4, false
		}
		return 0, more
	case '/', '"', '\\':
		if b[j+1] == c {
			return 2, false
		}
	}
	return 0, false
}

// braceEscape reads JavaScript's \u{H…} (leading zeros up to maxDigits).
func braceEscape(b []byte, j int, c byte, eof bool) (int, bool) {
	k, v := j+3, 0
	for k < len(b) && k-j-3 < maxDigits {
		d := unhex(b[k])
		if d < 0 {
			break
		}
		v = v<<4 | d
		k++
	}
	if k == len(b) {
		return 0, !eof
	}
	if k == j+3 || b[k] != '}' || v != int(c) {
		return 0, false
	}
	return k + 1 - j, false
}

// Base64Fragments returns, for the standard and URL alphabets, the base64
// characters that depend on v alone when v starts 0, 1 or 2 bytes into a
// 3-byte quantum: every base64 text of a longer string holding v (Basic
// credentials, a token inside JSON) holds one of them.
func Base64Fragments(v string) []string {
	var out []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for k := range 3 {
			s := enc.EncodeToString(append(make([]byte, k), v...))
			from, to := (8*k+5)/6, 8*(k+len(v))/6
			if from < to && to <= len(s) && !slices.Contains(out, s[from:to]) {
				out = append(out, s[from:to])
			}
		}
	}
	return out
}

// UTF16 returns v in UTF-16, little and big endian, without a byte order mark.
func UTF16(v string) (le, be []byte) {
	for _, r := range utf16.Encode([]rune(v)) {
		le = append(le, byte(r), byte(r>>8))
		be = append(be, byte(r>>8), byte(r))
	}
	return le, be
}

// maxDigits bounds the digits of one numeric escape, leading zeros
// included: HTML parsers accept any number, a bounded window cannot.
const maxDigits = 32

// namedEntities are the HTML named character references of the ASCII bytes
// a credential can hold.
var namedEntities = map[string]byte{
	"amp": '&', "lt": '<', "gt": '>', "quot": '"', "apos": '\'', "sol": '/', "plus": '+',
	"equals": '=', "lowbar": '_', "period": '.', "colon": ':', "comma": ',', "excl": '!',
	"num": '#', "dollar": '$', "percnt": '%', "ast": '*', "lpar": '(', "rpar": ')',
	"semi": ';', "quest": '?', "commat": '@', "lsqb": '[', "rsqb": ']', "bsol": '\\',
	"Hat": '^', "grave": '`', "lcub": '{', "rcub": '}', "verbar": '|', "midast": '*',
	"UnderBar": '_', "NewLine": '\n', "Tab": '\t',
}

// maxEntityName is the longest key of namedEntities.
const maxEntityName = 8

// entityByte reads &#DDD;, &#xHH; (up to maxDigits digits, ';' optional,
// as HTML parsers accept) and the named references of namedEntities.
func entityByte(b []byte, j int, c byte, eof bool) (int, bool) {
	if j+1 >= len(b) {
		return 0, !eof
	}
	if b[j+1] != '#' {
		k := j + 1
		for k < len(b) && k-j-1 <= maxEntityName && (b[k] >= 'a' && b[k] <= 'z' || b[k] >= 'A' && b[k] <= 'Z') {
			k++
		}
		if k == len(b) && k-j-1 <= maxEntityName {
			return 0, !eof
		}
		if k < len(b) && b[k] == ';' {
			if v, ok := namedEntities[string(b[j+1:k])]; ok && v == c {
				return k + 1 - j, false
			}
		}
		return 0, false
	}
	k := j + 2
	base := 10
	if k < len(b) && (b[k] == 'x' || b[k] == 'X') {
		base, k = 16, k+1
	}
	start, v := k, 0
	for k < len(b) && k-start < maxDigits {
		d := unhex(b[k])
		if d < 0 || d >= base {
			break
		}
		v = v*base + d
		k++
	}
	if k == len(b) && !eof {
		return 0, true // more digits or the ';' may follow
	}
	if k == start || v != int(c) {
		return 0, false
	}
	if k < len(b) && b[k] == ';' {
		k++
	}
	return k - j, false
}

// flexPrefixes are the two-byte starts of every match flexMatch can make:
// the scanner tries it only where one occurs.
func flexPrefixes(v string) []string {
	starts := func(c byte) []string {
		h := hex.EncodeToString([]byte{c})
		s := []string{"%" + h[:1], "%" + strings.ToUpper(h[:1]), "%2", "%u", "%U", `\u`, `\x`, "&#"}
		if c == '/' || c == '"' || c == '\\' {
			s = append(s, `\`+string(c))
		}
		for name, e := range namedEntities {
			if e == c {
				s = append(s, "&"+name[:1])
			}
		}
		return s
	}
	out := []string{v[:2]}
	for _, s := range starts(v[1]) {
		out = append(out, v[:1]+s[:1])
	}
	out = append(out, starts(v[0])...)
	slices.Sort(out)
	return slices.Compact(out)
}

// hexPrefixes are the first two hex digits of v in every case.
func hexPrefixes(v string) []string {
	h := hex.EncodeToString([]byte(v[:1]))
	var out []string
	for _, a := range []string{h[:1], strings.ToUpper(h[:1])} {
		for _, b := range []string{h[1:], strings.ToUpper(h[1:])} {
			out = append(out, a+b)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// hexMatch matches the hex digits h in any case.
func hexMatch(h string) matchFunc {
	return func(b []byte, i, _ int, eof bool, _ escMode) (int, bool) {
		for k := range len(h) {
			if i+k >= len(b) {
				return 0, !eof
			}
			c := b[i+k]
			if c >= 'A' && c <= 'F' {
				c += 'a' - 'A'
			}
			if c != h[k] {
				return 0, false
			}
		}
		return len(h), false
	}
}
