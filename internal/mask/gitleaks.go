package mask

// gitleaks rules as detectors.
//
// The rules, their keywords, entropy thresholds and allowlists come from the
// default configuration of gitleaks (github.com/zricethezav/gitleaks/v8,
// MIT licence, Copyright (c) 2019 Zachary Rice), which that module embeds
// as config.DefaultConfig. They are compiled once per process, when the
// first engine is built (the prefix patterns, rarely needed, on first use).
//
// A gitleaks rule scans a whole file: it runs where one of its keywords occurs
// anywhere in the file, and its regular expression may start with up to 50
// bytes of identifier before the keyword. A streaming matcher sees a bounded
// window from its start and two bytes before it, so each rule is rewritten:
//
//   - the optional identifier context at the start ([\w.-]{0,50}?) is
//     dropped, and the rule is tried where the rest of its pattern can start:
//     at its keyword (case-insensitively) or at its literal token prefix;
//   - a leading \b becomes a check on the byte before;
//   - a match is read within at most maxCustom+1 bytes from its start, as for
//     custom patterns: unbounded quantifiers end at the window;
//   - "nearby" for a keyword means inside the match: a rule only matches where
//     one of its keywords (case-insensitive) is part of the matched text;
//   - the entropy threshold applies to the secret group, as in gitleaks; the
//     global and the rule allowlists apply to the secret (regexes and stop
//     words) or to the match (regexTarget "match": the match as rewritten,
//     with as much of the key name before it as leftContext keeps).
//     Allowlists on paths, commits or whole lines cannot apply to a
//     response body and are left out, which only masks more.
//
// A match ends where its secret group ends, so a trailing quote or newline
// that ends a gitleaks match is kept; detector.keep says where the secret
// starts, so that the key name before it stays too (api_key = "[MASKED:…]").
// A context rule (one whose identifier context was dropped, such as
// generic-api-key) defers to token detectors: where its secret is itself a
// token that a crewgate built-in or a gitleaks token rule matches, it does not
// match, and the token detector names the value. Built-ins come first in the
// priority order, so they also win ties with the gitleaks rule for the same
// token (aws-access-token, github-pat, ...) and keep their names.
//
// Where the window has not all arrived, a rule waits (more=true) exactly while
// the bytes so far are still a prefix of a possible match (glPart.pre, an
// over-approximation) or its quick test cannot decide yet; otherwise every
// match from there ends inside what has arrived and the answer is final. So
// streamed output equals one-shot output.
//
// Rules are triggered through keywordScan (gitleaks_scan.go), which finds
// their starts in any case; until the engine uses it, the case variants of
// the starts' first bytes are ordinary prefixes.

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/spf13/viper"
	glconfig "github.com/zricethezav/gitleaks/v8/config"
)

// leftContext is how many bytes before a match position a gitleaks matcher
// reads: the streamer keeps two (textScanner.feed); with more, a rule's
// "match" allowlists see more of the key name before its keyword
// (public_key, csrf_token), as gitleaks does.
const leftContext = 2

var idByte = set("a-z", "A-Z", "0-9", "_.-")

// glRule is one compiled gitleaks rule.
type glRule struct {
	id       string
	parts    []*glPart // one per top-level alternative of the pattern
	keywords []string  // lower case
	group    int       // secret group (0: first non-empty group, or the match)
	entropy  float64
	allow    []glAllow
	context  bool        // some part dropped identifier context: the rule defers to token detectors
	tokens   []*detector // for a context rule, the token detectors it defers to
	// allowedLast is the last secret an allowlist let through, when no
	// allowlist of the rule looks past the secret: documented examples and
	// placeholders repeat, and the allowlist patterns need not run again.
	allowedLast atomic.Pointer[string]
	bySecret    bool // every allowlist that applies looks at the secret only
}

// glAllow is the part of a gitleaks allowlist that can apply to a body.
type glAllow struct {
	target    string // "" (the secret), "match" or "line"
	and       bool   // every condition must hold
	other     bool   // also has conditions on paths or commits, which never hold here
	regexes   []*regexp.Regexp
	stopwords []string // lower case
}

func newAllow(a *glconfig.Allowlist) glAllow {
	sw := make([]string, len(a.StopWords))
	for k, w := range a.StopWords {
		sw[k] = strings.ToLower(w)
	}
	return glAllow{
		target:    a.RegexTarget,
		and:       a.MatchCondition == glconfig.AllowlistMatchAnd,
		other:     len(a.Paths) > 0 || len(a.Commits) > 0,
		regexes:   a.Regexes,
		stopwords: sw,
	}
}

