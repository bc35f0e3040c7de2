package cli

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/authority"
	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/creds"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/policy"
	"github.com/crewgate/crewgate/internal/proxy"
	"github.com/crewgate/crewgate/internal/runner"
	"github.com/crewgate/crewgate/internal/session"
	"github.com/crewgate/crewgate/internal/tui"
)

type runOptions struct {
	f    *factory
	args []string

	noTUI bool
}

func newRunCmd(f *factory) *cobra.Command {
	opts := &runOptions{f: f}
	cmd := &cobra.Command{
		Use:   "run -- COMMAND [ARG...]",
		Short: "Run a crew behind crewgate's proxy: it never holds a real credential",
		Long: `Run COMMAND behind a localhost proxy that only it can use.

The child gets HTTP(S)_PROXY pointing at crewgate, a CA bundle that trusts the
session's own CA for the configured upstreams, and placeholders instead of
credentials in each upstream's env variables. crewgate swaps the placeholders
for the real credential on the wire (a keyring secret, or a short-lived OIDC
access token narrowed to the upstream's scopes), masks secrets in responses as
they stream, and refuses what it must: hosts no upstream claims when
default_action is deny, link-local and cloud metadata addresses, placeholders
sent to the wrong host, and what the policy rules deny.

Requests an approve rule matches wait for you: on a terminal, the crew runs on
a pseudo-terminal crewgate relays and the prompt appears under its output
(a allow once, s allow the same rule, method, host, port and path for the
session, d or Esc deny); with --no-tui or
without a terminal, answer with 'crewgate approve' from another terminal.
No answer in time, no terminal and shutdown all deny.

Every session is recorded in a hash-chained log ('crewgate sessions').
crewgate exits with the child's exit code (128+N when it died of signal N).`,
		Example: `  crewgate run -- python3 crew.py
  crewgate run -- curl https://api.openai.com/v1/models`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(flagMap(cmd, "approval.timeout", "approve-timeout"))
			if err != nil {
				return err
			}
			opts.args = args
			return runRun(cmd.Context(), opts, cfg)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().Duration("approve-timeout", 0, "how long an approval prompt waits before it denies (config key approval.timeout, default 120s)")
	cmd.Flags().BoolVar(&opts.noTUI, "no-tui", false, "leave the terminal to the crew; answer approvals with 'crewgate approve' from another terminal")
	return cmd
}

func runRun(ctx context.Context, opts *runOptions, cfg *config.Config) error {
	f := opts.f
	if s := os.Getenv("CREWGATE_SESSION"); s != "" {
		return &exitError{code: exitFailure, what: "run", err: fmt.Errorf("already inside crewgate session %s", s),
			hint: "run the command directly: it already goes through crewgate's proxy"}
	}
	sessionID := newSessionID(f.now())

	// The config's own errors (file:line) come before any credential.
	if _, err := policy.Compile(cfg); err != nil {
		return err
	}
	// The identity feeds policy conditions, prompts and the log; a run
	// without an oidc upstream may have none.
	id, _ := identity.LoadCache(cfg.IdentityFile())

	run, err := session.Start(ctx, session.Options{
		Config: cfg, ID: sessionID, Args: opts.args, Env: os.Environ(), Logger: slog.Default(),
		Credentials: runCredentials{f, cfg}, Identity: id, Version: versionString(),
		Warn: func(err error) { fmt.Fprintf(f.errOut, "crewgate: %v\n", err) },
	})
	if err != nil {
		return runError(err)
	}
	code := exitFailure
	defer func() { run.Finish(code) }() // also when the crew could not start
	p, queue := run.Proxy, run.Queue
	warnNoProxy(f, cfg)

	child := runner.Cmd{
		Args:       opts.args,
		Env:        run.Env,
		Stdin:      f.in,
		Stdout:     f.out,
		Stderr:     f.errOut,
		Foreground: foreground(f.in),
	}
	// On a terminal the crew runs on a pseudo-terminal crewgate relays, so
	// prompts can take the keyboard without racing the crew's own reads.
	// Without one (or with --no-tui) the crew gets stdio untouched and
	// approvals wait for 'crewgate approve' or are denied.
	var relay *tui.Relay
	if in, out, ok := terminals(f); ok && !opts.noTUI {
		relay, err = tui.Start(tui.Options{
			Source: queueSource{queue},
			Status: func() tui.Status {
				st := p.Stats()
				return tui.Status{Session: sessionID, Requests: st.Requests, Denied: st.Denied, Masked: st.Masked}
			},
			In: in, Out: out, Color: os.Getenv("NO_COLOR") == "",
		})
		if err != nil {
			return &exitError{code: exitFailure, what: "run: taking the terminal", err: err, hint: "run with --no-tui to leave the terminal to the crew"}
		}
		defer relay.Close() // also on a panic: the terminal must come back
		queue.SetHeadless(false)
		tty := relay.TTY()
		child.Stdin, child.Stderr, child.TTY, child.Foreground = tty, tty, tty, false
		// A crew whose output the user redirected keeps writing there.
		if isTerminal(f.out) {
			child.Stdout = tty
		}
	}

	// The child's signals are the runner's business: a Ctrl-C must not stop
	// the proxy before the child has finished with it.
	code, err = runner.Run(run.Context(), child)
	if relay != nil {
		relay.Close() // restore the terminal before the summary line
	}
	st := run.Finish(code)
	fmt.Fprintf(f.errOut, "crewgate: session %s: %d requests, %d denied, %d masked; log: %s\n", sessionID, st.Requests, st.Denied, st.Masked, run.Recorder.Path())
	if err != nil {
		return &exitError{code: code, what: "run", err: err, hint: "check the command name and that it is on PATH"}
	}
	if reason := run.Stopped(); reason != nil {
		return &exitError{code: exitFailure, what: "run", err: reason}
	}
	if code != 0 {
		return silentExit(code)
	}
	return nil
}

// runError maps session.Start's failures to exit codes and hints, once.
func runError(err error) error {
	var se *session.Error
	if !errors.As(err, &se) {
		return err
	}
	code := exitFailure
	if se.Config {
		code = exitConfig
	}
	return &exitError{code: code, what: "run: " + se.What, err: se.Err, hint: se.Hint}
}

// terminals returns crewgate's stdin and stderr when both are terminals:
// then a human is there to answer prompts.
func terminals(f *factory) (in, out *os.File, ok bool) {
	in, okIn := f.in.(*os.File)
	out, okOut := f.errOut.(*os.File)
	if !okIn || !okOut || !f.interactive() {
		return nil, nil, false
	}
	return in, out, true
}

// queueSource shows the approval queue to the terminal UI.
type queueSource struct{ q *approval.Queue }

func (s queueSource) Pending() []tui.Prompt {
	var out []tui.Prompt
	for _, r := range s.q.Pending() {
		out = append(out, tui.Prompt{ID: r.ID, Method: r.Method, URL: r.URL, Rule: r.Rule, Reason: r.Reason,
			Identity: r.Identity, Preview: r.Preview, Scope: r.SessionScope(), Deadline: r.Deadline})
	}
	return out
}

func (s queueSource) Changed() <-chan struct{} { return s.q.Changed() }

func (s queueSource) Decide(id, choice string) error {
	return s.q.Decide(id, approval.Choice(choice), "terminal")
}

// foreground reports whether the child shares crewgate's terminal as its
// foreground job, so that the terminal's Ctrl-C already reaches it.
func foreground(in io.Reader) bool {
	file, ok := in.(*os.File)
	return ok && runner.IsForeground(file)
}

// warnNoProxy says when the user's NO_PROXY sends an intercepted host around
// crewgate: the crew's requests to it would then fail (no credential), not leak.
func warnNoProxy(f *factory, cfg *config.Config) {
	var entries []string
	for _, k := range []string{"NO_PROXY", "no_proxy"} {
		entries = append(entries, strings.Split(os.Getenv(k), ",")...)
	}
	for _, u := range cfg.Upstreams {
		for _, h := range u.Hosts {
			pat, err := authority.ParsePattern(h)
			if err != nil {
				continue // config validation reported it
			}
			host := pat.Name
			for _, e := range entries {
				e = strings.TrimPrefix(strings.TrimSpace(e), ".")
				if e != "" && (host == e || strings.HasSuffix(host, "."+e)) {
					fmt.Fprintf(f.errOut, "warning: NO_PROXY lists %s, so the crew reaches upstream %s (%s) without crewgate and without its credential\n", e, u.Name, h)
				}
			}
		}
	}
}

// silentExit ends crewgate with a code and no message: the child's own.
type silentExit int

func (s silentExit) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// runCredentials opens credential sources with the factory's keyring and
// identity provider, with the commands that fix what is missing.
type runCredentials struct {
	f   *factory
	cfg *config.Config
}

func (c runCredentials) Secret(upstream, name string) (proxy.CredentialSource, error) {
	store, err := c.f.tokenStore(c.cfg, "keyring")
	if err != nil {
		return nil, err
	}
	src, err := creds.Secret(store, c.cfg.SecretAccount(name), name)
	if err != nil {
		return nil, &exitError{code: exitFailure, what: "run: upstream " + upstream, err: err,
			hint: "store it with 'crewgate secret set " + name + "'"}
	}
	return src, nil
}

func (c runCredentials) Login(ctx context.Context) (*creds.Session, error) {
	return openLogin(ctx, c.f, c.cfg)
}

// openLogin opens the login that oidc upstreams share and checks it works.
func openLogin(ctx context.Context, f *factory, cfg *config.Config) (*creds.Session, error) {
	id, err := identity.LoadCache(cfg.IdentityFile())
	if err != nil {
		return nil, &exitError{code: exitNotLoggedIn, what: "run", err: err, hint: "an upstream uses source: oidc; run 'crewgate login' first"}
	}
	issuer := cfg.Issuer
	if issuer == "" {
		issuer = id.Issuer
	}
	if strings.TrimSuffix(issuer, "/") != strings.TrimSuffix(id.Issuer, "/") {
		return nil, &exitError{code: exitNotLoggedIn, what: "run", err: fmt.Errorf("logged in at %s, but the config names issuer %s", id.Issuer, issuer),
			hint: "run 'crewgate login' to sign in at " + issuer}
	}
	store, err := f.tokenStore(cfg, id.TokenStorage)
	if err != nil {
		return nil, err
	}
	p, err := identity.Discover(ctx, identity.Config{
		Issuer: id.Issuer, ClientID: id.ClientID, GroupsClaim: cfg.GroupsClaim,
		AudienceParam: cfg.AudienceParam, HTTPClient: f.httpClient(),
	})
	if err != nil {
		return nil, &exitError{code: exitFailure, what: "run: reaching the OIDC provider", err: err, hint: "check your network and the issuer URL; the crew was not started"}
	}
	s, err := creds.NewSession(p, store, cfg.RefreshTokenAccount())
	if err == nil {
		err = s.Check(ctx)
	}
	switch {
	case errors.Is(err, creds.ErrLoginRequired):
		return nil, &exitError{code: exitNotLoggedIn, what: "run", err: errors.New("the login has expired or was revoked"), hint: "run 'crewgate login'"}
	case err != nil:
		return nil, &exitError{code: exitFailure, what: "run: getting an access token", err: err, hint: keyringOrProviderHint(err)}
	}
	return s, nil
}

func keyringOrProviderHint(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		return h.Hint()
	}
	return "check your network and the provider; the crew was not started"
}

// newSessionID is short, unique and sorts by time: 48 bits of milliseconds
// and 32 random bits in lower-case base32hex.
func newSessionID(now time.Time) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:])
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
