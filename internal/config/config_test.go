package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// isolate keeps the developer's own config and CREWGATE_* variables out.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, EnvPrefix+"_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDesignExample(t *testing.T) {
	isolate(t)
	cfg, err := Load(Options{File: "testdata/design.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "https://idp.example.com/realms/acme" || cfg.ClientID != "crewgate" {
		t.Errorf("issuer/client = %q/%q", cfg.Issuer, cfg.ClientID)
	}
	if len(cfg.Upstreams) != 2 || cfg.Upstreams[1].Credential.Secret != "openai" {
		t.Fatalf("upstreams = %+v", cfg.Upstreams)
	}
	if got := cfg.Upstreams[1].Mask.Request; !slices.Equal(got, []string{"aws_access_key", "private_key"}) {
		t.Errorf("mask.request = %v", got)
	}
	if len(cfg.Rules) != 3 || cfg.Rules[2].Match.NotGroups[0] != "ml-deployers" {
		t.Errorf("rules = %+v", cfg.Rules)
	}
	if cfg.Approval.Timeout != 120*time.Second || cfg.Approval.Headless != "deny" {
		t.Errorf("approval = %+v", cfg.Approval)
	}
	if !slices.Equal(cfg.Mask.Detectors, []string{"default"}) {
		t.Errorf("detectors = %v", cfg.Mask.Detectors)
	}
	wantScopes := []string{"openid", "profile", "email", "offline_access", "crew:run"}
	if got := cfg.LoginScopes(); !slices.Equal(got, wantScopes) {
		t.Errorf("LoginScopes = %v, want %v", got, wantScopes)
	}
	if got := cfg.Resources(); !slices.Equal(got, []string{"https://crewai.internal"}) {
		t.Errorf("Resources = %v", got)
	}
	if cfg.Policy.MaxBody != 8<<20 || cfg.Policy.Oversize != "deny" {
		t.Errorf("policy = %+v", cfg.Policy)
	}
	if cfg.File != "testdata/design.yaml" {
		t.Errorf("File = %q", cfg.File)
	}
}

func TestLoadWithoutFileUsesDefaults(t *testing.T) {
	isolate(t)
	cfg, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "" || cfg.ClientID != "crewgate" || cfg.Profile != "default" || cfg.DefaultAction != "tunnel" {
		t.Errorf("defaults = %+v", cfg)
	}
}

func TestLoadErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"unknown top-level key", "issuer: https://x.example\nclientid: a\n", ":2: clientid: unknown key (did you mean \"client_id\"?)"},
		{"unknown nested key", "approval:\n  timeout: 10s\n  headles: deny\n", ":3: approval.headles: unknown key (did you mean \"headless\"?)"},
		{"unknown key in list item", "upstreams:\n  - name: a\n    hosts: [a.example]\n    credential: {source: oidc}\n    adress: x\n", ":5: upstreams[0].adress: unknown key (did you mean \"address\"?)"},
		{"mistyped duration", "approval:\n  timeout: soon\n", ":2: approval.timeout: \"soon\" is not a duration"},
		{"mistyped bool", "upstreams:\n  - name: a\n    hosts: [a.example]\n    credential: {source: oidc, exchange: maybe}\n", ":4: upstreams[0].credential.exchange: expected true or false"},
		{"list where string expected", "issuer: [a, b]\n", ":1: issuer: expected a string, got a list"},
		{"mapping where list expected", "scopes: {a: b}\n", ":1: scopes: expected a list, got a mapping"},
		{"bad value", "default_action: allow\n", ":1: default_action: \"allow\" is not one of tunnel, deny"},
		{"bad source", "upstreams:\n  - name: a\n    hosts: [a.example]\n    credential:\n      source: oauth\n", ":5: upstreams[0].credential.source: \"oauth\" is not one of oidc, secret"},
		{"secret without name", "upstreams:\n  - name: a\n    hosts: [a.example]\n    credential: {source: secret}\n", ":4: upstreams[0].credential.secret: a secret source needs"},
		{"public-suffix wildcard", "upstreams:\n  - name: a\n    hosts:\n      - '*.com'\n    credential: {source: oidc}\n", ":4: upstreams[0].hosts[0]: host \"*.com\": com is a public suffix"},
		{"public-suffix wildcard, two labels", "upstreams:\n  - {name: a, hosts: ['*.co.uk'], credential: {source: oidc}}\n", ":2: upstreams[0].hosts[0]: host \"*.co.uk\": co.uk is a public suffix"},
		{"bad port", "upstreams:\n  - {name: a, hosts: ['a.example:99999'], credential: {source: oidc}}\n", ":2: upstreams[0].hosts[0]: host \"a.example:99999\": the part after ':' must be a port"},
		{"duplicate host with default port", "upstreams:\n  - {name: a, hosts: [x.example], credential: {source: oidc}}\n  - {name: b, hosts: ['X.example.:443'], credential: {source: oidc}}\n", ":3: upstreams[1].hosts[0]: host \"X.example.:443\" already belongs"},
		{"mask memory too small", "mask:\n  memory: 10KiB\n", ":2: mask.memory: 10KiB is less than 1MiB"},
		{"duplicate host", "upstreams:\n  - {name: a, hosts: [x.example], credential: {source: oidc}}\n  - {name: b, hosts: [x.example], credential: {source: oidc}}\n", ":3: upstreams[1].hosts[0]: host \"x.example\" already belongs to upstream \"a\""},
		{"bad custom regex", "mask:\n  custom:\n    - {name: emp, pattern: 'EMP-(\\d'}\n", ":3: mask.custom[0].pattern: bad regular expression"},
		{"runaway custom pattern", "mask:\n  custom:\n    - {name: a, pattern: 'EMP-\\d{6}'}\n    - name: b\n      pattern: '[a-z0-9.]+@corp'\n", ":5: mask.custom[1].pattern: \"[a-z0-9.]+@corp\" has no upper bound"},
		{"runaway custom pattern, short prefix", "mask:\n  custom:\n    - {name: a, pattern: 'x-.*;'}\n", ":3: mask.custom[0].pattern: \"x-.*;\" has no upper bound"},
		{"bad rule action", "rules:\n  - name: r\n    action: block\n", ":3: rules[0].action: \"block\" is not one of allow, deny, approve"},
		{"duplicate key", "issuer: https://a.example\nissuer: https://b.example\n", ":2: issuer:"},
		{"invalid yaml", "issuer: [unclosed\n", ":1: (file): did not find expected"},
		{"http issuer not a URL", "issuer: idp.example.com\n", ":1: issuer: \"idp.example.com\" is not an http(s) URL"},
		{"mistyped size", "policy:\n  max_body: 8 megs\n", ":2: policy.max_body: \"8 megs\" is not a size like 8MiB, 512KiB or 1048576"},
		{"size as a list", "policy:\n  max_body: [8MiB]\n", ":2: policy.max_body: expected a size like 8MiB"},
		{"size too small", "policy:\n  max_body: 100B\n", ":2: policy.max_body: 100B is not between 1KiB and 256MiB"},
		{"size too large", "policy:\n  max_body: 1GiB\n", ":2: policy.max_body: 1GiB is not between 1KiB and 256MiB"},
		{"size overflows", "policy:\n  max_body: 99999999999999999999GiB\n", ":2: policy.max_body: \"99999999999999999999GiB\" is too large"},
		{"bad oversize", "policy:\n  max_body: 8MiB\n  oversize: pass\n", ":3: policy.oversize: \"pass\" is not one of deny, allow"},
		{"unknown policy key", "policy:\n  maxbody: 8MiB\n", ":2: policy.maxbody: unknown key (did you mean \"max_body\"?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			p := writeConfig(t, tt.body)
			_, err := Load(Options{File: p})
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *config.Error: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), p+":") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant prefix %q and %q", err, p+":", tt.want)
			}
		})
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	isolate(t)
	p := writeConfig(t, "issuer: https://file.example\napproval:\n  timeout: 10s\nscopes: [openid]\n")

	cfg, err := Load(Options{File: p})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "https://file.example" || cfg.Approval.Timeout != 10*time.Second {
		t.Fatalf("file values not used: %+v", cfg)
	}

	t.Setenv("CREWGATE_ISSUER", "https://env.example")
	t.Setenv("CREWGATE_APPROVAL_TIMEOUT", "30s")
	t.Setenv("CREWGATE_SCOPES", "openid,email")
	cfg, err = Load(Options{File: p})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "https://env.example" || cfg.Approval.Timeout != 30*time.Second || !slices.Equal(cfg.Scopes, []string{"openid", "email"}) {
		t.Fatalf("env did not override file: %+v", cfg)
	}

	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("issuer", "", "")
	fs.StringArray("scope", nil, "")
	fs.String("profile", "default", "")
	if err := fs.Parse([]string{"--issuer", "https://flag.example", "--scope", "a", "--scope", "b"}); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(Options{File: p, Flags: map[string]*pflag.Flag{
		"issuer": fs.Lookup("issuer"), "scopes": fs.Lookup("scope"), "profile": fs.Lookup("profile"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "https://flag.example" || !slices.Equal(cfg.Scopes, []string{"a", "b"}) {
		t.Fatalf("flag did not override env: issuer %q scopes %v", cfg.Issuer, cfg.Scopes)
	}
	if cfg.Profile != "default" {
		t.Errorf("an unchanged flag overrode the default profile: %q", cfg.Profile)
	}
}

func TestBadEnvironmentValueNamesVariable(t *testing.T) {
	isolate(t)
	t.Setenv("CREWGATE_APPROVAL_TIMEOUT", "forever")
	_, err := Load(Options{})
	if err == nil || !strings.Contains(err.Error(), "CREWGATE_APPROVAL_TIMEOUT (approval.timeout): \"forever\" is not a duration") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("CREWGATE_APPROVAL_TIMEOUT", "")
	os.Unsetenv("CREWGATE_APPROVAL_TIMEOUT")
	t.Setenv("CREWGATE_DEFAULT_ACTION", "open")
	_, err = Load(Options{})
	if err == nil || !strings.Contains(err.Error(), "default_action: \"open\" is not one of tunnel, deny") {
		t.Fatalf("err = %v", err)
	}
}

func TestPolicyBodyKeys(t *testing.T) {
	isolate(t)
	cfg, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.MaxBody != 8<<20 || cfg.Policy.Oversize != "deny" {
		t.Errorf("defaults: %+v", cfg.Policy)
	}
	p := writeConfig(t, "policy:\n  max_body: 512 KiB\n  oversize: allow\n")
	if cfg, err = Load(Options{File: p}); err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.MaxBody != 512<<10 || cfg.Policy.Oversize != OversizeAllow {
		t.Errorf("from the file: %+v", cfg.Policy)
	}
	t.Setenv("CREWGATE_POLICY_MAX_BODY", "16MiB")
	if cfg, err = Load(Options{File: p}); err != nil || cfg.Policy.MaxBody != 16<<20 {
		t.Errorf("from the environment: %+v, %v", cfg.Policy, err)
	}
	t.Setenv("CREWGATE_POLICY_MAX_BODY", "lots")
	if _, err := Load(Options{File: p}); err == nil || !strings.Contains(err.Error(), `CREWGATE_POLICY_MAX_BODY (policy.max_body): "lots" is not a size`) {
		t.Errorf("bad size in the environment: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"0": 0, "1048576": 1 << 20, "8MiB": 8 << 20, " 512 KiB ": 512 << 10, "1GiB": 1 << 30, "10MB": 10e6, "3kB": 3000, "3KB": 3000, "7B": 7,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "8 megs", "-1", "1.5MiB", "8mib", "MiB", "8 MiB B"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
	for s, want := range map[Size]string{8 << 20: "8MiB", 1500: "1500B", 1 << 30: "1GiB", 0: "0B", 3 << 10: "3KiB"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
		if back, err := ParseSize(want); err != nil || back != s {
			t.Errorf("ParseSize(%q) = %d, %v", want, back, err)
		}
	}
}

func TestConfigFileFromEnvAndMissingExplicitFile(t *testing.T) {
	isolate(t)
	p := writeConfig(t, "client_id: from-env-file\n")
	t.Setenv("CREWGATE_CONFIG", p)
	cfg, err := Load(Options{})
	if err != nil || cfg.ClientID != "from-env-file" || cfg.File != p {
		t.Fatalf("cfg=%+v err=%v", cfg, err)
	}
	_, err = Load(Options{File: filepath.Join(t.TempDir(), "nope.yaml")})
	if err == nil || !strings.Contains(err.Error(), "cannot read the config file") {
		t.Fatalf("missing explicit file: err = %v", err)
	}
}

func TestDefaultFileLocation(t *testing.T) {
	isolate(t)
	dir := os.Getenv("XDG_CONFIG_HOME")
	if err := os.MkdirAll(filepath.Join(dir, "crewgate"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "crewgate", "config.yaml")
	if err := os.WriteFile(p, []byte("groups_claim: roles\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{})
	if err != nil || cfg.GroupsClaim != "roles" || cfg.File != p {
		t.Fatalf("cfg=%+v err=%v", cfg, err)
	}
}

func TestProfileAndLogLevel(t *testing.T) {
	isolate(t)
	t.Setenv("CREWGATE_PROFILE", "work")
	t.Setenv("XDG_STATE_HOME", "/state")
	cfg, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RefreshTokenAccount() != "work/refresh_token" || cfg.SecretAccount("openai") != "work/secret/openai" {
		t.Errorf("accounts: %q %q", cfg.RefreshTokenAccount(), cfg.SecretAccount("openai"))
	}
	if cfg.IdentityFile() != filepath.Join("/state", "crewgate", "work", "identity.json") {
		t.Errorf("identity file: %q", cfg.IdentityFile())
	}
	t.Setenv("CREWGATE_PROFILE", "../etc")
	if _, err := Load(Options{}); err == nil {
		t.Error("a profile name with a path separator was accepted")
	}
	t.Setenv("CREWGATE_PROFILE", "")
	os.Unsetenv("CREWGATE_PROFILE")
	t.Setenv("CREWGATE_LOG_LEVEL", "loud")
	if _, err := Load(Options{}); err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Errorf("bad log level: err = %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	seed, _ := os.ReadFile("testdata/design.yaml")
	f.Add(string(seed))
	f.Add("issuer: [a\n")
	f.Add("upstreams: [{name: a, hosts: [b], credential: {source: secret, secret: c}}]\n")
	f.Add("mask: {detectors: default, custom: [{name: x, pattern: 'a+'}]}\n")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(Options{File: p})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a *config.Error: %v", err)
			}
			return
		}
		if cfg.ClientID == "" {
			t.Fatal("loaded config has no client_id")
		}
	})
}

// TestBoundedCustomPatternsLoad: what the runaway check lets through, a
// bound or a fixed start, and what it refuses.
func TestBoundedCustomPatternsLoad(t *testing.T) {
	for pattern, ok := range map[string]bool{
		`sk-[A-Za-z0-9]+`:            true, // a fixed start of 3
		`[a-z0-9.]{1,64}@corp`:       true, // bounded
		`(?i)\b[a-z]{2,5}-\d{3,5}\b`: true,
		`EMP-\d{6}`:                  true,
		`(?i)sk-[a-z]+`:              false, // folded: no fixed start
		`[a-z]+`:                     false,
		`ab\d{2,}`:                   false,
	} {
		isolate(t)
		_, err := Load(Options{File: writeConfig(t, "mask:\n  custom:\n    - {name: c, pattern: '"+pattern+"'}\n")})
		if (err == nil) != ok {
			t.Errorf("%s: %v", pattern, err)
		}
	}
}