// glPart is one alternative of a rule's pattern, rewritten for streaming.
type glPart struct {
	re       *regexp.Regexp // ^(?:rewritten alternative)
	preSrc   string         // matches every prefix of a match (an over-approximation)
	preOnce  sync.Once
	pre      *regexp.Regexp // compiled from preSrc on first use: it is rarely needed
	win      int            // bytes re reads from the start
	wordLeft bool           // the alternative began with \b
	starts   []string       // literal starts, every case variant, for the prefix tables
	folded   []string       // literal starts, lower case
	kwInLit  bool           // every start contains a keyword: no keyword check needed
	context  bool           // the identifier context before the keyword was dropped
	fixed    int            // when > 0, every match's secret is its first fixed bytes
	quick    *glQuick       // a cheap test every match passes, or nil
}

// glQuick is a necessary condition for a match, checked before the pattern:
// one of heads (lower case) starts the match, followed by at most budget
// bytes of skip and then a byte of next. It rejects the common case of a
// keyword in prose ("the token usage") without running the pattern.
type glQuick struct {
	heads  []string
	skip   [256]bool
	budget int
	next   *[256]bool
	// Then, when run > 0, a run of at least run bytes of secret starts
	// within gap bytes of the byte of next (the value after its operator).
	gap    int
	run    int
	secret [256]bool
	segs   []glSeg // what may come between the operator and the value, by offset
}

// glSeg says that bytes of set may come at offsets lo..hi-1 from the operator.
type glSeg struct {
	set    [256]bool
	lo, hi int
}

// glSkip names a rule that is not used and why.
type glSkip struct {
	ID, Reason string
}

type glSet struct {
	rules   []*glRule
	byID    map[string]*glRule
	skipped []glSkip
	tokens  []*detector // token detectors that context rules defer to
}

// glSkipByName lists the rules left out because they would take the name of
// a built-in detector.
var glSkipByName = map[string]string{
	"jwt": "same name as the built-in jwt detector, which covers JSON Web Tokens",
}

// glYieldBuiltins are the built-in token detectors that context rules defer to.
var glYieldBuiltins = []string{
	"private_key", "jwt", "aws_access_key", "github_token", "anthropic_key", "openai_key",
	"slack_token", "stripe_key", "google_api_key",
}

var glOnce struct {
	once sync.Once
	set  *glSet
	err  error
}

// gitleaksRules compiles gitleaks' default rules once per process.
func gitleaksRules() (*glSet, error) {
	glOnce.once.Do(func() { glOnce.set, glOnce.err = loadGitleaks() })
	return glOnce.set, glOnce.err
}

func loadGitleaks() (*glSet, error) {
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(glconfig.DefaultConfig)); err != nil {
		return nil, fmt.Errorf("mask: gitleaks rules: %w", err)
	}
	var vc glconfig.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return nil, fmt.Errorf("mask: gitleaks rules: %w", err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		return nil, fmt.Errorf("mask: gitleaks rules: %w", err)
	}
	s := &glSet{byID: map[string]*glRule{}}
	for _, r := range cfg.GetOrderedRules() {
		g, reason := compileRule(r, cfg.Allowlists)
		if reason != "" {
			s.skipped = append(s.skipped, glSkip{r.RuleID, reason})
			continue
		}
		s.rules = append(s.rules, g)
		s.byID[g.id] = g
	}
	for _, n := range glYieldBuiltins {
		s.tokens = append(s.tokens, builtin(n))
	}
	for _, g := range s.rules {
		if !g.context {
			s.tokens = append(s.tokens, g.detector(nil))
		}
	}
	for _, g := range s.rules {
		if g.context {
			g.tokens = s.tokens
		}
	}
	return s, nil
}

// gitleaksIDs returns the ids of the gitleaks rules in use, in config order.
func gitleaksIDs() []string {
	s, err := gitleaksRules()
	if err != nil {
		return nil
	}
	ids := make([]string, len(s.rules))
	for i, g := range s.rules {
		ids[i] = g.id
	}
	return ids
}

// compileRule rewrites r for streaming, or returns why it cannot be.
func compileRule(r glconfig.Rule, global []*glconfig.Allowlist) (*glRule, string) {
	switch {
	case glSkipByName[r.RuleID] != "":
		return nil, glSkipByName[r.RuleID]
	case r.Path != nil:
		return nil, "applies to file paths; a response body has none"
	case r.Regex == nil:
		return nil, "no pattern"
	case len(r.RequiredRules) > 0:
		return nil, "composite rule: needs findings of other rules anywhere in the file"
	case r.SkipReport:
		return nil, "reports nothing by itself"
	}
	re, err := syntax.Parse(r.Regex.String(), syntax.Perl)
	if err != nil {
		return nil, "pattern does not parse: " + err.Error()
	}
	g := &glRule{id: r.RuleID, group: r.SecretGroup, entropy: r.Entropy}
	for _, k := range r.Keywords {
		g.keywords = append(g.keywords, strings.ToLower(k))
	}
	alts := []*syntax.Regexp{re}
	if re.Op == syntax.OpAlternate {
		if g.group > 0 {
			return nil, "secret group in a pattern of alternatives"
		}
		alts = re.Sub
	}
	for _, a := range alts {
		p, reason := g.compilePart(a)
		if reason != "" {
			return nil, reason
		}
		g.parts = append(g.parts, p)
		g.context = g.context || p.context
	}
	g.bySecret = true
	for _, a := range append(slices.Clone(global), r.Allowlists...) {
		g.allow = append(g.allow, newAllow(a))
		if a.RegexTarget == "match" {
			g.bySecret = false
		}
	}
	return g, ""
}

