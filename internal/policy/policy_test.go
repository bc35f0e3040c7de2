package policy

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/reqbody"
)

// isolate keeps the developer's own config and CREWGATE_* variables out.
func isolate(t testing.TB) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.EnvPrefix+"_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// load writes yaml to a config file and loads it the way crewgate does.
func load(t testing.TB, yaml string) (*config.Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(config.Options{File: p})
}

func mustCompile(t testing.TB, yaml string) *Policy {
	t.Helper()
	cfg, err := load(t, yaml)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	p, err := Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func req(method, host, path string, kv ...string) *Request {
	r := &Request{Method: method, Host: host, Path: path, Header: http.Header{}}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

// withBody gives r the view of body, read by r's headers.
func withBody(t testing.TB, r *Request, body string) *Request {
	t.Helper()
	v, err := reqbody.Decode(r.Header, []byte(body), 8<<20)
	if err != nil {
		t.Fatalf("reqbody.Decode: %v", err)
	}
	r.Body = v
	return r
}

var (
	alice = &identity.Identity{Subject: "alice", Email: "alice@example.com", Groups: []string{"ml-deployers", "staff"},
		Claims: map[string]any{
			"sub": "alice", "email": "alice@example.com", "email_verified": true, "level": float64(3),
			"roles": []any{"reader", "writer", float64(7)}, "org": map[string]any{"id": "acme"}, "nothing": nil,
		}}
	bob = &identity.Identity{Subject: "bob", Groups: []string{"staff"}}
)

// The rules of DESIGN.md, in the order given there.
const designRules = `
rules:
  - name: no-drop-table
    action: deny
    match: {body: '(?i)\bdrop\s+table\b'}
  - name: confirm-deletes
    action: approve
    reason: "deletes data in the CRM"
    match: {hosts: ["crm.example.com"], methods: [DELETE]}
  - name: deploy-needs-group
    action: deny
    match: {path: "/v1/deploy*", not_groups: [ml-deployers]}
`

// needs is the decision of a rule that must read the body.
func needs(rule string) Decision {
	return Decision{Action: "deny", Rule: rule, Reason: "rule " + rule + " must read the request body", NeedsBody: true}
}

func TestPolicyDecide(t *testing.T) {
	isolate(t)
	allow := Decision{Action: "allow"}
	tests := []struct {
		name  string
		rules string
		req   *Request
		id    *identity.Identity
		want  Decision
	}{
		// Precedence and the DESIGN.md example.
		{"no rule matches", designRules, withBody(t, req("GET", "api.example.com", "/v1/models"), ""), alice, allow},
		{"no rules at all", "", req("DELETE", "crm.example.com", "/"), nil, allow},
		{"approve rule", designRules, withBody(t, req("DELETE", "crm.example.com", "/contacts/7"), ""), alice,
			Decision{Action: "approve", Rule: "confirm-deletes", Reason: "deletes data in the CRM"}},
		{"first match wins over a later match", designRules,
			withBody(t, req("DELETE", "crm.example.com", "/sql"), "DROP  TABLE users"), alice,
			Decision{Action: "deny", Rule: "no-drop-table"}},
		{"deny unless in group: outsider", designRules, withBody(t, req("POST", "x.example.com", "/v1/deploy/3"), ""), bob,
			Decision{Action: "deny", Rule: "deploy-needs-group"}},
		{"deny unless in group: member", designRules, withBody(t, req("POST", "x.example.com", "/v1/deploy/3"), ""), alice, allow},
		{"deny unless in group: nobody logged in fails closed", designRules, withBody(t, req("POST", "x.example.com", "/v1/deploy"), ""), nil,
			Decision{Action: "deny", Rule: "deploy-needs-group"}},
		{"earlier allow shadows a later deny", `
rules:
  - {name: ok, action: allow, match: {hosts: [a.example.com]}}
  - {name: no, action: deny, match: {path: '*'}}
`, req("GET", "a.example.com", "/"), nil, Decision{Action: "allow", Rule: "ok"}},
		{"the catch-all catches the rest", `
rules:
  - {name: ok, action: allow, match: {hosts: [a.example.com]}}
  - {name: no, action: deny, reason: closed, match: {path: '*'}}
`, req("GET", "b.example.com", "/"), nil, Decision{Action: "deny", Rule: "no", Reason: "closed"}},
		{"every condition must hold", `
rules:
  - {name: r, action: deny, match: {hosts: [a.example.com], methods: [POST]}}
`, req("GET", "a.example.com", "/"), nil, allow},

		// hosts
		{"host exact, case-insensitive rule", "rules: [{name: r, action: deny, match: {hosts: [API.Example.com]}}]",
			req("GET", "api.example.com", "/"), nil, Decision{Action: "deny", Rule: "r"}},
		{"host upper-case request, trailing dot", "rules: [{name: r, action: deny, match: {hosts: [api.example.com]}}]",
			req("GET", "API.example.com.", "/"), nil, Decision{Action: "deny", Rule: "r"}},
		{"host wildcard matches a subdomain", "rules: [{name: r, action: deny, match: {hosts: ['*.example.com']}}]",
			req("GET", "a.b.example.com", "/"), nil, Decision{Action: "deny", Rule: "r"}},
		{"host wildcard does not match the bare suffix", "rules: [{name: r, action: deny, match: {hosts: ['*.example.com']}}]",
			req("GET", "example.com", "/"), nil, allow},
		{"host wildcard does not match a lookalike", "rules: [{name: r, action: deny, match: {hosts: ['*.example.com']}}]",
			req("GET", "evilexample.com", "/"), nil, allow},
		{"host exact does not match a subdomain", "rules: [{name: r, action: deny, match: {hosts: [example.com]}}]",
			req("GET", "a.example.com", "/"), nil, allow},

		// methods
		{"method list is case-insensitive", "rules: [{name: r, action: deny, match: {methods: [delete, put]}}]",
			req("PUT", "h", "/"), nil, Decision{Action: "deny", Rule: "r"}},
		{"method not in list", "rules: [{name: r, action: deny, match: {methods: [DELETE]}}]",
			req("GET", "h", "/"), nil, allow},

		// path
		{"path star crosses slashes", "rules: [{name: r, action: deny, match: {path: '/v1/*/delete'}}]",
			req("POST", "h", "/v1/a/b/c/delete"), nil, Decision{Action: "deny", Rule: "r"}},
		{"path prefix glob", "rules: [{name: r, action: deny, match: {path: '/v1/deploy*'}}]",
			req("POST", "h", "/v1/deployments"), nil, Decision{Action: "deny", Rule: "r"}},
		{"path exact glob does not match longer", "rules: [{name: r, action: deny, match: {path: '/v1/deploy'}}]",
			req("POST", "h", "/v1/deploy/x"), nil, allow},
		{"path question mark is one character", "rules: [{name: r, action: deny, match: {path: '/v?/x'}}]",
			req("GET", "h", "/v2/x"), nil, Decision{Action: "deny", Rule: "r"}},
		{"path question mark is not two", "rules: [{name: r, action: deny, match: {path: '/v?/x'}}]",
			req("GET", "h", "/v10/x"), nil, allow},
		{"path question mark is one UTF-8 character", "rules: [{name: r, action: deny, match: {path: '/?/x'}}]",
			req("GET", "h", "/é/x"), nil, Decision{Action: "deny", Rule: "r"}},
		{"path is case-sensitive", "rules: [{name: r, action: deny, match: {path: '/v1/deploy*'}}]",
			req("GET", "h", "/V1/deploy"), nil, allow},
		{"path double slash cannot bypass", "rules: [{name: r, action: deny, match: {path: '/v1/deploy*'}}]",
			req("GET", "h", "/v1//deploy"), nil, Decision{Action: "deny", Rule: "r"}},
		{"path dot-dot cannot bypass", "rules: [{name: r, action: deny, match: {path: '/v1/deploy*'}}]",
			req("GET", "h", "/v1/x/../deploy/"), nil, Decision{Action: "deny", Rule: "r"}},
		{"path slash-star does not match a CONNECT", "rules: [{name: r, action: deny, match: {path: '/*'}}]",
			req("CONNECT", "h", ""), nil, allow},
		{"path star matches a CONNECT", "rules: [{name: r, action: deny, match: {path: '*'}}]",
			req("CONNECT", "h", ""), nil, Decision{Action: "deny", Rule: "r"}},

		// headers
		{"header regex matches one of the values", "rules: [{name: r, action: deny, match: {headers: {x-env: '^prod$'}}}]",
			req("GET", "h", "/", "X-Env", "dev", "X-Env", "prod"), nil, Decision{Action: "deny", Rule: "r"}},
		{"header regex matches none", "rules: [{name: r, action: deny, match: {headers: {X-Env: '^prod$'}}}]",
			req("GET", "h", "/", "X-Env", "production"), nil, allow},
		{"header absent does not match", "rules: [{name: r, action: deny, match: {headers: {X-Env: ''}}}]",
			req("GET", "h", "/"), nil, allow},
		{"header empty regex means present", "rules: [{name: r, action: deny, match: {headers: {X-Env: ''}}}]",
			req("GET", "h", "/", "X-Env", ""), nil, Decision{Action: "deny", Rule: "r"}},
		{"every header must match", "rules: [{name: r, action: deny, match: {headers: {A: 'x', B: 'y'}}}]",
			req("GET", "h", "/", "A", "x"), nil, allow},

		// body
		{"body regex", "rules: [{name: r, action: deny, match: {body: 'secret'}}]",
			withBody(t, req("POST", "h", "/"), "a secret here"), nil, Decision{Action: "deny", Rule: "r"}},
		{"body regex no match", "rules: [{name: r, action: deny, match: {body: 'secret'}}]",
			withBody(t, req("POST", "h", "/"), "a secr"), nil, allow},
		{"body empty", "rules: [{name: r, action: deny, match: {body: '^$'}}]",
			withBody(t, req("GET", "h", "/"), ""), nil, Decision{Action: "deny", Rule: "r"}},
		{"body not read: the rule needs it", "rules: [{name: r, action: deny, match: {body: 'secret'}}]",
			req("POST", "h", "/"), nil, needs("r")},
		{"body decoded: a JSON escape", "rules: [{name: r, action: deny, match: {body: 'a secret'}}]",
			withBody(t, req("POST", "h", "/", "Content-Type", "application/json"), `{"q":"a\u0020secret"}`), nil, Decision{Action: "deny", Rule: "r"}},
		{"body decoded: a pattern does not span two values", "rules: [{name: r, action: deny, match: {body: 'a.{0,10}secret'}}]",
			withBody(t, req("POST", "h", "/", "Content-Type", "application/x-www-form-urlencoded"), `x=a&y=secre%74`), nil, allow},

		// groups
		{"groups: in one", "rules: [{name: r, action: allow, match: {groups: [admins, staff]}}]",
			req("GET", "h", "/"), bob, Decision{Action: "allow", Rule: "r"}},
		{"groups: in none", "rules: [{name: r, action: deny, match: {groups: [admins]}}]",
			req("GET", "h", "/"), bob, allow},
		{"groups: no identity does not match", "rules: [{name: r, action: deny, match: {groups: [staff]}}]",
			req("GET", "h", "/"), nil, allow},
		{"not_groups: in one does not match", "rules: [{name: r, action: deny, match: {not_groups: [staff]}}]",
			req("GET", "h", "/"), bob, allow},
		{"not_groups: in none matches", "rules: [{name: r, action: deny, match: {not_groups: [admins]}}]",
			req("GET", "h", "/"), bob, Decision{Action: "deny", Rule: "r"}},
		{"not_groups: no identity matches", "rules: [{name: r, action: deny, match: {not_groups: [staff]}}]",
			req("GET", "h", "/"), nil, Decision{Action: "deny", Rule: "r"}},

		// claims
		{"claims: string equal", "rules: [{name: r, action: deny, match: {claims: {email: alice@example.com}}}]",
			req("GET", "h", "/"), alice, Decision{Action: "deny", Rule: "r"}},
		{"claims: string differs", "rules: [{name: r, action: deny, match: {claims: {email: Alice@example.com}}}]",
			req("GET", "h", "/"), alice, allow},
		{"claims: list contains", "rules: [{name: r, action: deny, match: {claims: {roles: writer}}}]",
			req("GET", "h", "/"), alice, Decision{Action: "deny", Rule: "r"}},
		{"claims: list contains a number by JSON text", "rules: [{name: r, action: deny, match: {claims: {roles: '7'}}}]",
			req("GET", "h", "/"), alice, Decision{Action: "deny", Rule: "r"}},
		{"claims: list lacks", "rules: [{name: r, action: deny, match: {claims: {roles: admin}}}]",
			req("GET", "h", "/"), alice, allow},
		{"claims: boolean by JSON text", "rules: [{name: r, action: deny, match: {claims: {email_verified: 'true'}}}]",
			req("GET", "h", "/"), alice, Decision{Action: "deny", Rule: "r"}},
		{"claims: boolean is not a string", "rules: [{name: r, action: deny, match: {claims: {email_verified: 'yes'}}}]",
			req("GET", "h", "/"), alice, allow},
		{"claims: number by JSON text", "rules: [{name: r, action: deny, match: {claims: {level: '3'}}}]",
			req("GET", "h", "/"), alice, Decision{Action: "deny", Rule: "r"}},
		{"claims: object by JSON text", `rules: [{name: r, action: deny, match: {claims: {org: '{"id":"acme"}'}}}]`,
			req("GET", "h", "/"), alice, Decision{Action: "deny", Rule: "r"}},
		{"claims: null by JSON text", "rules: [{name: r, action: deny, match: {claims: {nothing: 'null'}}}]",
			req("GET", "h", "/"), alice, Decision{Action: "deny", Rule: "r"}},
		{"claims: absent", "rules: [{name: r, action: deny, match: {claims: {team: ml}}}]",
			req("GET", "h", "/"), alice, allow},
		{"claims: sub falls back to the subject", "rules: [{name: r, action: deny, match: {claims: {sub: bob}}}]",
			req("GET", "h", "/"), bob, Decision{Action: "deny", Rule: "r"}},
		{"claims: no identity does not match", "rules: [{name: r, action: deny, match: {claims: {sub: bob}}}]",
			req("GET", "h", "/"), nil, allow},
		{"claims: every claim must hold", "rules: [{name: r, action: deny, match: {claims: {sub: alice, level: '4'}}}]",
			req("GET", "h", "/"), alice, allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, tt.rules)
			if got := p.Decide(tt.req, tt.id); got != tt.want {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
			ex := p.Explain(tt.req, tt.id)
			if ex.Decision != tt.want {
				t.Errorf("Explain decision = %+v, want %+v", ex.Decision, tt.want)
			}
		})
	}
}

func TestPolicyCompileErrors(t *testing.T) {
	isolate(t)
	tests := []struct {
		name    string
		yaml    string
		key     string
		line    int
		message string
	}{
		{"bad body regex", "rules:\n  - name: r\n    action: deny\n    match:\n      body: '(unclosed'\n",
			"rules[0].match.body", 5, "bad regular expression '(unclosed': missing closing )"},
		{"lookahead is not RE2", "rules:\n  - name: r\n    action: deny\n    match: {body: 'a(?=b)'}\n",
			"rules[0].match.body", 4, "invalid or unsupported Perl syntax"},
		{"bad header regex", "rules:\n  - name: r\n    action: deny\n    match:\n      headers:\n        X-Env: '[prod'\n",
			"rules[0].match.headers.X-Env", 6, "bad regular expression"},
		{"bad header name", "rules:\n  - name: r\n    action: deny\n    match:\n      headers:\n        'X Env': 'prod'\n",
			"rules[0].match.headers.X Env", 6, "is not a header name"},
		{"glob without a leading slash", "rules:\n  - name: r\n    action: deny\n    match: {path: 'v1/*'}\n",
			"rules[0].match.path", 4, "starts with '/' or '*'"},
		{"glob with a URL", "rules:\n  - name: r\n    action: deny\n    match:\n      path: 'https://x/y'\n",
			"rules[0].match.path", 5, "put the host in hosts"},
		{"glob with a character class", "rules:\n  - name: r\n    action: deny\n    match: {path: '/v[12]/x'}\n",
			"rules[0].match.path", 4, `"[" is not supported`},
		{"empty match", "rules:\n  - name: r\n    action: deny\n    match: {}\n",
			"rules[0].match", 4, "use an explicit catch-all path: '/*'"},
		{"no match key", "rules:\n  - name: ok\n    action: deny\n    match: {path: '*'}\n  - name: r\n    action: deny\n",
			"rules[1].match", 5, "has no condition"},
		{"unknown method", "rules:\n  - name: r\n    action: deny\n    match:\n      methods: [GET, FETCH]\n",
			"rules[0].match.methods[1]", 5, `unknown method "FETCH"`},
		{"empty methods", "rules:\n  - name: r\n    action: deny\n    match:\n      path: '*'\n      methods: []\n",
			"rules[0].match.methods", 6, "an empty list never matches"},
		{"empty hosts", "rules:\n  - name: r\n    action: deny\n    match:\n      hosts: []\n",
			"rules[0].match.hosts", 5, "an empty list never matches"},
		{"host with a port", "rules:\n  - name: r\n    action: deny\n    match:\n      hosts: [a.example.com, 'b.example.com:443']\n",
			"rules[0].match.hosts[1]", 5, "is not a host name"},
		{"empty groups", "rules:\n  - name: r\n    action: deny\n    match:\n      groups: []\n",
			"rules[0].match.groups", 5, "an empty list never matches"},
		{"empty not_groups", "rules:\n  - name: r\n    action: deny\n    match:\n      not_groups: []\n",
			"rules[0].match.not_groups", 5, "an empty list always holds"},
		{"empty group name", "rules:\n  - name: r\n    action: deny\n    match:\n      groups: [a, '']\n",
			"rules[0].match.groups[1]", 5, "is not a group name"},
		{"duplicate names", "rules:\n  - name: r\n    action: deny\n    match: {path: '*'}\n  - name: r\n    action: allow\n    match: {path: '*'}\n",
			"rules[1].name", 5, `rule "r" is already defined as rules[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, tt.yaml)
			if err != nil {
				t.Fatalf("config.Load: %v", err)
			}
			_, err = Compile(cfg)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Compile error = %v (%T), want *config.Error", err, err)
			}
			if ce.Key != tt.key || ce.Line != tt.line || ce.File != cfg.File || !strings.Contains(ce.Msg, tt.message) {
				t.Errorf("got %s:%d key %q msg %q; want line %d key %q msg containing %q", ce.File, ce.Line, ce.Key, ce.Msg, tt.line, tt.key, tt.message)
			}
		})
	}
}

// Compile checks what config.Load checks too, for configs built in code.
func TestPolicyCompileWithoutFile(t *testing.T) {
	for _, r := range []config.Rule{
		{Name: "", Action: "deny", Match: config.Match{Path: "*"}},
		{Name: "r", Action: "block", Match: config.Match{Path: "*"}},
		{Name: "r\n", Action: "deny", Match: config.Match{Path: "*"}},
		{Name: "r", Action: "deny", Match: config.Match{Claims: map[string]string{"": "x"}}},
	} {
		_, err := Compile(&config.Config{Rules: []config.Rule{r}})
		var ce *config.Error
		if !errors.As(err, &ce) || ce.File != "" || ce.Line != 0 {
			t.Errorf("Compile(%+v) = %v, want a *config.Error without file:line", r, err)
		}
	}
	p, err := Compile(&config.Config{})
	if err != nil || p.Len() != 0 || p.NeedsBody() {
		t.Errorf("Compile(empty) = %v, %v", p, err)
	}
	var nilPolicy *Policy
	if d := nilPolicy.Decide(req("GET", "h", "/"), nil); d != (Decision{Action: "allow"}) {
		t.Errorf("nil policy: %+v", d)
	}
}

func TestPolicyNeedsBody(t *testing.T) {
	isolate(t)
	if mustCompile(t, "rules: [{name: r, action: deny, match: {path: '*'}}]").NeedsBody() {
		t.Error("NeedsBody without a body rule")
	}
	if !mustCompile(t, "rules: [{name: a, action: deny, match: {path: '*'}}, {name: b, action: deny, match: {body: x}}]").NeedsBody() {
		t.Error("no NeedsBody with a body rule")
	}
}

func TestPolicyExplain(t *testing.T) {
	isolate(t)
	p := mustCompile(t, designRules+`
  - name: env
    action: allow
    match: {methods: [DELETE], headers: {X-Env: '^dev$'}}
  - name: verified
    action: allow
    match: {claims: {email_verified: 'false'}}
`)
	ex := p.Explain(withBody(t, req("DELETE", "crm.example.com", "/v1//deploy", "X-Env", "prod-secret-value"), ""), alice)
	want := []RuleResult{
		{Name: "no-drop-table", Action: "deny", Condition: "body", Why: `no match for '(?i)\bdrop\s+table\b' in the 0-byte body`},
		{Name: "confirm-deletes", Action: "approve", Reason: "deletes data in the CRM", Matched: true, Held: []string{"methods", "hosts"}},
		{Name: "deploy-needs-group", Action: "deny", Held: []string{"path"}, Condition: "not_groups", Why: "the identity is in ml-deployers"},
		{Name: "env", Action: "allow", Held: []string{"methods"}, Condition: "headers.X-Env", Why: `no value matches '^dev$'`},
		{Name: "verified", Action: "allow", Condition: "claims.email_verified", Why: `email_verified is true, not "false"`},
	}
	if len(ex.Rules) != len(want) {
		t.Fatalf("got %d results", len(ex.Rules))
	}
	for i := range want {
		g, w := ex.Rules[i], want[i]
		if g.Name != w.Name || g.Action != w.Action || g.Reason != w.Reason || g.Matched != w.Matched ||
			!slices.Equal(g.Held, w.Held) || g.Condition != w.Condition || g.Why != w.Why {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, g, w)
		}
		if strings.Contains(g.Why, "prod-secret-value") {
			t.Errorf("rule %d echoes a header value: %s", i, g.Why)
		}
	}
	if ex.Decided != 1 || ex.Decision != (Decision{Action: "approve", Rule: "confirm-deletes", Reason: "deletes data in the CRM"}) {
		t.Errorf("decided %d: %+v", ex.Decided, ex.Decision)
	}
	if got := ex.Rules[0].Failure(); got != `body: no match for '(?i)\bdrop\s+table\b' in the 0-byte body` {
		t.Errorf("Failure = %q", got)
	}

	ex = p.Explain(withBody(t, req("GET", "a.example.com", "/"), ""), nil)
	if ex.Decided != -1 || ex.Decision != (Decision{Action: "allow"}) {
		t.Errorf("no match: decided %d: %+v", ex.Decided, ex.Decision)
	}
	if got := ex.Rules[1].Failure(); got != "methods: GET not in [DELETE]" {
		t.Errorf("Failure = %q", got)
	}
}

func TestPolicyGlob(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true},
		{"*", "/anything/at/all", true},
		{"/*", "", false},
		{"/*", "/", true},
		{"/a*b*c", "/abc", true},
		{"/a*b*c", "/a/x/b/y/c", true},
		{"/a*b*c", "/a/x/b/y/cd", false},
		{"/a*b*c", "/acb", false},
		{"*/x", "/a/b/x", true},
		{"/v?/*", "/v1/x", true},
		{"/v?/*", "/v/x", false},
		{"/??", "/é", false},
		{"/?", "/é", true},
		{"/*?", "/é", true},
		{"/*??", "/é", false},
		{"/*é", "/aé", true},
		{"/**/x", "/a/x", true},
		{"/a**", "/a", true},
		{"/exact", "/exact", true},
		{"/exact", "/exact/", false},
		{"/a*a*a*a*a*b", strings.Repeat("/a", 50), false},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.pat)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tt.pat, err)
		}
		if got := g.match(tt.s); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
		if got := globMatch(tt.pat, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v (general path)", tt.pat, tt.s, got, tt.want)
		}
	}
}

func TestPolicyCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "",
		"/":                "/",
		"/a/b":             "/a/b",
		"/.well-known/x":   "/.well-known/x",
		"//a//b/":          "/a/b/",
		"/a/./b":           "/a/b",
		"/a/../../b":       "/b",
		"/a/..":            "/",
		"relative/../path": "relative/../path",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// Decide only reads the policy: it is safe from many goroutines.
func TestPolicyDecideConcurrent(t *testing.T) {
	isolate(t)
	p := mustCompile(t, designRules)
	r := withBody(t, req("DELETE", "crm.example.com", "/"), "")
	done := make(chan bool)
	for range 8 {
		go func() {
			for range 200 {
				if d := p.Decide(r, alice); d.Rule != "confirm-deletes" {
					t.Error(d)
				}
			}
			done <- true
		}()
	}
	for range 8 {
		<-done
	}
}
