package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/ca"
	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/policy"
	"github.com/crewgate/crewgate/internal/proxy"
	"github.com/crewgate/crewgate/internal/session"
)

const policyHint = "fix it, then run 'crewgate policy check' again"

func newPolicyCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check the policy rules and explain their decisions",
		Long: `Rules in the config's 'rules:' list decide what happens to each request the
crew sends: the first rule whose every condition holds decides (allow, deny or
approve); a request that no rule matches is allowed.`,
	}
	cmd.AddCommand(newPolicyCheckCmd(f), newPolicyExplainCmd(f))
	return cmd
}

// policyConfig loads the config, compiles its rules and builds its
// maskers as run would; every error is a config error (exit 4) that names
// file:line.
func (f *factory) policyConfig() (*config.Config, *policy.Policy, error) {
	cfg, err := f.config(nil)
	if err != nil {
		return nil, nil, &exitError{code: exitConfig, err: err, hint: policyHint}
	}
	pol, err := policy.Compile(cfg)
	if err != nil {
		return nil, nil, &exitError{code: exitConfig, err: err, hint: policyHint}
	}
	if err := session.CheckMasks(cfg); err != nil {
		return nil, nil, &exitError{code: exitConfig, err: err, hint: policyHint}
	}
	return cfg, pol, nil
}

func newPolicyCheckCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the config and its rules",
		Long: `Load the config file and compile its rules. Every problem is reported with
the file and line of the offending key (bad regular expression, bad path glob,
unknown method, rule with no condition, duplicate rule name, unknown key, ...)
and exits 4. Prints a one-line summary when all is well.`,
		Example: `  crewgate policy check
  crewgate --config ./crewgate.yaml policy check`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			cfg, pol, err := f.policyConfig()
			if err != nil {
				return err
			}
			if cfg.File == "" {
				fmt.Fprintf(f.errOut, "note: no config file (%s does not exist); checked the defaults\n", config.DefaultFile())
			}
			fmt.Fprintf(f.out, "ok: %s, %s\n", plural(pol.Len(), "rule"), plural(len(cfg.Upstreams), "upstream"))
			return nil
		},
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

type policyExplainOptions struct {
	f *factory

	method  string
	url     string
	body    string   // file name, "-" for stdin
	groups  []string // a synthetic identity with these groups
	headers []string // "Name: value"
}