func (g *glRule) compilePart(re *syntax.Regexp) (*glPart, string) {
	p := &glPart{}
	rest := &syntax.Regexp{Op: syntax.OpConcat, Sub: p.strip(re)}
	if reason := p.findStarts(rest.Sub, g.keywords); reason != "" {
		return nil, reason
	}
	if hasBegin(rest) {
		return nil, "uses ^, which a window that starts at the match cannot place"
	}
	var err error
	if p.re, err = regexp.Compile(`^(?:` + rest.String() + `)`); err != nil {
		return nil, "rewritten pattern does not compile: " + err.Error()
	}
	if g.group > p.re.NumSubexp() {
		return nil, "secret group out of range"
	}
	p.preSrc = `^(?:` + prefixes(rest).String() + `)\z`
	if _, err := syntax.Parse(p.preSrc, syntax.Perl); err != nil {
		return nil, "prefix pattern does not parse: " + err.Error()
	}
	p.fixed = fixedSecret(rest, p.re.NumSubexp())
	p.quick = quickTest(rest.Sub)
	n := maxBytes(rest)
	if n < 0 || n > maxCustom {
		n = maxCustom
	}
	p.win = n + 1
	return p, ""
}

// strip returns the top-level sequence of re without its leading \b and
// optional identifier context, and records what it dropped.
func (g *glPart) strip(re *syntax.Regexp) []*syntax.Regexp {
	elems := flatConcat(re)
	for len(elems) > 1 {
		switch e := elems[0]; {
		case e.Op == syntax.OpWordBoundary:
			g.wordLeft = true
		case e.Op == syntax.OpEmptyMatch:
		case isFiller(e):
			g.context = true
		default:
			return elems
		}
		elems = elems[1:]
	}
	return elems
}

// flatConcat returns the elements of re as one sequence, flattening nested
// concatenations (non-capturing groups) at the front.
func flatConcat(re *syntax.Regexp) []*syntax.Regexp {
	if re.Op != syntax.OpConcat {
		return []*syntax.Regexp{re}
	}
	var out []*syntax.Regexp
	for i, s := range re.Sub {
		if i == 0 && s.Op == syntax.OpConcat {
			out = append(out, flatConcat(s)...)
			continue
		}
		out = append(out, s)
	}
	return out
}

// isFiller reports whether e is optional identifier context such as [\w.-]{0,50}?.
func isFiller(e *syntax.Regexp) bool {
	switch e.Op {
	case syntax.OpRepeat, syntax.OpStar, syntax.OpQuest:
		if e.Op == syntax.OpRepeat && e.Min != 0 {
			return false
		}
		return e.Sub[0].Op == syntax.OpCharClass
	}
	return false
}

// findStarts computes the literal strings every match of elems begins with.
func (g *glPart) findStarts(elems []*syntax.Regexp, keywords []string) string {
	const maxStarts = 256
	exact, ok := litSet(elems, 3, maxStarts, false)
	if !ok || len(exact) == 0 {
		return "starts with a character class, not a literal or keyword: it would have to be tried at every byte"
	}
	for _, s := range exact {
		if len(s) < 2 {
			return "starts with a one-byte literal: too weak a trigger"
		}
	}
	folded, ok := litSet(elems, 24, maxStarts, true)
	if !ok {
		return "too many literal starts"
	}
	g.starts, g.folded = exact, folded
	g.kwInLit = true
	for _, f := range folded {
		if !slices.ContainsFunc(keywords, func(k string) bool { return strings.Contains(f, k) }) {
			g.kwInLit = false
		}
	}
	return ""
}

// lit is a start string; whole says it spans the node entirely, so the
// strings of the next node may be appended to it.
type lit struct {
	s     string
	whole bool
}

// litSet returns the strings of up to n bytes that matches of the sequence
// elems start with: every case variant of ASCII letters, or with fold the
// lower-case form. ok is false when the set is larger than limit or a match
// can start with something other than a literal (a class of many bytes).
func litSet(elems []*syntax.Regexp, n, limit int, fold bool) ([]string, bool) {
	ls, ok := seqLits(elems, n, limit, fold)
	if !ok {
		return nil, false
	}
	var out []string
	for _, l := range ls {
		out = appendUniq(out, l.s)
	}
	return out, true
}

