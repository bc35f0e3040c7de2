package policy

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/reqbody"
)

// FuzzCompile feeds random config YAML through config.Load and Compile: they
// never panic, every error is a *config.Error, a Compile error names the file
// and a line in it, and a compiled policy decides the same in Decide and
// Explain. The seed corpus is in testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	isolate(f)
	f.Add(designRules)
	f.Add("rules: [{name: r, action: deny, match: {path: '/v?/*', hosts: ['*.example.com'], methods: [get]}}]")
	f.Add("rules: [{name: r, action: allow, match: {headers: {X-Env: '^prod$'}, claims: {roles: admin}}}]")
	f.Add("rules:\n  - name: r\n    action: approve\n    match: {groups: [a], not_groups: [b], body: '(?i)drop'}\n")
	dir := f.TempDir()
	h := http.Header{"Content-Type": {"application/json"}, "X-Http-Method-Override": {"put, DELETE"}}
	view, _ := reqbody.Decode(h, []byte(`{"q":"drop\u0020table t"}`), 1<<20)
	reqs := []*Request{
		{Method: "GET", Host: "api.example.com", Path: "/v1/x", Header: http.Header{"X-Env": {"prod"}}},
		{Method: "POST", Host: "crm.example.com", Path: "/v1//deploy/../x", Header: h, Body: view},
		{Method: "POST", Host: "crm.example.com", Path: "/v1//deploy/../x", Header: h},
		{Method: "CONNECT", Host: "example.com", Path: ""},
	}
	ids := []*identity.Identity{nil, alice, bob}
	f.Fuzz(func(t *testing.T, yaml string) {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(config.Options{File: path})
		var ce *config.Error
		if err != nil {
			if !errors.As(err, &ce) {
				t.Fatalf("config.Load error %v is a %T, not a *config.Error", err, err)
			}
			return
		}
		p, err := Compile(cfg)
		if err != nil {
			if !errors.As(err, &ce) {
				t.Fatalf("Compile error %v is a %T, not a *config.Error", err, err)
			}
			if ce.File != path || ce.Line <= 0 || ce.Key == "" || ce.Msg == "" {
				t.Fatalf("Compile error without file:line or key: %+v", ce)
			}
			return
		}
		for _, r := range reqs {
			for _, id := range ids {
				d := p.Decide(r, id)
				if ex := p.Explain(r, id); ex.Decision != d {
					t.Fatalf("Decide = %+v, Explain = %+v", d, ex.Decision)
				}
			}
		}
	})
}
