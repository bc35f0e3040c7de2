// Package config turns crewgate's YAML file, CREWGATE_* environment variables
// and command-line flags, in that order of precedence, into a typed Config.
//
// It is the only package that touches viper. The file is first walked as a
// YAML node tree against the Config schema so that an unknown or mistyped key
// is reported with its file, line and dotted key; viper then merges the
// environment and flags on top.
package config

import (
	"fmt"
	"net/url"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/crewgate/crewgate/internal/authority"
)

// Config is crewgate's whole configuration. Field tags name the YAML keys;
// DESIGN.md documents each of them.
type Config struct {
	Issuer        string   `yaml:"issuer"`
	ClientID      string   `yaml:"client_id"`
	Scopes        []string `yaml:"scopes"`
	GroupsClaim   string   `yaml:"groups_claim"`
	AudienceParam string   `yaml:"audience_param"`
	DefaultAction string   `yaml:"default_action"`
	// KeepEnv names keyring-access variables (DBUS_SESSION_BUS_ADDRESS,
	// SSH_AUTH_SOCK, ...) that `run` leaves in the child's environment.
	KeepEnv []string `yaml:"keep_env"`

	Upstreams []Upstream `yaml:"upstreams"`
	Rules     []Rule     `yaml:"rules"`
	Policy    Policy     `yaml:"policy"`
	Mask      Mask       `yaml:"mask"`
	Approval  Approval   `yaml:"approval"`
	Audit     Audit      `yaml:"audit"`

	// Set by Load, not by the file.
	File     string `yaml:"-"` // the config file read, "" when none exists
	Profile  string `yaml:"-"`
	LogLevel string `yaml:"-"`

	lines map[string]int // dotted key -> line in File, for validation errors
}

// Upstream is a service the crew calls through crewgate.
type Upstream struct {
	Name       string       `yaml:"name"`
	Hosts      []string     `yaml:"hosts"`
	Credential Credential   `yaml:"credential"`
	CAFile     string       `yaml:"ca_file"`
	Address    string       `yaml:"address"`
	Env        []string     `yaml:"env"`
	Mask       UpstreamMask `yaml:"mask"`
}

// Credential says where an upstream's credential comes from and how it is sent.
type Credential struct {
	Source   string   `yaml:"source"` // oidc | secret
	Secret   string   `yaml:"secret"`
	Header   string   `yaml:"header"`
	Format   string   `yaml:"format"`
	Scopes   []string `yaml:"scopes"`
	Audience string   `yaml:"audience"`
	Exchange bool     `yaml:"exchange"`
}

// UpstreamMask overrides masking for one upstream.
type UpstreamMask struct {
	Request  []string `yaml:"request"`
	Response []string `yaml:"response"`
}

// Rule is one policy rule; the first matching rule decides.
type Rule struct {
	Name   string `yaml:"name"`
	Action string `yaml:"action"` // allow | deny | approve
	Reason string `yaml:"reason"`
	Match  Match  `yaml:"match"`
}

// Match holds a rule's conditions; every condition set must hold.
type Match struct {
	Hosts     []string          `yaml:"hosts"`
	Methods   []string          `yaml:"methods"`
	Path      string            `yaml:"path"`
	Headers   map[string]string `yaml:"headers"`
	Body      string            `yaml:"body"`
	Groups    []string          `yaml:"groups"`
	NotGroups []string          `yaml:"not_groups"`
	Claims    map[string]string `yaml:"claims"`
}

// Policy configures how rules read request bodies.
type Policy struct {
	// MaxBody bounds a body rules read, as sent and after decoding
	// (Content-Encoding, charsets, escapes); a larger body is oversize.
	MaxBody Size `yaml:"max_body"`
	// Oversize says what happens to a body that rules cannot read (over
	// MaxBody, or not decodable) when a body rule could apply: "deny"
	// (refused, body-uninspectable) or "allow" (let through, audited).
	Oversize string `yaml:"oversize"`
}

// Values of policy.oversize.
const (
	OversizeDeny  = "deny"
	OversizeAllow = "allow"
)

// DefaultMaxBody is policy.max_body when the config does not set it.
const DefaultMaxBody Size = 8 << 20

// maxMaxBody bounds policy.max_body: a body is held in memory whole, and a
// view of it a few times over.
const maxMaxBody Size = 256 << 20

// Mask configures response (and optional request) masking.
type Mask struct {
	Detectors   []string       `yaml:"detectors"` // "default", "secrets" (the gitleaks rules), "none", built-in names or gitleaks rule ids
	JSONFields  []string       `yaml:"json_fields"`
	Custom      []CustomDetect `yaml:"custom"`
	Replacement string         `yaml:"replacement"`
	// Memory bounds the bodies crewgate holds at once, across all requests
	// (today: request bodies a rule reads, and their decoded views).
	Memory Size `yaml:"memory"`
}

// DefaultMaskMemory is mask.memory when the config does not set it.
const DefaultMaskMemory Size = 256 << 20