func seqLits(elems []*syntax.Regexp, n, limit int, fold bool) ([]lit, bool) {
	acc := []lit{{"", true}}
	for _, e := range elems {
		if !slices.ContainsFunc(acc, func(l lit) bool { return l.whole && len(l.s) < n }) {
			break
		}
		set, ok := nodeLits(e, n, limit, fold)
		if !ok {
			if len(acc) == 1 && acc[0].s == "" {
				return nil, false
			}
			// What follows is not a literal: the strings so far end here.
			for k := range acc {
				acc[k].whole = false
			}
			break
		}
		var next []lit
		for _, a := range acc {
			if !a.whole || len(a.s) >= n {
				next = appendLit(next, lit{a.s, false})
				continue
			}
			for _, l := range set {
				s := a.s + l.s
				next = appendLit(next, lit{trunc(s, n), l.whole && len(s) <= n})
			}
		}
		if len(next) > limit {
			return nil, false
		}
		acc = next
	}
	return acc, true
}

func appendLit(l []lit, x lit) []lit {
	for k, y := range l {
		if y.s == x.s {
			l[k].whole = y.whole || x.whole
			return l
		}
	}
	return append(l, x)
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func appendUniq(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}

// nodeLits returns the strings (truncated to n bytes) that e's matches start with.
func nodeLits(e *syntax.Regexp, n, limit int, fold bool) ([]lit, bool) {
	switch e.Op {
	case syntax.OpLiteral:
		acc := []string{""}
		for _, r := range e.Rune {
			vs, ok := runeVariants(r, e.Flags&syntax.FoldCase != 0, fold)
			if !ok {
				return nil, false
			}
			var next []string
			for _, a := range acc {
				for _, v := range vs {
					next = appendUniq(next, a+v)
				}
			}
			if len(next) > limit {
				return nil, false
			}
			acc = next
			if len(acc[0]) >= n {
				break
			}
		}
		out := make([]lit, len(acc))
		for k, a := range acc {
			out[k] = lit{a, len(a) == len(string(e.Rune))}
		}
		return out, true
	case syntax.OpCharClass:
		var out []lit
		for k := 0; k+1 < len(e.Rune); k += 2 {
			lo, hi := e.Rune[k], e.Rune[k+1]
			if hi-lo > 8 {
				return nil, false
			}
			for r := lo; r <= hi; r++ {
				if r > unicode.MaxASCII {
					if r == 0x17f || r == 0x212a { // folds of s and k
						continue
					}
					return nil, false
				}
				c := string(r)
				if fold {
					c = strings.ToLower(c)
				}
				out = appendLit(out, lit{c, true})
			}
		}
		if len(out) > 8 {
			return nil, false
		}
		return out, true
	case syntax.OpCapture:
		return nodeLits(e.Sub[0], n, limit, fold)
	case syntax.OpConcat:
		return seqLits(e.Sub, n, limit, fold)
	case syntax.OpAlternate:
		var all []lit
		for _, sub := range e.Sub {
			s, ok := nodeLits(sub, n, limit, fold)
			if !ok {
				return nil, false
			}
			for _, x := range s {
				all = appendLit(all, x)
			}
		}
		if len(all) > limit {
			return nil, false
		}
		return all, true
	case syntax.OpRepeat:
		if e.Min == e.Max && e.Min > 0 && e.Min <= 4 {
			seq := make([]*syntax.Regexp, e.Min)
			for k := range seq {
				seq[k] = e.Sub[0]
			}
			return seqLits(seq, n, limit, fold)
		}
		if e.Min >= 1 {
			return open(nodeLits(e.Sub[0], n, limit, fold))
		}
	case syntax.OpPlus:
		return open(nodeLits(e.Sub[0], n, limit, fold))
	case syntax.OpQuest:
		s, ok := nodeLits(e.Sub[0], n, limit, fold)
		if !ok {
			return nil, false
		}
		return appendLit(s, lit{"", true}), true
	case syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEndText, syntax.OpEndLine:
		// Zero-width: the pattern runs on text starting at the match, where
		// these are decided by the bytes in the window.
		return []lit{{"", true}}, true
	}
	return nil, false
}

// open marks strings as not spanning their node.
func open(ls []lit, ok bool) ([]lit, bool) {
	for k := range ls {
		ls[k].whole = false
	}
	return ls, ok
}

// runeVariants returns the spellings of r: with foldCase every ASCII case,
// with fold only the lower case.
func runeVariants(r rune, foldCase, fold bool) ([]string, bool) {
	if r > unicode.MaxASCII {
		return nil, false
	}
	c := string(r)
	if fold {
		return []string{strings.ToLower(c)}, true
	}
	if foldCase && strings.ToLower(c) != strings.ToUpper(c) {
		return []string{strings.ToLower(c), strings.ToUpper(c)}, true
	}
	return []string{c}, true
}

// hasBegin reports whether re uses ^: the pattern runs on text that starts
// where the rule is tried, so ^ would always hold there.
func hasBegin(re *syntax.Regexp) bool {
	if re.Op == syntax.OpBeginLine || re.Op == syntax.OpBeginText {
		return true
	}
	return slices.ContainsFunc(re.Sub, hasBegin)
}

// prefixes returns a pattern matching every prefix of every match of re, and
// possibly more: assertions are dropped, so it never says no too early.
func prefixes(re *syntax.Regexp) *syntax.Regexp {
	empty := &syntax.Regexp{Op: syntax.OpEmptyMatch}
	alt := func(subs ...*syntax.Regexp) *syntax.Regexp { return &syntax.Regexp{Op: syntax.OpAlternate, Sub: subs} }
	cat := func(subs ...*syntax.Regexp) *syntax.Regexp { return &syntax.Regexp{Op: syntax.OpConcat, Sub: subs} }
	switch re.Op {
	case syntax.OpLiteral:
		subs := []*syntax.Regexp{empty}
		for k := 1; k <= len(re.Rune); k++ {
			subs = append(subs, &syntax.Regexp{Op: syntax.OpLiteral, Flags: re.Flags, Rune: re.Rune[:k]})
		}
		return alt(subs...)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return &syntax.Regexp{Op: syntax.OpQuest, Sub: []*syntax.Regexp{noAssert(re)}}
	case syntax.OpCapture:
		return prefixes(re.Sub[0])
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return empty
		}
		if len(re.Sub) == 1 {
			return prefixes(re.Sub[0])
		}
		return alt(prefixes(re.Sub[0]), cat(noAssert(re.Sub[0]), prefixes(cat(re.Sub[1:]...))))
	case syntax.OpAlternate:
		subs := make([]*syntax.Regexp, len(re.Sub))
		for k, s := range re.Sub {
			subs[k] = prefixes(s)
		}
		return alt(subs...)
	case syntax.OpQuest:
		return prefixes(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		sub := re.Sub[0]
		hi := re.Max
		if re.Op != syntax.OpRepeat || hi < 0 {
			// Unbounded: any number of whole repetitions, then a prefix of one.
			return cat(&syntax.Regexp{Op: syntax.OpStar, Sub: []*syntax.Regexp{noAssert(sub)}}, prefixes(sub))
		}
		if hi == 0 {
			return empty
		}
		if isSingle(sub) {
			return &syntax.Regexp{Op: syntax.OpRepeat, Min: 0, Max: hi, Sub: []*syntax.Regexp{noAssert(sub)}}
		}
		return cat(&syntax.Regexp{Op: syntax.OpRepeat, Min: 0, Max: hi - 1, Sub: []*syntax.Regexp{noAssert(sub)}}, prefixes(sub))
	}
	return empty // assertions and empty matches
}

func isSingle(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return true
	case syntax.OpLiteral:
		return len(re.Rune) == 1
	}
	return false
}

