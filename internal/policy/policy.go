// Package policy decides what happens to each request a crew sends through
// crewgate. The config's rules are compiled once; Decide evaluates them in
// order and the first rule whose every condition holds decides (allow, deny
// or approve). A request that no rule matches is allowed. Explain evaluates
// every rule and says why each one did or did not match, for
// `crewgate policy explain`.
//
// Conditions are checked cheapest first, in this order: methods, hosts, path,
// headers, groups, not_groups, claims, body. Explain reports the first one
// that fails in that order.
//
// Methods: a methods condition holds when the request's method is listed,
// or when any value of X-HTTP-Method-Override, X-HTTP-Method or
// X-Method-Override is (case-insensitive; a header may list several values,
// comma-separated), since many frameworks route a POST by those headers.
//
// Path globs: '*' matches any run of characters, '/' included, so
// "/v1/deploy*" matches "/v1/deploy", "/v1/deploy/x" and "/v1/deployments";
// '?' matches exactly one character; everything else matches itself. A glob
// is matched against the decoded URL path as sent and, when they differ,
// against its cleaned form (repeated slashes collapsed, "." and ".." segments
// resolved), and holds when either matches: "/v1//deploy" cannot slip past
// "/v1/deploy*". The query string is never part of the path.
//
// Body: a body condition reads the request body as the upstream will
// understand it, a reqbody.View: it holds when its regular expression
// matches one of the view's texts (the body after Content-Encoding, and its
// UTF-8 conversions) or, on its own, one of its decoded values (a JSON
// string or key, a form key or value, XML text, a multipart part's body or
// name). A pattern therefore cannot match across two values, and an empty
// value is never tried. The body is read in a second phase: Decide on a
// Request whose Body is nil evaluates rules in order and, on reaching a rule
// whose other conditions all hold and that has a body condition, returns a
// Decision with NeedsBody set instead of deciding; the caller reads and
// views the body (ViewBody) and calls Decide again. Requests with no body
// rule in reach so never have their body read. A body that cannot be viewed
// (larger than MaxBody, raw or decoded, or not decodable) is the caller's
// to refuse, unless AllowOversize.
package policy

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/crewgate/crewgate/internal/authority"
	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/reqbody"
)

// Actions a rule can take.
const (
	Allow   = "allow"
	Deny    = "deny"
	Approve = "approve"
)

// Request is what a rule can look at.
type Request struct {
	Method string      // upper-case
	Host   string      // lower-case, no port
	Path   string      // URL path as sent (req.URL.Path); "" for a CONNECT
	Header http.Header // canonical keys, as net/http builds them
	Query  string      // the raw query, for the _method override
	// Body is the body as rules read it (ViewBody); nil when it has not
	// been read, so that Decide says when it must be (Decision.NeedsBody).
	// A request without a body has the view of an empty one.
	Body *reqbody.View
}

// Decision is the outcome of evaluating the rules for one request.
type Decision struct {
	Action string // "allow", "deny" or "approve"; "allow" with Rule "" when no rule matched
	Rule   string // the deciding rule's name
	Reason string // the rule's reason, "" when none
	// NeedsBody says that Request.Body was nil and Rule, the first rule
	// that could decide, has a body condition: read and view the body,
	// then call Decide again. Action is then "deny" and Reason says why, so
	// that a caller that overlooks NeedsBody fails closed.
	NeedsBody bool
}

// Policy is a compiled, immutable rule list; it is safe for concurrent use.
type Policy struct {
	rules         []rule
	needsBody     bool
	maxBody       int
	allowOversize bool
}

// rule is one compiled config.Rule. A nil slice or pointer is an unset
// condition.
type rule struct {
	name, action, reason string

	methods   []string
	hosts     []authority.Pattern
	path      *glob
	headers   []headerCond // sorted by name
	groups    []string
	notGroups []string
	claims    []claimCond // sorted by name
	body      *bodyRegexp
}

