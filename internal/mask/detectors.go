package mask

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
)

// matchFunc decides whether a match starts at b[i], where a registered
// prefix of length plen (possibly 0) is known to be present. It returns the
// match length, or more=true when the answer depends on bytes past len(b) and
// eof is false. It may look at b[i-2:i] for left context (the gitleaks
// matchers at b[i-leftContext:i], which the streamer keeps). esc says whether
// the text is raw JSON, where a byte after an escaping backslash belongs to
// an escape sequence (see escMode).
//
// A matchFunc must read b only inside a window of bounded size from i, and
// must return the same answer for every b that agrees on the bytes it read:
// that is what makes streamed output equal one-shot output.
type matchFunc func(b []byte, i, plen int, eof bool, esc escMode) (n int, more bool)

type detector struct {
	name       string
	repl       []byte
	prio       int
	prefixes   []string
	firstBytes *[256]bool // tried at every occurrence of these bytes (custom patterns without a literal prefix)
	// left, when set, is the word set match passes to prevBoundary: no match
	// starts after a byte in it unless that byte is escaped.
	left *[256]bool
	// kw, when set, are lower-case starts: the detector is tried where one
	// occurs in any case (see keywordScan, which then owns its triggering).
	kw    []string
	match matchFunc
	// keep, when set, returns how many leading bytes of a match of length
	// n at b[at] stay in the output (a rule's key name before its value).
	keep func(b []byte, at, n int, esc escMode) int
}

// builtinNames is the default set, in priority order: on a tie in match
// length the earlier detector names the match.
var builtinNames = []string{
	"private_key", "jwt", "aws_access_key", "github_token", "anthropic_key", "openai_key",
	"slack_token", "stripe_key", "google_api_key", "credit_card", "us_ssn", "email",
}

// secretsSet is the detector set name that selects every gitleaks rule.
const secretsSet = "secrets"

// detectorNames returns every detector name in priority order: crewgate's
// built-ins first (they win ties), then the gitleaks rules in their config order.
func detectorNames() ([]string, error) {
	s, err := gitleaksRules()
	if err != nil {
		return nil, err
	}
	out := slices.Clone(builtinNames)
	for _, g := range s.rules {
		out = append(out, g.id)
	}
	return out, nil
}

