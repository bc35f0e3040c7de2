package policy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// tenRules is ten realistic rules of which only the last matches benchReq.
const tenRules = `
rules:
  - {name: no-drop-table, action: deny, match: {methods: [POST, PUT], path: '/sql*', headers: {Content-Type: 'json'}}}
  - {name: confirm-deletes, action: approve, match: {hosts: [crm.example.com], methods: [DELETE]}}
  - {name: deploy-needs-group, action: deny, match: {path: '/v1/deploy*', not_groups: [ml-deployers]}}
  - {name: prod-header, action: deny, match: {headers: {X-Env: '^prod$'}}}
  - {name: internal, action: allow, match: {hosts: ['*.internal.example.com']}}
  - {name: admins, action: allow, match: {groups: [admins], path: '/admin/*'}}
  - {name: verified, action: deny, match: {claims: {email_verified: 'false'}, methods: [POST]}}
  - {name: billing, action: approve, match: {path: '/v?/billing/*', hosts: [api.example.com]}}
  - {name: uploads, action: approve, match: {methods: [PUT], path: '*/upload'}}
  - {name: models, action: deny, reason: "no fine-tuning", match: {hosts: [api.openai.com], methods: [POST], path: '/v1/fine_tuning/*'}}
`

var benchReq = &Request{
	Method: "POST", Host: "api.openai.com", Path: "/v1/fine_tuning/jobs",
	Header: http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer x"}},
}

// BenchmarkDecide: 10 rules, a request that only the last one matches.
func BenchmarkDecide(b *testing.B) {
	isolate(b)
	p := mustCompile(b, tenRules)
	if d := p.Decide(benchReq, bob); d.Rule != "models" {
		b.Fatalf("decided by %q", d.Rule)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(benchReq, bob)
	}
}

// BenchmarkDecide100 is the budget case: 100 rules without body
// conditions, none matching (every rule is evaluated); the budget is 5 µs.
func BenchmarkDecide100(b *testing.B) {
	isolate(b)
	var sb strings.Builder
	sb.WriteString("rules:\n")
	body, _ := strings.CutPrefix(tenRules, "\nrules:\n")
	lines := strings.Split(strings.Trim(body, "\n"), "\n")
	for i := range 100 {
		l := strings.Replace(lines[i%10], "name: ", fmt.Sprintf("name: r%d-", i), 1)
		l = strings.Replace(l, "api.openai.com", "api.other.example", 1)
		sb.WriteString(l + "\n")
	}
	p := mustCompile(b, sb.String())
	if d := p.Decide(benchReq, bob); d.Rule != "" {
		b.Fatalf("decided by %q", d.Rule)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(benchReq, bob)
	}
}

// BenchmarkDecideNoBodyRule is a request whose body no rule reaches: a
// body rule exists but its other conditions fail, so Decide decides without
// the body; it must not allocate.
func BenchmarkDecideNoBodyRule(b *testing.B) {
	isolate(b)
	p := mustCompile(b, tenRules+`  - {name: sql, action: deny, match: {hosts: [db.example.com], body: '(?i)\bdrop\s+table\b'}}
`)
	if d := p.Decide(benchReq, bob); d.Rule != "models" || d.NeedsBody {
		b.Fatalf("decided %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(benchReq, bob)
	}
}

// bodyBenchSize is the body size BenchmarkDecideBody matches.
const bodyBenchSize = 1 << 20

// BenchmarkDecideBody measures a body condition over a 1 MiB body that does
// not match, the throughput of body matching: "clean" lacks one of the
// words the pattern needs (the prefilter rejects it), "near-miss" has both
// words, so the regexp engine runs over the whole body. The "json-" cases
// are NDJSON chat messages, so their decoded strings are matched too.
func BenchmarkDecideBody(b *testing.B) {
	isolate(b)
	p := mustCompile(b, `rules: [{name: no-drop-table, action: deny, match: {body: '(?i)\bdrop\s+table\b'}}]`)
	for _, bc := range []struct{ name, chunk, ct string }{
		{"clean", "Please summarise the quarterly drops in revenue by region.\n", "text/plain"},
		{"near-miss", "Please summarise the quarterly table of drops in revenue.\n", "text/plain"},
		{"json-clean", `{"role":"user","content":"Please summarise the quarterly drops in revenue by region."}` + "\n", "application/x-ndjson"},
		{"json-near-miss", `{"role":"user","content":"Please summarise the quarterly table of drops in revenue."}` + "\n", "application/x-ndjson"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := withBody(b, req("POST", "h", "/", "Content-Type", bc.ct), strings.Repeat(bc.chunk, bodyBenchSize/len(bc.chunk)+1)[:bodyBenchSize])
			if d := p.Decide(r, nil); d.Rule != "" {
				b.Fatalf("decided by %q", d.Rule)
			}
			b.SetBytes(bodyBenchSize)
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(r, nil)
			}
		})
	}
}