type headerCond struct {
	name string // canonical form
	re   *regexp.Regexp
}

type claimCond struct {
	name, value string
}

// methods a rule may name.
var knownMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// Compile checks and compiles cfg.Rules. Errors are *config.Error with
// cfg.File and the line of the offending key, naming the key and what is
// wrong.
func Compile(cfg *config.Config) (*Policy, error) {
	p := &Policy{
		rules:         make([]rule, 0, len(cfg.Rules)),
		maxBody:       int(cmp.Or(cfg.Policy.MaxBody, config.DefaultMaxBody)),
		allowOversize: cfg.Policy.Oversize == config.OversizeAllow,
	}
	seen := map[string]int{} // rule name -> index
	for i, cr := range cfg.Rules {
		c := compiler{cfg: cfg, key: fmt.Sprintf("rules[%d]", i)}
		if j, dup := seen[cr.Name]; dup {
			return nil, c.errorf(".name", "rule %q is already defined as rules[%d]; rule names must be unique", cr.Name, j)
		}
		r, err := c.rule(cr)
		if err != nil {
			return nil, err
		}
		seen[cr.Name] = i
		p.rules = append(p.rules, r)
		p.needsBody = p.needsBody || r.body != nil
	}
	return p, nil
}

// Len is the number of rules.
func (p *Policy) Len() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

// NeedsBody reports whether any rule has a body condition. Decide says
// per request whether its body must be read; this says whether any ever
// might.
func (p *Policy) NeedsBody() bool { return p != nil && p.needsBody }

// MaxBody is policy.max_body: the most bytes a body may hold, as sent and
// after decoding, for body rules to read it. A caller reads at most
// MaxBody()+1 bytes of a body and passes them to ViewBody.
func (p *Policy) MaxBody() int {
	if p == nil {
		return int(config.DefaultMaxBody)
	}
	return p.maxBody
}

// AllowOversize reports policy.oversize: allow: a body ViewBody cannot read
// is let through, with the view of what it could read, rather than
// refused.
func (p *Policy) AllowOversize() bool { return p != nil && p.allowOversize }

// ViewBody decodes a request body (the bytes as sent, at most MaxBody()+1
// of them) into the view body rules read. The error wraps
// reqbody.ErrUninspectable; the view is usable even then.
func (p *Policy) ViewBody(h http.Header, raw []byte) (*reqbody.View, error) {
	return reqbody.Decode(h, raw, p.MaxBody())
}

// Decide returns the first matching rule's decision; no match allows. id may
// be nil (not logged in): a groups or claims condition then does not match
// and a not_groups condition matches, so deny rules fail closed. When
// r.Body is nil and a rule with a body condition is reached first, the
// decision has NeedsBody set (see the package documentation).
func (p *Policy) Decide(r *Request, id *identity.Identity) Decision {
	if p == nil {
		return Decision{Action: Allow}
	}
	in := prepare(r)
	for i := range p.rules {
		ru := &p.rules[i]
		if o := ru.eval(&in, id, nil); o != noMatch {
			return ru.decision(o)
		}
	}
	return Decision{Action: Allow}
}

// decision is what rule r decides when it matched or needs the body.
func (r *rule) decision(o outcome) Decision {
	if o == needsBody {
		return Decision{Action: Deny, Rule: r.name, Reason: "rule " + r.name + " must read the request body", NeedsBody: true}
	}
	return Decision{Action: r.action, Rule: r.name, Reason: r.reason}
}

// compiler turns one config.Rule into a rule, with errors at its keys.
type compiler struct {
	cfg *config.Config
	key string // "rules[3]"
}

func (c compiler) errorf(sub, format string, args ...any) error {
	key := c.key + sub
	e := &config.Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if line := c.cfg.Line(key); line > 0 {
		e.File, e.Line = c.cfg.File, line
	}
	return e
}