func selectBuiltins(names []string) ([]string, error) {
	all, err := detectorNames()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return all, nil
	}
	var out []string
	add := func(ns ...string) {
		for _, n := range ns {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	for _, n := range names {
		switch {
		case n == "default":
			add(all...)
		case n == secretsSet:
			add(all[len(builtinNames):]...)
		case n == "none":
		case slices.Contains(all, n):
			add(n)
		default:
			return nil, fmt.Errorf("mask: unknown detector %q (known: default, %s, none, %s, or a gitleaks rule id)", n, secretsSet, strings.Join(builtinNames, ", "))
		}
	}
	// A context rule defers to token detectors; make sure they run.
	s, _ := gitleaksRules()
	for _, n := range slices.Clone(out) {
		if g := s.byID[n]; g != nil && g.context {
			for _, d := range s.tokens {
				add(d.name)
			}
			break
		}
	}
	// Keep the documented priority order whatever order the config lists.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(all, a) - slices.Index(all, b) })
	return out, nil
}

// set builds a byte set from ranges written as "a-z" and strings of single bytes.
func set(spec ...string) *[256]bool {
	var s [256]bool
	for _, r := range spec {
		if len(r) == 3 && r[1] == '-' {
			for c := int(r[0]); c <= int(r[2]); c++ {
				s[c] = true
			}
			continue
		}
		for i := range len(r) {
			s[r[i]] = true
		}
	}
	return &s
}

var (
	wordSet    = set("a-z", "A-Z", "0-9", "_")
	alnumSet   = set("a-z", "A-Z", "0-9")
	upperDigit = set("A-Z", "0-9")
	b64urlSet  = set("a-z", "A-Z", "0-9", "-_")
	slackSet   = set("a-z", "A-Z", "0-9", "-")
	localSet   = set("a-z", "A-Z", "0-9", "._%+-")
	domainSet  = set("a-z", "A-Z", "0-9", ".-")
	digitSet   = set("0-9")
	cardLeft   = set("a-z", "A-Z", "0-9", "_.")
	ssnLeft    = set("a-z", "A-Z", "0-9", "_-")
	digitBytes = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
)

// prevBoundary reports whether the text before b[i] ends a word (or the text
// starts there). In raw JSON an escape sequence such as \n counts as a boundary.
func prevBoundary(b []byte, i int, esc escMode, words *[256]bool) bool {
	if i == 0 || !words[b[i-1]] {
		return true
	}
	return esc.escaped(b, i-1)
}

func builtin(name string) *detector {
	d := &detector{name: name, left: wordSet}
	switch name {
	case "aws_access_key":
		d.prefixes = []string{"AKIA", "ASIA", "ABIA", "ACCA"}
		d.match = token(upperDigit, 16, 16, nil)
	case "github_token":
		d.prefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}
		d.match = func(b []byte, i, plen int, eof bool, esc escMode) (int, bool) {
			if plen == len("github_pat_") {
				return token(wordSet, 22, 255, nil)(b, i, plen, eof, esc)
			}
			return token(alnumSet, 36, 251, nil)(b, i, plen, eof, esc)
		}
	case "openai_key":
		d.prefixes = []string{"sk-"}
		d.match = token(b64urlSet, 32, 300, func(body []byte) bool {
			return !bytes.HasPrefix(body, []byte("ant-")) && mixed(body)
		})
	case "anthropic_key":
		d.prefixes = []string{"sk-ant-"}
		d.match = token(b64urlSet, 32, 300, mixed)
	case "slack_token":
		d.prefixes = []string{"xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-"}
		d.match = token(slackSet, 10, 255, hasDigit)
	case "stripe_key":
		d.prefixes = []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_"}
		d.match = token(alnumSet, 16, 255, hasDigit)
	case "google_api_key":
		d.prefixes = []string{"AIza"}
		d.match = token(b64urlSet, 35, 35, nil)
	case "jwt":
		d.prefixes = []string{"eyJ"}
		d.left = b64urlSet
		d.match = matchJWT
	case "private_key":
		d.prefixes = []string{"-----BEGIN "}
		d.left = nil
		d.match = matchPEM
	case "credit_card":
		d.prefixes = digitBytes
		d.left = cardLeft
		d.match = matchCard
	case "us_ssn":
		d.prefixes = digitBytes
		d.left = ssnLeft
		d.match = matchSSN
	case "email":
		d.left = nil
		d.match = matchEmail
	default:
		s, _ := gitleaksRules()
		g := s.byID[name]
		if g == nil {
			panic("mask: no builtin " + name)
		}
		if g.context {
			return g.detector(s.tokens)
		}
		return g.detector(nil)
	}
	return d
}

func hasDigit(b []byte) bool { return bytes.ContainsAny(b, "0123456789") }

// mixed reports whether b looks random: it has a digit and both letter cases.
func mixed(b []byte) bool {
	var d, l, u bool
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			d = true
		case c >= 'a' && c <= 'z':
			l = true
		case c >= 'A' && c <= 'Z':
			u = true
		}
	}
	return d && l && u
}

// token matches prefix + a maximal run of body bytes of length min..max, on
// word boundaries.
func token(body *[256]bool, minN, maxN int, valid func([]byte) bool) matchFunc {
	return func(b []byte, i, plen int, eof bool, esc escMode) (int, bool) {
		if !prevBoundary(b, i, esc, wordSet) {
			return 0, false
		}
		s := i + plen
		j := s
		for j < len(b) && body[b[j]] && j-s <= maxN {
			j++
		}
		if j == len(b) && !eof && j-s <= maxN {
			return 0, true
		}
		n := j - s
		if n < minN || n > maxN || (j < len(b) && wordSet[b[j]]) {
			return 0, false
		}
		if valid != nil && !valid(b[s:j]) {
			return 0, false
		}
		return j - i, false
	}
}