func newPolicyExplainCmd(f *factory) *cobra.Command {
	opts := &policyExplainOptions{f: f}
	cmd := &cobra.Command{
		Use:   "explain METHOD URL",
		Short: "Show which rule decides a request, and why, without sending it",
		Long: `Evaluate every rule for the request METHOD URL and print, rule by rule,
whether it matched or which condition failed and why, then the decision. It
also says which upstream (if any) the host belongs to, and what default_action
does with a host that belongs to none. Nothing is sent.

The identity is the logged-in one (from the identity cache) unless --group is
given, which makes up an identity with just those groups. Without a login or
--group there is no identity: groups and claims conditions do not match and
not_groups conditions do.

Body conditions see --body (a file, or - for stdin) as the upstream would
understand it, decoded by its --header Content-Encoding and Content-Type, up
to policy.max_body; with no --body the body is empty. The request goes
through the same steps as in 'crewgate run' (route, address checks,
authority, rules), so explain says what run does.`,
		Example: `  crewgate policy explain DELETE https://crm.example.com/v1/contacts/7
  crewgate policy explain POST https://api.example.com/v1/deploy --group ml-deployers
  crewgate policy explain POST https://db.example.com/sql --body query.json --header 'Content-Type: application/json'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.method, opts.url = args[0], args[1]
			return policyExplainRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.body, "body", "", "read the request body from `FILE` ('-' for stdin)")
	fl.StringArrayVar(&opts.groups, "group", nil, "explain for a made-up identity in group `G` (repeatable) instead of the logged-in one")
	fl.StringArrayVar(&opts.headers, "header", nil, "add request header `'NAME: VALUE'` (repeatable)")
	return cmd
}

func policyExplainRun(_ context.Context, opts *policyExplainOptions) error {
	f := opts.f
	req, shown, err := opts.request()
	if err != nil {
		return err
	}
	cfg, pol, err := f.policyConfig()
	if err != nil {
		return err
	}

	var id *identity.Identity
	var who string
	switch {
	case len(opts.groups) > 0:
		id = &identity.Identity{Subject: "(--group)", Groups: opts.groups}
		who = fmt.Sprintf("made up by --group: groups [%s], no claims", strings.Join(opts.groups, " "))
	default:
		id, err = identity.LoadCache(cfg.IdentityFile())
		switch {
		case errors.Is(err, identity.ErrNotLoggedIn):
			id = nil
			who = "none (not logged in): groups and claims conditions do not match, not_groups conditions do"
		case err != nil:
			return &exitError{code: exitFailure, what: "policy explain: reading the identity cache", err: err,
				hint: "run 'crewgate login' to sign in again, or pass --group"}
		default:
			who = id.Subject
			if id.Email != "" {
				who += " <" + id.Email + ">"
			}
			who += fmt.Sprintf(", groups [%s] (logged in)", strings.Join(id.Groups, " "))
		}
	}

	p, err := explainProxy(cfg, pol, id)
	if err != nil {
		return err
	}
	ex := p.Explain(context.Background(), req)
	out := f.out
	fmt.Fprintf(out, "request:  %s %s\n", req.Method, shown)
	if opts.body != "" {
		fmt.Fprintf(out, "body:     %d bytes from %s\n", req.ContentLength, opts.body)
	}
	fmt.Fprintf(out, "identity: %s\n", who)

	switch {
	case ex.Upstream != "":
		fmt.Fprintf(out, "upstream: %s (intercepted: the rules see the method, path, headers and body)\n", ex.Upstream)
	case ex.Step == proxy.StepRoute && ex.Refusal == "egress-denied":
		fmt.Fprintf(out, "upstream: none; default_action deny refuses %s before any rule\n", req.URL.Hostname())
	case ex.Tunnel:
		fmt.Fprintf(out, "upstream: none; default_action tunnel passes %s through uninspected: a tunnel is not inspected, so the rules see only CONNECT and the host (body and path rules cannot apply)\n", req.URL.Hostname())
	case ex.Via == audit.RouteDirect:
		fmt.Fprintf(out, "upstream: none; plain HTTP to %s goes direct, inspected, without a credential\n", req.URL.Hostname())
	default:
		fmt.Fprintln(out, "upstream: none")
	}

	if ex.Unresolved {
		fmt.Fprintf(out, "address:  %s does not resolve here now; run checks its addresses when it dials\n", req.URL.Hostname())
	}
	if rs := ex.Rules; rs != nil {
		if len(rs.Rules) == 0 {
			fmt.Fprintln(out, "rules:    none")
		} else {
			fmt.Fprintln(out, "rules (first match wins):")
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for i, r := range rs.Rules {
				var verdict string
				switch {
				case i == rs.Decided:
					verdict = "MATCH, decides"
				case r.Matched:
					verdict = fmt.Sprintf("match, not reached (rule %d decides)", rs.Decided+1)
				default:
					verdict = "no: " + r.Failure()
				}
				fmt.Fprintf(w, "  %d.\t%s\t%s\t%s\n", i+1, r.Name, r.Action, verdict)
				for _, n := range r.Notes {
					fmt.Fprintf(w, "\t\t\t  %s\n", n)
				}
			}
			w.Flush()
		}
	}

	switch {
	case ex.Refusal != "" && ex.Step == proxy.StepRules && ex.Rules.Decision.Reason == "":
		fmt.Fprintf(out, "decision: deny by rule %s (%d %s)\n", ex.Rule, ex.Status, ex.Refusal)
	case ex.Refusal != "" && ex.Step == proxy.StepRules:
		fmt.Fprintf(out, "decision: deny by rule %s: %s (%d %s)\n", ex.Rule, ex.Reason, ex.Status, ex.Refusal)
	case ex.Refusal != "":
		fmt.Fprintf(out, "decision: deny at step %s: %s (%d %s)\n", ex.Step, ex.Reason, ex.Status, ex.Refusal)
	case ex.Approve && ex.Reason != "":
		fmt.Fprintf(out, "decision: approve by rule %s: %s (run asks a human; no answer, no terminal or a timeout denies)\n", ex.Rule, ex.Reason)
	case ex.Approve:
		fmt.Fprintf(out, "decision: approve by rule %s (run asks a human; no answer, no terminal or a timeout denies)\n", ex.Rule)
	case ex.Rule == "":
		fmt.Fprintln(out, "decision: allow (no rule matched)")
	case ex.Reason != "":
		fmt.Fprintf(out, "decision: allow by rule %s: %s\n", ex.Rule, ex.Reason)
	default:
		fmt.Fprintf(out, "decision: allow by rule %s\n", ex.Rule)
	}
	return nil
}

// explainProxy is the proxy run would build from cfg, with every route and
// rule but no credentials: explain asks it, so it says what run does.
func explainProxy(cfg *config.Config, pol *policy.Policy, id *identity.Identity) (*proxy.Proxy, error) {
	var ups []proxy.Upstream
	var hosts []string
	for _, u := range cfg.Upstreams {
		pu, err := session.RouteOf(cfg, u)
		if err != nil {
			return nil, err
		}
		ups = append(ups, pu)
		hosts = append(hosts, u.Hosts...)
	}
	if len(hosts) == 0 {
		hosts = []string{"crewgate.invalid"}
	}
	sessionCA, err := ca.New(hosts, time.Hour)
	if err != nil {
		return nil, &exitError{code: exitConfig, what: "policy explain", err: err}
	}
	p, err := proxy.New(proxy.Config{Upstreams: ups, DefaultAction: cfg.DefaultAction, CA: sessionCA,
		Credential: randomString(32), Session: "explain", Policy: pol, Identity: id})
	if err != nil {
		return nil, &exitError{code: exitConfig, what: "policy explain", err: err}
	}
	return p, nil
}

// request builds the request from the arguments and flags, and the URL as
// it will be shown.
func (opts *policyExplainOptions) request() (*http.Request, string, error) {
	raw := opts.url
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, "", usageErrorf("policy explain: %q is not an http(s) URL", opts.url)
	}
	method := strings.ToUpper(opts.method)
	if method == "" || strings.ContainsAny(method, " \t/:") {
		return nil, "", usageErrorf("policy explain: %q is not an HTTP method", opts.method)
	}
	if u.Path == "" {
		u.Path = "/" // what a client sends for an empty path
	}
	u.User = nil // never echo credentials from the URL
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		return nil, "", usageErrorf("policy explain: %v", err)
	}
	for _, h := range opts.headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, "", usageErrorf("policy explain: --header %q: use 'NAME: VALUE'", h)
		}
		req.Header.Add(name, strings.TrimSpace(value))
	}
	if opts.body != "" {
		body, err := readBody(opts.f.in, opts.body)
		if err != nil {
			return nil, "", &exitError{code: exitFailure, what: "policy explain: reading --body", err: err, hint: "check the file name"}
		}
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	return req, u.String(), nil
}

// maxExplainBody bounds what explain reads of --body: more than any body
// rule reads.
const maxExplainBody = 64 << 20

// readBody reads name ("-": stdin).
func readBody(stdin io.Reader, name string) ([]byte, error) {
	r := stdin
	if name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		r = file
	}
	if r == nil {
		r = strings.NewReader("")
	}
	return io.ReadAll(io.LimitReader(r, maxExplainBody))
}