// noAssert returns a copy of re with assertions replaced by empty matches and
// captures removed.
func noAssert(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}
	case syntax.OpCapture:
		return noAssert(re.Sub[0])
	}
	c := *re
	c.Sub = make([]*syntax.Regexp, len(re.Sub))
	for k, s := range re.Sub {
		c.Sub[k] = noAssert(s)
	}
	c.Sub0 = [1]*syntax.Regexp{}
	return &c
}

// detector returns a detector for g. tokens are the detectors a context rule
// defers to (nil for token rules).
func (g *glRule) detector(tokens []*detector) *detector {
	d := &detector{name: g.id, left: wordSet}
	for _, p := range g.parts {
		for _, f := range p.folded {
			d.kw = appendUniq(d.kw, f)
		}
		for _, s := range p.starts {
			d.prefixes = appendUniq(d.prefixes, s)
			if !p.wordLeft || !wordSet[s[0]] {
				d.left = nil
			}
		}
	}
	d.match = func(b []byte, i, _ int, eof bool, esc escMode) (int, bool) {
		return g.match(b, i, eof, esc, tokens)
	}
	if g.context {
		d.keep = g.keep
	}
	return d
}

// keep returns the offset of the secret in the match of length n at b[at]:
// what comes before it (my_api_key = ") stays in the output. The match was
// decided, so the bytes it reads are all there.
func (g *glRule) keep(b []byte, at, n int, esc escMode) int {
	_, k, _ := g.matchKeep(b, at, true, esc, g.tokens)
	return k
}

// span runs p at b[i:end] and returns the secret's span and the match's end,
// relative to i.
func (g *glRule) span(p *glPart, b []byte, i, end int, esc escMode) (ss, se, mend int, ok bool) {
	// Match does not allocate; most tries fail.
	if !p.re.Match(b[i:end]) {
		return 0, 0, 0, false
	}
	if p.fixed > 0 {
		// The secret is the first fixed bytes; the rest of the match is at
		// most a terminator, which no check looks at.
		se, mend = p.fixed, p.fixed
	} else {
		loc := p.re.FindSubmatchIndex(b[i:end])
		ss, se = secretSpan(loc, g.group)
		mend = loc[1]
	}
	// Never end a span inside a JSON escape: drop a dangling backslash.
	for se > ss && esc != escNone && b[i+se-1] == '\\' && !esc.escaped(b, i+se-1) {
		se--
	}
	return ss, se, mend, se > ss
}