// CustomDetect is a user-defined regular-expression detector.
type CustomDetect struct {
	Name    string `yaml:"name"`
	Pattern string `yaml:"pattern"`
}

// Approval configures just-in-time approval.
type Approval struct {
	Timeout  time.Duration `yaml:"timeout"`
	Headless string        `yaml:"headless"` // deny | fail
}

// Audit configures session recording.
type Audit struct {
	Dir string `yaml:"dir"`
	// OnError says what a run does when its session log cannot be written
	// (disk full or failing, recorder overwhelmed): "stop" the run or
	// "continue" without a complete log, loudly either way.
	OnError string `yaml:"on_error"`
	// OTLPEndpoint, when set, is an OTLP/HTTP logs endpoint that receives a
	// copy of every event; the local file stays the source of truth.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
}

// Defaults returns the configuration used where nothing else is set.
func Defaults() Config {
	return Config{
		ClientID:      "crewgate",
		Scopes:        []string{"openid", "profile", "email", "offline_access"},
		GroupsClaim:   "groups",
		AudienceParam: "resource",
		DefaultAction: "tunnel",
		Mask: Mask{
			Detectors:   []string{"default"},
			Replacement: "[MASKED:{{.Name}}]",
			Memory:      DefaultMaskMemory,
		},
		Policy:   Policy{MaxBody: DefaultMaxBody, Oversize: OversizeDeny},
		Approval: Approval{Timeout: 120 * time.Second, Headless: "deny"},
		Audit:    Audit{OnError: "stop"},
	}
}

// LoginScopes is every scope login asks for: the configured scopes plus each
// scope an oidc upstream names, so that later narrowing stays within the grant.
func (c *Config) LoginScopes() []string {
	scopes := slices.Clone(c.Scopes)
	for _, u := range c.Upstreams {
		if u.Credential.Source == "oidc" {
			scopes = append(scopes, u.Credential.Scopes...)
		}
	}
	return uniq(scopes)
}

// Resources is every audience an oidc upstream names, sent as RFC 8707
// resource indicators (or as AudienceParam) at login and on refresh.
func (c *Config) Resources() []string {
	var out []string
	for _, u := range c.Upstreams {
		if u.Credential.Source == "oidc" && u.Credential.Audience != "" {
			out = append(out, u.Credential.Audience)
		}
	}
	return uniq(out)
}

