package policy

import (
	"github.com/crewgate/crewgate/internal/authority"

	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/reqbody"
)

// outcome is what evaluating one rule concluded.
type outcome uint8

const (
	noMatch   outcome = iota
	match             // every condition holds
	needsBody         // every condition but the body holds, and the body is not read
)

// eval says whether every condition of r holds. With a non-nil tr it also
// records the conditions that held and the first one that failed, and why;
// explanations are only built when tr is set, so Decide pays nothing for them.
func (r *rule) eval(in *input, id *identity.Identity, tr *RuleResult) outcome {
	if !r.evalRequest(in, tr) || !r.evalIdentity(id, tr) {
		return noMatch
	}
	if r.body == nil {
		return match
	}
	return r.evalBody(in, tr)
}

// evalRequest checks the conditions on the request line and headers.
func (r *rule) evalRequest(in *input, tr *RuleResult) bool {
	if r.methods != nil {
		m, via := r.matchMethod(in)
		if via < 0 {
			if tr != nil {
				tr.fail("methods", "%s%s not in [%s]", in.Method, overridesShown(in), strings.Join(r.methods, " "))
			}
			return false
		}
		tr.held("methods")
		if tr != nil && via > 0 {
			tr.note("methods: %s from %s", m, overrideHeaders[via-1].name)
		}
	}
	if r.hosts != nil {
		if !slices.ContainsFunc(r.hosts, func(h authority.Pattern) bool { return h.MatchName(in.host) }) {
			if tr != nil {
				tr.fail("hosts", "%s not in [%s]", in.host, hostList(r.hosts))
			}
			return false
		}
		tr.held("hosts")
	}
	if r.path != nil {
		if !r.path.match(in.Path) && (in.clean == "" || !r.path.match(in.clean)) && (in.lenient == "" || !r.path.match(in.lenient)) {
			switch {
			case tr == nil:
			case in.clean != "":
				tr.fail("path", "%q (cleaned %q) does not match %q", in.Path, in.clean, r.path.pat)
			default:
				tr.fail("path", "%q does not match %q", in.Path, r.path.pat)
			}
			return false
		}
		tr.held("path")
	}
	for _, h := range r.headers {
		vals := in.Header[h.name]
		if len(vals) == 0 {
			if tr != nil {
				tr.fail("headers."+h.name, "absent")
			}
			return false
		}
		if !slices.ContainsFunc(vals, h.re.MatchString) {
			// Header values may be credentials: never echo them.
			if tr != nil {
				tr.fail("headers."+h.name, "no value matches %s", quote(h.re.String()))
			}
			return false
		}
		if tr != nil {
			tr.held("headers." + h.name)
		}
	}
	return true
}

// matchMethod finds the rule's method that the request has: via is 0 for
// the request's own method, i+1 for a value of overrideHeaders[i], and -1
// when none is listed.
func (r *rule) matchMethod(in *input) (method string, via int) {
	if i := slices.IndexFunc(r.methods, func(m string) bool { return strings.EqualFold(m, in.Method) }); i >= 0 {
		return r.methods[i], 0
	}
	for h, vals := range in.methodOverrides() {
		for _, v := range vals {
			for v != "" {
				var one string
				one, v, _ = strings.Cut(v, ",")
				one = strings.TrimSpace(one)
				if i := slices.IndexFunc(r.methods, func(m string) bool { return strings.EqualFold(m, one) }); i >= 0 {
					return r.methods[i], h + 1
				}
			}
		}
	}
	return "", -1
}