// run advances j over bytes in set, at most limit bytes past j. hitEnd is
// true when it stopped at the end of b without having seen limit bytes.
func run(b []byte, j int, s *[256]bool, limit int) (end int, hitEnd bool) {
	start := j
	for j < len(b) && s[b[j]] && j-start < limit {
		j++
	}
	return j, j == len(b) && j-start < limit
}

const maxJWT = 8192

func matchJWT(b []byte, i, _ int, eof bool, esc escMode) (int, bool) {
	if !prevBoundary(b, i, esc, b64urlSet) {
		return 0, false
	}
	j := i
	for seg := 0; seg < 3; seg++ {
		s := j
		end, hit := run(b, j, b64urlSet, maxJWT-(j-i))
		if hit && !eof {
			return 0, true
		}
		j = end
		if j-i >= maxJWT {
			return 0, false
		}
		if seg < 2 {
			if j-s < 10 {
				return 0, false
			}
			if seg == 1 && !bytes.HasPrefix(b[s:], []byte("ey")) {
				return 0, false
			}
			if j == len(b) {
				if !eof {
					return 0, true
				}
				return 0, false
			}
			if b[j] != '.' {
				return 0, false
			}
			j++
		}
	}
	return j - i, false
}

// maxPEM caps a private key block; a block with no END line inside the cap is
// masked up to the cap.
const maxPEM = 16 << 10

var (
	pemEnd    = []byte("-----END ")
	pemDashes = []byte("-----")
	pemLabel  = set("A-Z", "0-9", " ")
)

func matchPEM(b []byte, i, plen int, eof bool, _ escMode) (int, bool) {
	j, hit := run(b, i+plen, pemLabel, 40)
	if hit && !eof {
		return 0, true
	}
	label := b[i+plen : j]
	if !bytes.HasSuffix(label, []byte("PRIVATE KEY")) {
		return 0, false
	}
	if len(b)-j < len(pemDashes) {
		if !eof && bytes.HasPrefix(pemDashes, b[j:]) {
			return 0, true
		}
		return 0, false
	}
	if !bytes.Equal(b[j:j+5], pemDashes) {
		return 0, false
	}
	limit := min(len(b), i+maxPEM)
	if k := bytes.Index(b[j+5:limit], pemEnd); k >= 0 {
		e, hit := run(b, j+5+k+len(pemEnd), pemLabel, 40)
		if hit && !eof || len(b)-e < len(pemDashes) && !eof && bytes.HasPrefix(pemDashes, b[e:]) {
			return 0, true
		}
		if bytes.HasPrefix(b[e:], pemDashes) {
			e += len(pemDashes)
		}
		return e - i, false
	}
	if limit == i+maxPEM || eof {
		return limit - i, false
	}
	return 0, true
}

// matchCard matches 13-19 digits, contiguous or in groups of a first 4 and
// then 3-6 digits separated by one consistent space or dash, with a known
// issuer prefix and a valid Luhn check digit.
func matchCard(b []byte, i, _ int, eof bool, esc escMode) (int, bool) {
	if !prevBoundary(b, i, esc, cardLeft) {
		return 0, false
	}
	j, hit := run(b, i, digitSet, 20)
	if hit && !eof {
		return 0, true
	}
	n := j - i
	var digits [19]byte
	if n >= 13 {
		if n > 19 || (j < len(b) && wordSet[b[j]]) {
			return 0, false
		}
		copy(digits[:], b[i:j])
		if cardValid(digits[:n]) {
			return n, false
		}
		return 0, false
	}
	if n != 4 || j == len(b) {
		return 0, false
	}
	sep := b[j]
	if sep != ' ' && sep != '-' {
		return 0, false
	}
	copy(digits[:], b[i:j])
	nd := 4
	ends := []int{}
	for nd < 19 {
		if j == len(b) {
			if !eof {
				return 0, true
			}
			break
		}
		if b[j] != sep {
			break
		}
		g, hit := run(b, j+1, digitSet, 7)
		if hit && !eof {
			return 0, true
		}
		gl := g - (j + 1)
		if gl < 3 || gl > 6 || nd+gl > 19 {
			break
		}
		copy(digits[nd:], b[j+1:g])
		nd += gl
		j = g
		ends = append(ends, j)
		if j < len(b) && (alnumSet[b[j]] || b[j] == '_') {
			ends = ends[:len(ends)-1]
			break
		}
	}
	// Longest group prefix that is a valid card wins.
	for k := len(ends) - 1; k >= 0; k-- {
		e := ends[k]
		cnt := 0
		for _, c := range b[i:e] {
			if c >= '0' && c <= '9' {
				cnt++
			}
		}
		if cnt >= 13 && cardValid(digits[:cnt]) {
			return e - i, false
		}
	}
	return 0, false
}