func (c compiler) rule(cr config.Rule) (rule, error) {
	r := rule{name: cr.Name, action: cr.Action, reason: cr.Reason}
	switch {
	case cr.Name == "":
		return r, c.errorf(".name", "every rule needs a name")
	case !printable(cr.Name):
		return r, c.errorf(".name", "%q has control characters or is not UTF-8", cr.Name)
	}
	switch cr.Action {
	case Allow, Deny, Approve:
	default:
		return r, c.errorf(".action", "%q is not one of allow, deny, approve", cr.Action)
	}
	m := cr.Match
	if m.Hosts == nil && m.Methods == nil && m.Path == "" && len(m.Headers) == 0 && m.Body == "" &&
		m.Groups == nil && m.NotGroups == nil && len(m.Claims) == 0 {
		return r, c.errorf(".match", "rule %q has no condition, so it would match every request; "+
			"use an explicit catch-all path: '/*' (or '*', which also matches CONNECT requests, whose path is empty)", cr.Name)
	}

	if m.Methods != nil {
		if len(m.Methods) == 0 {
			return r, c.errorf(".match.methods", "an empty list never matches; remove the key or name a method")
		}
		for i, meth := range m.Methods {
			up := strings.ToUpper(meth)
			if !slices.Contains(knownMethods, up) {
				return r, c.errorf(fmt.Sprintf(".match.methods[%d]", i), "unknown method %q; use one of %s", meth, strings.Join(knownMethods, ", "))
			}
			if !slices.Contains(r.methods, up) {
				r.methods = append(r.methods, up)
			}
		}
	}
	if m.Hosts != nil {
		if len(m.Hosts) == 0 {
			return r, c.errorf(".match.hosts", "an empty list never matches; remove the key or name a host")
		}
		for i, h := range m.Hosts {
			pat, err := authority.ParseRuleHost(h)
			if err != nil {
				return r, c.errorf(fmt.Sprintf(".match.hosts[%d]", i), "%v", err)
			}
			r.hosts = append(r.hosts, pat)
		}
	}
	if m.Path != "" {
		g, err := compileGlob(m.Path)
		if err != nil {
			return r, c.errorf(".match.path", "bad path glob %q: %v", m.Path, err)
		}
		r.path = g
	}
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		sub := ".match.headers." + name
		if !validHeaderName(name) {
			return r, c.errorf(sub, "%q is not a header name", name)
		}
		re, err := compileRegexp(m.Headers[name])
		if err != nil {
			return r, c.errorf(sub, "%v", err)
		}
		r.headers = append(r.headers, headerCond{name: http.CanonicalHeaderKey(name), re: re})
	}
	if m.Groups != nil {
		if len(m.Groups) == 0 {
			return r, c.errorf(".match.groups", "an empty list never matches; remove the key or name a group")
		}
		if err := c.names(".match.groups", m.Groups); err != nil {
			return r, err
		}
		r.groups = slices.Clone(m.Groups)
	}
	if m.NotGroups != nil {
		if len(m.NotGroups) == 0 {
			return r, c.errorf(".match.not_groups", "an empty list always holds; remove the key or name a group")
		}
		if err := c.names(".match.not_groups", m.NotGroups); err != nil {
			return r, err
		}
		r.notGroups = slices.Clone(m.NotGroups)
	}
	for _, name := range slices.Sorted(maps.Keys(m.Claims)) {
		if name == "" || !printable(name) {
			return r, c.errorf(".match.claims", "%q is not a claim name", name)
		}
		r.claims = append(r.claims, claimCond{name: name, value: m.Claims[name]})
	}
	if m.Body != "" {
		re, err := compileRegexp(m.Body)
		if err != nil {
			return r, c.errorf(".match.body", "%v", err)
		}
		r.body = newBodyRegexp(re)
	}
	return r, nil
}

func (c compiler) names(sub string, list []string) error {
	for i, g := range list {
		if g == "" || !printable(g) {
			return c.errorf(fmt.Sprintf("%s[%d]", sub, i), "%q is not a group name", g)
		}
	}
	return nil
}