// overridesShown lists the override headers a request carries, for an
// explanation: ` (X-HTTP-Method-Override: "PUT")`.
func overridesShown(in *input) string {
	var b strings.Builder
	for i, vals := range in.methodOverrides() {
		for _, v := range vals {
			if len(v) > 32 {
				v = v[:32] + "..."
			}
			fmt.Fprintf(&b, ", %s: %q", overrideHeaders[i].name, v)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return " (" + b.String()[2:] + ")"
}

// evalIdentity checks the conditions on who is asking.
func (r *rule) evalIdentity(id *identity.Identity, tr *RuleResult) bool {
	if r.groups != nil {
		if id == nil {
			if tr != nil {
				tr.fail("groups", "no identity (not logged in), so in none of [%s]", strings.Join(r.groups, " "))
			}
			return false
		}
		if !slices.ContainsFunc(r.groups, func(g string) bool { return slices.Contains(id.Groups, g) }) {
			if tr != nil {
				tr.fail("groups", "the identity's groups [%s] include none of [%s]", strings.Join(id.Groups, " "), strings.Join(r.groups, " "))
			}
			return false
		}
		tr.held("groups")
	}
	if r.notGroups != nil {
		// No identity is in no group: a not_groups condition then holds, so
		// "deny unless in group X" fails closed.
		if id != nil {
			if i := slices.IndexFunc(r.notGroups, func(g string) bool { return slices.Contains(id.Groups, g) }); i >= 0 {
				if tr != nil {
					tr.fail("not_groups", "the identity is in %s", r.notGroups[i])
				}
				return false
			}
		}
		tr.held("not_groups")
	}
	for _, c := range r.claims {
		if id == nil {
			if tr != nil {
				tr.fail("claims."+c.name, "no identity (not logged in)")
			}
			return false
		}
		v, ok := claim(id, c.name)
		if !ok {
			if tr != nil {
				tr.fail("claims."+c.name, "the identity has no %s claim", c.name)
			}
			return false
		}
		if !claimMatches(v, c.value) {
			if tr != nil {
				tr.fail("claims."+c.name, "%s is %s, not %q", c.name, claimText(v), c.value)
			}
			return false
		}
		if tr != nil {
			tr.held("claims." + c.name)
		}
	}
	return true
}

// evalBody checks the body condition, once every other condition holds.
func (r *rule) evalBody(in *input, tr *RuleResult) outcome {
	v := in.Body
	if v == nil {
		if tr != nil {
			tr.fail("body", "not read yet: the body is read once a rule with a body condition is reached")
			tr.NeedsBody = true
		}
		return needsBody
	}
	where, ok := r.body.matchView(v)
	if !ok {
		if tr != nil {
			tr.fail("body", "no match for %s in %s", quote(r.body.String()), viewShown(v))
		}
		return noMatch
	}
	if tr != nil {
		tr.held("body")
		if n := v.NumTexts(); where < n {
			tr.note("body: matched the %s", v.TextName(where))
		} else {
			tr.note("body: matched a decoded %s (value %d of %d)", v.ValueKind(where-n), where-n+1, v.NumValues())
		}
	}
	return match
}

// viewShown describes a view for an explanation: "the 12-byte body", "the
// 40-byte body, 1 other reading and its 3 decoded values".
func viewShown(v *reqbody.View) string {
	s := "the 0-byte body"
	if v.NumTexts() > 0 {
		s = fmt.Sprintf("the %d-byte body", len(v.Text(0)))
	}
	switch n := v.NumTexts() - 1; {
	case n == 1:
		s += ", 1 other reading"
	case n > 1:
		s += fmt.Sprintf(", %d other readings", n)
	}
	switch n := v.NumValues(); {
	case n == 1:
		s += " or its decoded value"
	case n > 1:
		s += fmt.Sprintf(" or its %d decoded values", n)
	}
	return s
}

func hostList(hs []authority.Pattern) string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return strings.Join(out, " ")
}

// claim looks a claim up in the verified ID-token claims, falling back to
// the identity's own fields for the standard ones.
func claim(id *identity.Identity, name string) (any, bool) {
	if v, ok := id.Claims[name]; ok {
		return v, true
	}
	switch {
	case name == "sub" && id.Subject != "":
		return id.Subject, true
	case name == "email" && id.Email != "":
		return id.Email, true
	case name == "name" && id.Name != "":
		return id.Name, true
	}
	return nil, false
}

// claimMatches compares a claim with a rule's value: a string claim must
// equal it, a list claim must contain it, and any other claim (number,
// boolean, null, object) must have it as its JSON text.
func claimMatches(v any, want string) bool {
	switch v := v.(type) {
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return scalarMatches(e, want) })
	case []string:
		return slices.Contains(v, want)
	}
	return scalarMatches(v, want)
}

func scalarMatches(v any, want string) bool {
	if s, ok := v.(string); ok {
		return s == want
	}
	return claimText(v) == want
}

// claimText is a claim's JSON text, for comparison and for explanations.
func claimText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// glob is a compiled path pattern: '*' matches any run of characters ('/'
// included), '?' one character.
type glob struct {
	pat  string
	kind int // globExact, globPrefix or globGeneral
	lit  string
}

const (
	globExact   = iota // no wildcard: lit == pattern
	globPrefix         // lit followed by one '*'
	globGeneral        // anything else
)

func compileGlob(pat string) (*glob, error) {
	switch {
	case !utf8.ValidString(pat):
		return nil, fmt.Errorf("not UTF-8")
	case pat[0] != '/' && pat[0] != '*':
		if strings.Contains(pat, "://") {
			return nil, fmt.Errorf("a path glob starts with '/' or '*'; put the host in hosts")
		}
		return nil, fmt.Errorf("a path glob starts with '/' or '*'")
	}
	if i := strings.IndexAny(pat, "[]{}\\"); i >= 0 {
		return nil, fmt.Errorf("%q is not supported: only '*' and '?' are special in a path glob", pat[i:i+1])
	}
	if strings.ContainsFunc(pat, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("control characters are not allowed")
	}
	g := &glob{pat: pat, kind: globGeneral}
	switch star := strings.IndexByte(pat, '*'); {
	case strings.IndexByte(pat, '?') >= 0:
	case star < 0:
		g.kind, g.lit = globExact, pat
	case star == len(pat)-1:
		g.kind, g.lit = globPrefix, pat[:star]
	}
	return g, nil
}

func (g *glob) match(s string) bool {
	switch g.kind {
	case globExact:
		return s == g.lit
	case globPrefix:
		return strings.HasPrefix(s, g.lit)
	}
	return globMatch(g.pat, s)
}

// globMatch is the linear-time wildcard match with one backtrack point
// (research.swtch.com/glob); '?' and a star's restart step over whole UTF-8
// characters.
func globMatch(pat, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := 0, -1
	for px < len(pat) || sx < len(s) {
		if px < len(pat) {
			switch c := pat[px]; c {
			case '*':
				nextPx, nextSx = px, sx+charLen(s, sx)
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx += charLen(s, sx)
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx >= 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// charLen is the length of the character at s[i:], 1 past the end.
func charLen(s string, i int) int {
	if i >= len(s) {
		return 1
	}
	if s[i] < utf8.RuneSelf {
		return 1
	}
	_, n := utf8.DecodeRuneInString(s[i:])
	return n
}