// match implements matchFunc for g: the longest match of any part. It reads
// b[i-2:i+win] at most (plus, for a context rule, the windows of the token
// detectors it defers to, from its secret).
func (g *glRule) match(b []byte, i int, eof bool, esc escMode, tokens []*detector) (int, bool) {
	n, _, more := g.matchKeep(b, i, eof, esc, tokens)
	return n, more
}

// matchKeep is match that also returns where the secret starts in the match.
func (g *glRule) matchKeep(b []byte, i int, eof bool, esc escMode, tokens []*detector) (n, keep int, more bool) {
	for _, p := range g.parts {
		m, k, mo := g.matchPart(p, b, i, eof, esc, tokens)
		if mo {
			return 0, 0, true
		}
		if m > n {
			n, keep = m, k
		}
	}
	return n, keep, false
}

// quickTest derives a glQuick from the sequence elems: a first element with
// a small set of literal spellings, then optional runs of byte classes, then
// an element that cannot match empty.
func quickTest(elems []*syntax.Regexp) *glQuick {
	if len(elems) < 2 {
		return nil
	}
	heads, ok := nodeLits(elems[0], 64, 64, true)
	if !ok {
		return nil
	}
	q := &glQuick{}
	for _, h := range heads {
		if !h.whole || h.s == "" {
			return nil
		}
		q.heads = append(q.heads, h.s)
	}
	k := 1
	for ; k < len(elems); k++ {
		e := elems[k]
		if !isFiller(e) {
			break
		}
		if e.Op == syntax.OpStar || e.Op == syntax.OpRepeat && e.Max < 0 {
			return nil
		}
		n := 1
		if e.Op == syntax.OpRepeat {
			n = e.Max
		}
		q.budget += n
		if !asciiClass(e.Sub[0], &q.skip) {
			return nil
		}
	}
	if k == len(elems) {
		return nil
	}
	next, nullable := firstBytes(elems[k])
	if nullable {
		return nil
	}
	q.next = next
	// The secret group after the operator, if it is a run of bytes.
	gapLo, gapHi := 0, 0
	for g := k; g < len(elems); g++ {
		if elems[g].Op == syntax.OpCapture {
			if lo := minLen(elems[g]); lo >= 4 && classUnion(elems[g], &q.secret) {
				q.gap, q.run = gapHi, lo
			}
			break
		}
		lo, hi, ok := asciiLen(elems[g])
		var seg glSeg
		if !ok || !classUnion(elems[g], &seg.set) {
			break
		}
		seg.lo, seg.hi = gapLo, gapHi+hi
		q.segs = append(q.segs, seg)
		gapLo, gapHi = gapLo+lo, gapHi+hi
	}
	return q
}

// asciiClass adds the bytes of the ASCII character class re to set; the
// non-ASCII folds of s and k are ignored.
func asciiClass(re *syntax.Regexp, set *[256]bool) bool {
	if re.Op != syntax.OpCharClass {
		return false
	}
	for j := 0; j+1 < len(re.Rune); j += 2 {
		lo, hi := re.Rune[j], re.Rune[j+1]
		if lo == 0x17f || lo == 0x212a {
			continue
		}
		if hi > unicode.MaxASCII {
			return false
		}
		for r := lo; r <= hi; r++ {
			set[r] = true
		}
	}
	return true
}

// classUnion adds to set every byte a match of re can contain, when re is
// built of ASCII literals and classes only.
func classUnion(re *syntax.Regexp, set *[256]bool) bool {
	switch re.Op {
	case syntax.OpCharClass:
		return asciiClass(re, set)
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r > unicode.MaxASCII {
				return false
			}
			set[r] = true
			if re.Flags&syntax.FoldCase != 0 {
				set[unicode.ToUpper(r)], set[unicode.ToLower(r)] = true, true
			}
		}
		return true
	case syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEndText, syntax.OpEndLine:
		return true
	}
	if len(re.Sub) == 0 {
		return false
	}
	for _, s := range re.Sub {
		if !classUnion(s, set) {
			return false
		}
	}
	return true
}

// verdict is what glQuick says about a position.
type verdict uint8

const (
	vNo    verdict = iota // no match can start here
	vMaybe                // the pattern must decide
	vMore                 // the bytes ran out before the test could decide
)

// test judges b[i] by q alone. It never says vNo on bytes that have not
// arrived.
func (q *glQuick) test(b []byte, i int) verdict {
	v := vNo
	for _, h := range q.heads {
		switch q.testHead(b, i, h) {
		case vMaybe:
			return vMaybe
		case vMore:
			v = vMore
		}
	}
	return v
}

func (q *glQuick) testHead(b []byte, i int, h string) verdict {
	j := i
	for k := 0; k < len(h); k, j = k+1, j+1 {
		if j == len(b) {
			return vMore
		}
		if lower(b[j]) != h[k] {
			return vNo
		}
	}
	for n := 0; ; n, j = n+1, j+1 {
		if j == len(b) {
			return vMore
		}
		c := b[j]
		if q.next[c] {
			if v := q.value(b, j); v != vNo {
				return v
			}
		}
		if !q.skip[c] || n == q.budget {
			return vNo
		}
	}
}