func cardValid(d []byte) bool {
	if !issuer(d) {
		return false
	}
	sum := 0
	for k := range d {
		v := int(d[len(d)-1-k] - '0')
		if k%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

func issuer(d []byte) bool {
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p4 := p2*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	n := len(d)
	switch {
	case d[0] == '4':
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return n == 16
	case p2 == 34 || p2 == 37:
		return n == 15
	case p4 == 6011 || p2 == 65 || (p4 >= 6440 && p4 <= 6499):
		return n >= 16
	case p4 >= 3528 && p4 <= 3589:
		return n >= 16
	case p2 == 36 || p2 == 38 || (p4 >= 3000 && p4 <= 3059):
		return n >= 14
	}
	return false
}

// matchSSN matches ddd-dd-dddd with the never-issued ranges excluded.
func matchSSN(b []byte, i, _ int, eof bool, esc escMode) (int, bool) {
	if !prevBoundary(b, i, esc, ssnLeft) {
		return 0, false
	}
	const shape = "ddd-dd-dddd"
	for k := 0; k <= len(shape); k++ {
		if i+k >= len(b) {
			if !eof {
				return 0, true
			}
			if k < len(shape) {
				return 0, false
			}
			break
		}
		c := b[i+k]
		if k == len(shape) {
			if wordSet[c] || c == '-' {
				return 0, false
			}
			break
		}
		if shape[k] == '-' && c != '-' || shape[k] == 'd' && (c < '0' || c > '9') {
			return 0, false
		}
	}
	s := b[i : i+11]
	area, group, serial := string(s[0:3]), string(s[4:6]), string(s[7:11])
	if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
		return 0, false
	}
	return 11, false
}

const (
	maxLocal  = 64
	maxDomain = 253
)

// emailStart returns where the local part that ends at b[end] (the '@')
// starts, or -1 when it is empty or too long.
func emailStart(b []byte, end int, esc escMode) int {
	j := end
	for j > 0 && localSet[b[j-1]] {
		if esc.escaped(b, j-1) {
			break
		}
		j--
		if end-j > maxLocal {
			return -1
		}
	}
	if j == end {
		return -1
	}
	return j
}

// matchEmail is called at the start of a local part (see Engine.nextEmail).
func matchEmail(b []byte, i, _ int, eof bool, esc escMode) (int, bool) {
	at, hit := run(b, i, localSet, maxLocal+1)
	if hit && !eof {
		return 0, true
	}
	if at == len(b) || b[at] != '@' || at-i > maxLocal || at == i {
		return 0, false
	}
	e, hit := run(b, at+1, domainSet, maxDomain+1)
	if hit && !eof {
		return 0, true
	}
	if e-(at+1) > maxDomain {
		return 0, false
	}
	d := b[at+1 : e]
	for len(d) > 0 && (d[len(d)-1] == '.' || d[len(d)-1] == '-') {
		d = d[:len(d)-1]
	}
	dot := bytes.LastIndexByte(d, '.')
	if dot <= 0 || bytes.Contains(d, []byte("..")) || d[0] == '.' || d[0] == '-' {
		return 0, false
	}
	tld := d[dot+1:]
	if len(tld) < 2 {
		return 0, false
	}
	for _, c := range tld {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return 0, false
		}
	}
	return at + 1 + len(d) - i, false
}

// maxCustom bounds a custom pattern's match; unbounded patterns are matched
// within this window.
const maxCustom = 1024