func compileRegexp(expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
		return nil, fmt.Errorf("bad regular expression %s: %s (Go RE2 syntax)", quote(expr), msg)
	}
	return re, nil
}

// quote shows a pattern the way it is written in YAML single quotes, so
// that backslashes read as written; %q when that would be ambiguous.
func quote(s string) string {
	if printable(s) && !strings.Contains(s, "'") {
		return "'" + s + "'"
	}
	return fmt.Sprintf("%q", s)
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// input is a Request with the normalised host, the cleaned path and the
// method override headers worked out once per decision rather than once per
// rule.
type input struct {
	*Request
	host  string
	clean string // the cleaned path when it differs from Path, else ""
	// lenient is the path as lenient servers route it (lenientPath) when
	// it differs from Path and clean, else "".
	lenient string
	// overrides holds the values of each override header, looked up when
	// a methods condition first fails on the request's own method.
	overrides       [len(overrideHeaders)][]string
	overridesLooked bool
}

// overrideHeaders name the method a framework routes a request by instead of
// its own, in canonical form and as they are usually written.
var overrideHeaders = [...]struct{ key, name string }{
	{"x-http-method-override", "X-HTTP-Method-Override"},
	{"x-http-method", "X-HTTP-Method"},
	{"x-method-override", "X-Method-Override"},
	{"", "the _method query parameter"}, // Laravel, Express's method-override
}

// methodOverrides returns the override headers' values, looking them up once.
func (in *input) methodOverrides() *[len(overrideHeaders)][]string {
	if !in.overridesLooked {
		in.overridesLooked = true
		// Header names compared case-insensitively and with '_' as '-':
		// CGI-style servers read X_HTTP_Method_Override as the same name.
		for k, vals := range in.Header {
			for i, h := range overrideHeaders {
				if h.key == "" || !sameHeaderName(k, h.key) {
					continue
				}
				if in.overrides[i] == nil {
					in.overrides[i] = vals
				} else {
					in.overrides[i] = append(slices.Clip(in.overrides[i]), vals...)
				}
			}
		}
		if strings.Contains(in.Query, "_method") {
			if q, err := url.ParseQuery(in.Query); err == nil {
				in.overrides[len(overrideHeaders)-1] = q["_method"]
			}
		}
	}
	return &in.overrides
}

func prepare(r *Request) input {
	in := input{Request: r, host: r.Host}
	if strings.HasSuffix(in.host, ".") || strings.ContainsFunc(in.host, func(c rune) bool { return 'A' <= c && c <= 'Z' }) {
		in.host = strings.ToLower(strings.TrimSuffix(in.host, "."))
	}
	if c := cleanPath(r.Path); c != r.Path {
		in.clean = c
	}
	if a := lenientPath(r.Path); a != r.Path && a != in.clean {
		in.lenient = a
	}
	return in
}

// sameHeaderName compares a header name with a lower-case one, ignoring
// ASCII case and reading '_' as '-', without allocating.
func sameHeaderName(k, lower string) bool {
	if len(k) != len(lower) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// lenientPath is p as servers that forgive more route it: ";params"
// dropped from each segment (Tomcat, Spring), '\\' read as '/' (IIS and
// others), then cleaned, and a trailing slash dropped (Express, Rails).
func lenientPath(p string) string {
	if !strings.ContainsAny(p, ";\\") && (len(p) < 2 || !strings.HasSuffix(p, "/")) {
		return p
	}
	p = strings.ReplaceAll(p, "\\", "/")
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			segs[i] = seg[:j]
		}
	}
	p = cleanPath(strings.Join(segs, "/"))
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
		if p == "" {
			p = "/"
		}
	}
	return p
}

// cleanPath resolves what a server might: repeated slashes, "." and ".."
// segments. A trailing slash is kept.
func cleanPath(p string) string {
	if !strings.HasPrefix(p, "/") || !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