func (q *glQuick) gapByte(c byte, d int) bool {
	for k := range q.segs {
		if s := &q.segs[k]; s.lo <= d && d < s.hi && s.set[c] {
			return true
		}
	}
	return false
}

// value judges whether a run of secret bytes long enough starts within gap
// bytes of o.
func (q *glQuick) value(b []byte, o int) verdict {
	if q.run == 0 {
		return vMaybe
	}
	n := 0
	for t := o; t < len(b); t++ {
		c := b[t]
		if q.secret[c] {
			n++
			if n >= q.run {
				return vMaybe
			}
			continue
		}
		if t-o >= q.gap || !q.gapByte(c, t-o) {
			return vNo
		}
		n = 0
	}
	return vMore
}

// fixedSecret returns the length of the secret when it is known without
// running the pattern for submatches: the pattern has no group and a fixed
// length, or its only group comes first and has a fixed length. It returns 0
// otherwise.
func fixedSecret(rest *syntax.Regexp, groups int) int {
	node := rest
	switch groups {
	case 0:
	case 1:
		if len(rest.Sub) == 0 || rest.Sub[0].Op != syntax.OpCapture {
			return 0
		}
		node = rest.Sub[0].Sub[0]
	default:
		return 0
	}
	lo, hi, ok := asciiLen(node)
	if !ok || lo != hi {
		return 0
	}
	return lo
}

// minLen returns the shortest match of re in bytes (runes count one).
func minLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minLen(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min * minLen(re.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, s := range re.Sub {
			n += minLen(s)
		}
		return n
	case syntax.OpAlternate:
		n := -1
		for _, s := range re.Sub {
			if m := minLen(s); n < 0 || m < n {
				n = m
			}
		}
		return max(n, 0)
	}
	return 0
}

// asciiLen returns the shortest and longest match of re in bytes, when re
// can only match ASCII and is bounded.
func asciiLen(re *syntax.Regexp) (lo, hi int, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r > unicode.MaxASCII {
				return 0, 0, false
			}
		}
		return len(re.Rune), len(re.Rune), true
	case syntax.OpCharClass:
		for k := 0; k+1 < len(re.Rune); k += 2 {
			if re.Rune[k+1] > unicode.MaxASCII && !(re.Rune[k] == 0x17f || re.Rune[k] == 0x212a) {
				return 0, 0, false
			}
		}
		return 1, 1, true
	case syntax.OpCapture:
		return asciiLen(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			l, h, ok := asciiLen(s)
			if !ok {
				return 0, 0, false
			}
			lo, hi = lo+l, hi+h
		}
		return lo, hi, true
	case syntax.OpAlternate:
		for k, s := range re.Sub {
			l, h, ok := asciiLen(s)
			if !ok {
				return 0, 0, false
			}
			if k == 0 {
				lo, hi = l, h
			}
			lo, hi = min(lo, l), max(hi, h)
		}
		return lo, hi, true
	case syntax.OpRepeat:
		if re.Max < 0 {
			return 0, 0, false
		}
		l, h, ok := asciiLen(re.Sub[0])
		return l * re.Min, h * re.Max, ok
	case syntax.OpQuest:
		_, h, ok := asciiLen(re.Sub[0])
		return 0, h, ok
	case syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEndText, syntax.OpEndLine:
		return 0, 0, true
	}
	return 0, 0, false
}

// prefix returns the compiled prefix pattern. It is needed only near the end
// of what has arrived, after the quick test, so it is compiled on first use:
// the patterns of most rules are never needed in a process.
func (p *glPart) prefix() *regexp.Regexp {
	p.preOnce.Do(func() { p.pre = regexp.MustCompile(p.preSrc) })
	return p.pre
}

func (g *glRule) matchPart(p *glPart, b []byte, i int, eof bool, esc escMode, tokens []*detector) (n, keep int, more bool) {
	if p.wordLeft && i > 0 && wordSet[b[i-1]] == wordSet[b[i]] && !esc.escaped(b, i-1) {
		return 0, 0, false
	}
	if p.quick != nil {
		switch p.quick.test(b, i) {
		case vNo:
			return 0, 0, false
		case vMore:
			// Cheaper than the prefix pattern, and the same answer but for
			// an earlier release in rare cases.
			if !eof {
				return 0, 0, true
			}
		}
	}
	end := i + p.win
	if end > len(b) {
		// Not all of the window has arrived. While the bytes so far can still
		// grow into a match the answer waits; once they cannot, every match
		// from i ends inside b and the answer on b is final.
		if !eof && p.prefix().Match(b[i:]) {
			return 0, 0, true
		}
		end = len(b)
	}
	// A fixed-length secret can be judged before the pattern runs: most
	// tries that get here are placeholders and documented examples.
	if f := p.fixed; f > 0 && end-i >= f && g.rejects(p, b, i, b[i:i+f], b[i:i+f]) {
		return 0, 0, false
	}
	ss, se, mend, ok := g.span(p, b, i, end, esc)
	if !ok {
		return 0, 0, false
	}
	if g.rejects(p, b, i, b[i:i+mend], b[i+ss:i+se]) {
		return 0, 0, false
	}
	if p.context {
		y, more := yields(b, i+ss, eof, esc, tokens)
		if more {
			return 0, 0, true
		}
		if y {
			return 0, 0, false
		}
	}
	return se, ss, false
}

