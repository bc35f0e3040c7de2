package testenv

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/text/encoding/unicode"
)

// Forms are the ways a hostile upstream (or crew) can hand secret on
// encoded, by name: every form DESIGN.md's mask contract lists, partial and
// mixed ones included. Reveals sees secret in each of them.
func Forms(secret string) map[string]string {
	pct := func(s string, every func(i int) bool, upper bool) string {
		var b strings.Builder
		for i := range len(s) {
			if every(i) {
				f := "%%%02x"
				if upper {
					f = "%%%02X"
				}
				fmt.Fprintf(&b, f, s[i])
			} else {
				b.WriteByte(s[i])
			}
		}
		return b.String()
	}
	each := func(s, f string) string {
		var b strings.Builder
		for i := range len(s) {
			fmt.Fprintf(&b, f, s[i])
		}
		return b.String()
	}
	all := func(int) bool { return true }
	odd := func(i int) bool { return i%2 == 1 }
	mixedHex := []byte(hex.EncodeToString([]byte(secret)))
	for i := range mixedHex {
		if i%3 == 0 {
			mixedHex[i] = strings.ToUpper(string(mixedHex[i]))[0]
		}
	}
	forms := map[string]string{
		"raw":                 secret,
		"base64":              base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64url":           base64.RawURLEncoding.EncodeToString([]byte(secret)),
		"basic":               "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+secret)),
		"base64 offset 2":     base64.StdEncoding.EncodeToString([]byte("ab" + secret + "tail")),
		"base64url offset 1":  base64.URLEncoding.EncodeToString([]byte("\xff" + secret + "\xfe\xfd")),
		"hex":                 hex.EncodeToString([]byte(secret)),
		"HEX":                 strings.ToUpper(hex.EncodeToString([]byte(secret))),
		"hex mixed case":      string(mixedHex),
		"percent every byte":  pct(secret, all, true),
		"percent lower":       pct(secret, all, false),
		"percent partial":     pct(secret, odd, true),
		"percent twice":       strings.ReplaceAll(pct(secret, odd, true), "%", "%25"),
		"json \\u":            each(secret, `\u%04x`),
		"json \\u partial":    strings.Replace(secret, "L", `\u004C`, 1),
		"js \\x":              each(secret, `\x%02x`),
		"js \\u{}":            each(secret, `\u{%x}`),
		"percent %u":          each(secret, "%%u%04X"),
		"html many zeros":     each(secret, "&#x00000000000000000000%x;"),
		"html decimal":        each(secret, "&#%d;"),
		"html hex":            each(secret, "&#x%X;"),
		"html no semicolon":   each(secret, "&#%03d"),
		"html leading zeros":  each(secret, "&#x000%x;"),
		"html named":          strings.ReplaceAll(secret, "_", "&lowbar;"),
		"utf-16le":            string(UTF16(secret, unicode.LittleEndian, false)),
		"utf-16be":            string(UTF16(secret, unicode.BigEndian, false)),
		"mixed escapes":       mixed(secret),
		"url in a redirect":   "https://evil.example/cb?key=" + pct(secret, all, true) + "&x=1",
		"inside a JSON value": `{"echo":"` + each(secret, `\u%04x`) + `"}`,
	}
	return forms
}

// mixed writes each byte of s in the next of five forms: raw, %XX, \uXXXX,
// &#D; and &#xH;.
func mixed(s string) string {
	var b strings.Builder
	for i := range len(s) {
		switch i % 5 {
		case 0:
			b.WriteByte(s[i])
		case 1:
			fmt.Fprintf(&b, "%%%02X", s[i])
		case 2:
			fmt.Fprintf(&b, `\u%04x`, s[i])
		case 3:
			fmt.Fprintf(&b, "&#%d;", s[i])
		case 4:
			fmt.Fprintf(&b, "&#x%x;", s[i])
		}
	}
	return b.String()
}