func uniq(in []string) []string {
	var out []string
	for _, s := range in {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

// validate checks what the schema cannot: allowed values, references and
// shapes. Errors name the key and, when it came from the file, file:line.
func (c *Config) validate() error {
	if c.Issuer != "" {
		if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return c.errorf("issuer", "%q is not an http(s) URL", c.Issuer)
		}
	}
	if c.ClientID == "" {
		return c.errorf("client_id", "must not be empty")
	}
	if err := c.oneOf("default_action", c.DefaultAction, "tunnel", "deny"); err != nil {
		return err
	}
	if err := c.oneOf("audience_param", c.AudienceParam, "resource", "audience"); err != nil {
		return err
	}
	if err := c.oneOf("approval.headless", c.Approval.Headless, "deny", "fail"); err != nil {
		return err
	}
	if err := c.oneOf("audit.on_error", c.Audit.OnError, "stop", "continue"); err != nil {
		return err
	}
	if err := c.oneOf("policy.oversize", c.Policy.Oversize, OversizeDeny, OversizeAllow); err != nil {
		return err
	}
	if c.Mask.Memory < 1<<20 {
		return c.errorf("mask.memory", "%s is less than 1MiB", c.Mask.Memory)
	}
	if c.Policy.MaxBody < 1<<10 || c.Policy.MaxBody > maxMaxBody {
		return c.errorf("policy.max_body", "%s is not between 1KiB and %s", c.Policy.MaxBody, maxMaxBody)
	}
	if c.Audit.OTLPEndpoint != "" {
		if u, err := url.Parse(c.Audit.OTLPEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return c.errorf("audit.otlp_endpoint", "%q is not an http(s) URL", c.Audit.OTLPEndpoint)
		}
	}
	if c.Approval.Timeout <= 0 {
		return c.errorf("approval.timeout", "must be a positive duration like 120s")
	}
	if c.Mask.Replacement != "" {
		if _, err := template.New("replacement").Parse(c.Mask.Replacement); err != nil {
			return c.errorf("mask.replacement", "bad template: %v", err)
		}
	}
	for i, d := range c.Mask.Custom {
		key := fmt.Sprintf("mask.custom[%d]", i)
		if !nameRE.MatchString(d.Name) {
			return c.errorf(key+".name", "%q must be lower-case letters, digits, '_', '-' or '.'", d.Name)
		}
		re, err := regexp.Compile(d.Pattern)
		if err != nil || d.Pattern == "" {
			return c.errorf(key+".pattern", "bad regular expression %q: %v", d.Pattern, err)
		}
		if runaway(re) {
			return c.errorf(key+".pattern", "%q has no upper bound and no fixed start of %d or more characters, so masking would "+
				"try it at nearly every byte, reading up to 1 KiB each time: bound the repeat (e.g. {1,64}) or start it with a fixed prefix",
				d.Pattern, minPrefix)
		}
	}
	names := map[string]bool{}
	hosts := map[string]string{}
	for i, u := range c.Upstreams {
		key := fmt.Sprintf("upstreams[%d]", i)
		if !nameRE.MatchString(u.Name) {
			return c.errorf(key+".name", "%q must be lower-case letters, digits, '_', '-' or '.'", u.Name)
		}
		if names[u.Name] {
			return c.errorf(key+".name", "upstream %q is defined twice", u.Name)
		}
		names[u.Name] = true
		if len(u.Hosts) == 0 {
			return c.errorf(key+".hosts", "upstream %q needs at least one host", u.Name)
		}
		for j, h := range u.Hosts {
			pat, err := authority.ParsePattern(h)
			if err != nil {
				return c.errorf(fmt.Sprintf("%s.hosts[%d]", key, j), "%v (want a host name or *.suffix, optionally with :port)", err)
			}
			// A bare name stands for 443 (and 80 for plain HTTP): it
			// overlaps the same name with either port.
			ports := []string{pat.Port}
			if pat.Port == "" {
				ports = []string{authority.HTTPS, authority.HTTP}
			}
			for _, port := range ports {
				k := pat
				k.Port = port
				if other, dup := hosts[k.String()]; dup {
					return c.errorf(fmt.Sprintf("%s.hosts[%d]", key, j), "host %q already belongs to upstream %q", h, other)
				}
				hosts[k.String()] = u.Name
			}
		}
		cred := u.Credential
		switch cred.Source {
		case "oidc":
			if cred.Secret != "" {
				return c.errorf(key+".credential.secret", "only a secret source takes a secret name")
			}
		case "secret":
			if !nameRE.MatchString(cred.Secret) {
				return c.errorf(key+".credential.secret", "a secret source needs the secret's name (set with 'crewgate secret set NAME')")
			}
			if len(cred.Scopes) > 0 || cred.Audience != "" || cred.Exchange {
				return c.errorf(key+".credential", "scopes, audience and exchange apply only to source: oidc")
			}
		default:
			return c.errorf(key+".credential.source", "%q is not one of oidc, secret", cred.Source)
		}
		if cred.Format != "" {
			if _, err := template.New("format").Parse(cred.Format); err != nil {
				return c.errorf(key+".credential.format", "bad template: %v", err)
			}
		}
		for j, e := range u.Env {
			if !envRE.MatchString(e) {
				return c.errorf(fmt.Sprintf("%s.env[%d]", key, j), "%q is not an environment variable name", e)
			}
		}
	}
	for i, r := range c.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		if r.Name == "" {
			return c.errorf(key+".name", "every rule needs a name")
		}
		if err := c.oneOf(key+".action", r.Action, "allow", "deny", "approve"); err != nil {
			return err
		}
	}
	return nil
}

var envRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// minPrefix is the shortest fixed start that makes a custom pattern rare
// enough to try wherever it occurs.
const minPrefix = 3

// runaway reports whether a custom masking pattern is unbounded (its
// matches have no longest length) without a fixed start of minPrefix
// bytes. Masking tries a pattern at each byte it may start with and reads
// up to 1 KiB from there; such a pattern costs that at nearly every byte
// of a long run it nearly matches (`[a-z0-9]+@corp` on a base64 blob).
func runaway(re *regexp.Regexp) bool {
	if p, _ := re.LiteralPrefix(); len(p) >= minPrefix {
		return false
	}
	syn, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return false
	}
	return unbounded(syn.Simplify())
}

func unbounded(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus:
		return true
	case syntax.OpRepeat:
		if re.Max < 0 {
			return true
		}
	}
	return slices.ContainsFunc(re.Sub, unbounded)
}

func (c *Config) oneOf(key, v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return c.errorf(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

func (c *Config) errorf(key, format string, args ...any) error {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if line, ok := c.lookupLine(key); ok {
		e.File, e.Line = c.File, line
	}
	return e
}

// lookupLine finds the line of key, or of its nearest parent present in the file.
func (c *Config) lookupLine(key string) (int, bool) {
	for k := key; k != ""; {
		if line, ok := c.lines[k]; ok {
			return line, true
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0, false
}

// Line returns the line in File where key is set, for other packages'
// validation errors (policy rules, masking patterns); 0 when not from the file.
func (c *Config) Line(key string) int {
	line, _ := c.lookupLine(key)
	return line
}

// Error is an invalid configuration value. File and Line are set when the
// value came from the config file; Source names the env var or flag otherwise.
type Error struct {
	File   string
	Line   int
	Key    string
	Source string
	Msg    string
}

func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
	case e.Source != "":
		return fmt.Sprintf("%s (%s): %s", e.Source, e.Key, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.Key, e.Msg)
	}
}
