package cli_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/cli"
	"github.com/crewgate/crewgate/internal/identity"
)

// -update rewrites the golden files. Other test files of this package may
// define the same flag as a package variable; init runs after those.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata")
	}
}

func policyUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// policyEnv isolates a test from the developer's config, state and
// CREWGATE_* variables, and returns the state directory.
func policyEnv(t *testing.T) string {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CREWGATE_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	return state
}

// runPolicy runs crewgate in-process and renders what the user sees.
func runPolicy(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Main(args, strings.NewReader(stdin), &out, &errOut)
	return fmt.Sprintf("$ crewgate %s\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
}

func policyGolden(t *testing.T, path, got string) {
	t.Helper()
	if policyUpdate() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test ./internal/cli -run Policy -update' to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (-update rewrites it)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestPolicyCheckGolden runs 'policy check' on each config in
// testdata/policy/check and compares with its .golden: bad inputs must exit 4
// and name file:line and the key.
func TestPolicyCheckGolden(t *testing.T) {
	policyEnv(t)
	configs, _ := filepath.Glob(filepath.Join("testdata", "policy", "check", "*.yaml"))
	if len(configs) < 10 {
		t.Fatalf("only %d configs in testdata/policy/check", len(configs))
	}
	for _, cfg := range configs {
		name := strings.TrimSuffix(filepath.Base(cfg), ".yaml")
		t.Run(name, func(t *testing.T) {
			got := runPolicy(t, "", "--config", cfg, "policy", "check")
			policyGolden(t, strings.TrimSuffix(cfg, ".yaml")+".golden", got)
			wantExit := "exit 4\n"
			if name == "ok" {
				wantExit = "exit 0\n"
			} else if !strings.Contains(got, cfg+":") {
				t.Errorf("the error does not name %s:line:\n%s", cfg, got)
			}
			if !strings.Contains(got, wantExit) {
				t.Errorf("want %q:\n%s", wantExit, got)
			}
		})
	}
}

func TestPolicyCheckNoConfigFile(t *testing.T) {
	policyEnv(t)
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"policy", "check"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if out.String() != "ok: 0 rules, 0 upstreams\n" || !strings.Contains(errOut.String(), "no config file") {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

func TestPolicyExplainGolden(t *testing.T) {
	cfg := filepath.Join("testdata", "policy", "explain.yaml")
	sql := filepath.Join("testdata", "policy", "explain", "drop.sql")
	tests := []struct {
		name   string
		login  *identity.Identity // written to the identity cache
		stdin  string
		config string
		args   []string
	}{
		{name: "approve_not_logged_in", args: []string{"DELETE", "https://crm.example.com/v1/contacts/7"}},
		{name: "no_match", args: []string{"GET", "https://crm.example.com/v1/contacts"}},
		{name: "deny_without_group", args: []string{"post", "https://api.example.com:8443/v1/deploy/7?force=1"}},
		{name: "group_allows", args: []string{"POST", "https://api.example.com/v1/deploy", "--group", "staff", "--group", "ml-deployers"}},
		{name: "body_denies", args: []string{"DELETE", "https://crm.example.com/sql", "--body", sql}},
		{name: "body_from_stdin", stdin: strings.Repeat("x", 1<<20) + " drop table t", args: []string{"POST", "crm.example.com/sql", "--body", "-"}},
		{name: "header", args: []string{"PUT", "https://crm.example.com/v1/x", "--header", "X-Env: prod", "--header", "Authorization: Bearer not-shown"}},
		{name: "logged_in_claims", args: []string{"GET", "https://svc.internal.example.com/"},
			login: &identity.Identity{Issuer: "https://idp.example.com", Subject: "alice", Email: "alice@example.com",
				Groups: []string{"staff"}, Claims: map[string]any{"email_verified": false}, TokenStorage: "keyring"}},
		{name: "default_deny", config: filepath.Join("testdata", "policy", "deny.yaml"), args: []string{"DELETE", "https://elsewhere.example.com/"}},
		{name: "bad_url", args: []string{"GET", "ftp://x/y"}},
		{name: "bad_header", args: []string{"GET", "https://x/", "--header", "novalue"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := policyEnv(t)
			if tt.login != nil {
				tt.login.LoggedInAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
				if err := identity.SaveCache(filepath.Join(state, "crewgate", "default", "identity.json"), tt.login); err != nil {
					t.Fatal(err)
				}
			}
			c := cfg
			if tt.config != "" {
				c = tt.config
			}
			args := append([]string{"--config", c, "policy", "explain"}, tt.args...)
			got := runPolicy(t, tt.stdin, args...)
			policyGolden(t, filepath.Join("testdata", "policy", "explain", tt.name+".golden"), got)
			if _, output, _ := strings.Cut(got, "--- stdout"); strings.Contains(output, "not-shown") {
				t.Errorf("explain echoes a header value:\n%s", got)
			}
		})
	}
}

// The explain command agrees with the policy on exit codes of bad rules.
func TestPolicyExplainBadRules(t *testing.T) {
	policyEnv(t)
	got := runPolicy(t, "", "--config", filepath.Join("testdata", "policy", "check", "bad_regex.yaml"), "policy", "explain", "GET", "https://x/")
	if !strings.Contains(got, "exit 4\n") || !strings.Contains(got, "bad_regex.yaml:5: rules[0].match.body") {
		t.Errorf("got:\n%s", got)
	}
}