// rejects applies the checks on a match m at b[i] and its secret: keyword,
// entropy and allowlists.
func (g *glRule) rejects(p *glPart, b []byte, i int, m, secret []byte) bool {
	return !p.kwInLit && !hasKeyword(m, g.keywords) ||
		g.entropy > 0 && shannon(secret) <= g.entropy ||
		g.allowed(b, i, m, secret)
}

// secretSpan returns the secret group's span in a match: group k when k > 0,
// else the first non-empty group, else the whole match.
func secretSpan(loc []int, k int) (int, int) {
	if k > 0 {
		return loc[2*k], loc[2*k+1]
	}
	for j := 2; j+1 < len(loc); j += 2 {
		if loc[j] >= 0 && loc[j+1] > loc[j] {
			return loc[j], loc[j+1]
		}
	}
	return loc[0], loc[1]
}

func hasKeyword(m []byte, kws []string) bool {
	if len(kws) == 0 {
		return true
	}
	for _, k := range kws {
		if containsFold(m, k) {
			return true
		}
	}
	return false
}

// containsFold reports whether m contains the lower-case ASCII string k in any case.
func containsFold(m []byte, k string) bool {
	for j := 0; j+len(k) <= len(m); j++ {
		if lower(m[j]) != k[0] {
			continue
		}
		ok := true
		for x := 1; x < len(k); x++ {
			if lower(m[j+x]) != k[x] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// shannon is gitleaks' entropy: bits per rune of s.
func shannon(s []byte) float64 {
	if len(s) == 0 {
		return 0
	}
	var ascii [128]int
	var other map[rune]int
	for _, r := range string(s) {
		if r < 128 {
			ascii[r]++
			continue
		}
		if other == nil {
			other = map[rune]int{}
		}
		other[r]++
	}
	// gitleaks divides by the byte length.
	inv := 1 / float64(len(s))
	e := 0.0
	add := func(c int) {
		if c > 0 {
			f := float64(c) * inv
			e -= f * math.Log2(f)
		}
	}
	for _, c := range ascii {
		add(c)
	}
	for _, c := range other {
		add(c)
	}
	return e
}

// allowed applies the allowlists that can apply to a body: regexes on the
// secret or the match, and stop words on the secret. Conditions on paths,
// commits or lines never hold here.
func (g *glRule) allowed(b []byte, i int, m, secret []byte) bool {
	if g.bySecret {
		if last := g.allowedLast.Load(); last != nil && *last == string(secret) {
			return true
		}
		if g.allowedBy(b, i, m, secret) {
			s := string(secret)
			g.allowedLast.Store(&s)
			return true
		}
		return false
	}
	return g.allowedBy(b, i, m, secret)
}

func (g *glRule) allowedBy(b []byte, i int, m, secret []byte) bool {
	for _, a := range g.allow {
		if len(a.regexes) == 0 && len(a.stopwords) == 0 || a.target == "line" {
			continue
		}
		target := secret
		if a.target == "match" {
			// gitleaks' match starts with the identifier before the
			// keyword ([\w.-]{0,50}): as much of it as the context holds.
			s := i
			for s > max(0, i-min(leftContext, 50)) && idByte[b[s-1]] {
				s--
			}
			target = b[s : i+len(m)]
		}
		regexOK := slices.ContainsFunc(a.regexes, func(re *regexp.Regexp) bool { return re.Match(target) })
		stopOK := slices.ContainsFunc(a.stopwords, func(w string) bool { return containsFold(secret, w) })
		if a.and {
			if !a.other && (len(a.regexes) == 0 || regexOK) && (len(a.stopwords) == 0 || stopOK) {
				return true
			}
			continue
		}
		if regexOK || stopOK {
			return true
		}
	}
	return false
}

// yields reports whether a token detector matches at s.
func yields(b []byte, s int, eof bool, esc escMode, tokens []*detector) (bool, bool) {
	for _, d := range tokens {
		for _, p := range d.prefixes {
			if len(b)-s < len(p) {
				if !eof && strings.HasPrefix(p, string(b[s:])) {
					return false, true
				}
				continue
			}
			if string(b[s:s+len(p)]) != p {
				continue
			}
			n, more := d.match(b, s, len(p), eof, esc)
			if more {
				return false, true
			}
			if n > 0 {
				return true, false
			}
		}
	}
	return false, false
}