func newCustom(name, pattern string) (*detector, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("mask: custom detector %q: pattern %q: %w", name, pattern, err)
	}
	if re.MatchString("") {
		return nil, fmt.Errorf("mask: custom detector %q: pattern %q matches the empty string", name, pattern)
	}
	anch := regexp.MustCompile(`^(?:` + pattern + `)`)
	syn, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("mask: custom detector %q: pattern %q: %w", name, pattern, err)
	}
	syn = syn.Simplify()
	maxLen := maxBytes(syn)
	if maxLen < 0 || maxLen > maxCustom {
		maxLen = maxCustom
	}
	win := maxLen + 1 // one more byte so that \b and $ see what follows
	d := &detector{name: name}
	if p, _ := re.LiteralPrefix(); p != "" {
		d.prefixes = []string{p}
	} else {
		fb, _ := firstBytes(syn)
		d.firstBytes = fb
	}
	d.match = func(b []byte, i, _ int, eof bool, _ escMode) (int, bool) {
		end := i + win
		if end > len(b) {
			if !eof {
				return 0, true
			}
			end = len(b)
		}
		loc := anch.FindIndex(b[i:end])
		if loc == nil || loc[1] == 0 {
			return 0, false
		}
		return loc[1], false
	}
	return d, nil
}

// maxBytes returns the longest UTF-8 match of re, or -1 when unbounded.
func maxBytes(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += max(len(string(r)), 1)
			if re.Flags&syntax.FoldCase != 0 {
				n += 2 // folded forms may be longer
			}
		}
		return n
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 4
	case syntax.OpCapture:
		return maxBytes(re.Sub[0])
	case syntax.OpConcat:
		t := 0
		for _, s := range re.Sub {
			m := maxBytes(s)
			if m < 0 {
				return -1
			}
			t += m
		}
		return t
	case syntax.OpAlternate:
		t := 0
		for _, s := range re.Sub {
			m := maxBytes(s)
			if m < 0 {
				return -1
			}
			t = max(t, m)
		}
		return t
	case syntax.OpQuest:
		return maxBytes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Max < 0 {
			return -1
		}
		m := maxBytes(re.Sub[0])
		if m < 0 {
			return -1
		}
		return m * re.Max
	case syntax.OpStar, syntax.OpPlus:
		return -1
	}
	return 0
}

// firstBytes returns the bytes a match of re can start with (only UTF-8 lead
// bytes for non-ASCII runes), and whether re can match the empty string.
func firstBytes(re *syntax.Regexp) (*[256]bool, bool) {
	var s [256]bool
	addRune := func(lo, hi rune) {
		if lo < 0x80 {
			for c := lo; c <= min(hi, 0x7f); c++ {
				s[c] = true
			}
		}
		if hi >= 0x80 {
			for c := 0xc0; c < 0x100; c++ {
				s[c] = true
			}
		}
	}
	all := func() {
		for c := range 256 {
			if c < 0x80 || c >= 0xc0 {
				s[c] = true
			}
		}
	}
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return &s, true
		}
		r := re.Rune[0]
		addRune(r, r)
		if re.Flags&syntax.FoldCase != 0 {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				addRune(f, f)
			}
		}
		return &s, false
	case syntax.OpCharClass:
		for k := 0; k+1 < len(re.Rune); k += 2 {
			addRune(re.Rune[k], re.Rune[k+1])
		}
		return &s, false
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		all()
		return &s, false
	case syntax.OpCapture, syntax.OpPlus:
		return firstBytes(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest:
		f, _ := firstBytes(re.Sub[0])
		return f, true
	case syntax.OpRepeat:
		f, nullable := firstBytes(re.Sub[0])
		return f, nullable || re.Min == 0
	case syntax.OpAlternate:
		nullable := false
		for _, sub := range re.Sub {
			f, n := firstBytes(sub)
			orInto(&s, f)
			nullable = nullable || n
		}
		return &s, nullable
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			f, n := firstBytes(sub)
			orInto(&s, f)
			if !n {
				return &s, false
			}
		}
		return &s, true
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return &s, true
	}
	all()
	return &s, false
}

func orInto(dst, src *[256]bool) {
	for k := range dst {
		dst[k] = dst[k] || src[k]
	}
}
