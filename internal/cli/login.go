package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
)

var errNoDisplay = errors.New("no display")

type loginOptions struct {
	f *factory

	noBrowser       bool
	insecureStorage bool
}

func newLoginCmd(f *factory) *cobra.Command {
	opts := &loginOptions{f: f}
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in with your OIDC provider (device-code flow)",
		Long: `Sign in with your company's OIDC provider using the device-code flow.

crewgate prints a URL and a one-time code on stderr and opens your browser
(unless --no-browser or there is no display). Once you confirm, the ID token is
verified and the refresh token is stored in the OS keyring, never in a file,
unless you pass --insecure-storage.`,
		Example: `  crewgate login
  crewgate login --issuer https://idp.example.com/realms/acme --client-id crewgate
  crewgate login --no-browser --scope openid --scope offline_access`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(flagMap(cmd, "issuer", "issuer", "client_id", "client-id", "scopes", "scope"))
			if err != nil {
				return err
			}
			return loginRun(cmd.Context(), opts, cfg)
		},
	}
	fl := cmd.Flags()
	fl.String("issuer", "", "OIDC issuer URL (config key issuer)")
	fl.String("client-id", "", "OAuth client ID (config key client_id)")
	fl.StringArray("scope", nil, "scope to request; repeat for several (config key scopes)")
	fl.BoolVar(&opts.noBrowser, "no-browser", false, "do not open a browser; only print the URL")
	fl.BoolVar(&opts.insecureStorage, "insecure-storage", false, "store the refresh token in a plaintext file (mode 0600) instead of the OS keyring")
	return cmd
}

func loginRun(ctx context.Context, opts *loginOptions, cfg *config.Config) error {
	f := opts.f
	if cfg.Issuer == "" {
		return &exitError{code: exitConfig, what: "login", err: errors.New("no OIDC issuer is configured"),
			hint: "set 'issuer' in " + configName(cfg) + ", or pass --issuer URL"}
	}

	kind := "keyring"
	if opts.insecureStorage {
		kind = "file"
	}
	store, err := f.tokenStore(cfg, kind)
	if err != nil {
		return &exitError{code: exitFailure, what: "login", err: err}
	}
	// Find out now, before the user goes through the browser, whether the
	// token can be stored at all.
	if _, err := store.Get(cfg.RefreshTokenAccount()); err != nil && !errors.Is(err, keyring.ErrNotFound) {
		return &exitError{code: exitFailure, what: "login: the OS keyring is not usable", err: err, hint: keyringHint(err)}
	}
	if opts.insecureStorage {
		fmt.Fprintf(f.errOut, "warning: --insecure-storage: the refresh token will be kept in plaintext in %s (mode 0600)\n", store.Location())
	}

	started := f.now()
	p, err := identity.Discover(ctx, identity.Config{
		Issuer:        cfg.Issuer,
		ClientID:      cfg.ClientID,
		Scopes:        cfg.LoginScopes(),
		Resources:     cfg.Resources(),
		AudienceParam: cfg.AudienceParam,
		GroupsClaim:   cfg.GroupsClaim,
		HTTPClient:    f.httpClient(),
	})
	if err != nil {
		return loginError(err, cfg)
	}
	dc, err := p.StartDevice(ctx)
	if err != nil {
		return loginError(err, cfg)
	}
	url := dc.VerificationURI
	if dc.VerificationURIComplete != "" {
		url = dc.VerificationURIComplete
	}
	fmt.Fprintf(f.errOut, "Your one-time code: %s\n", dc.UserCode)
	fmt.Fprintf(f.errOut, "Open this URL to sign in: %s\n", url)
	if !opts.noBrowser {
		if err := f.openBrowser(url); err != nil {
			if !errors.Is(err, errNoDisplay) {
				fmt.Fprintf(f.errOut, "Could not open a browser (%v); open the URL yourself.\n", err)
			}
		} else {
			fmt.Fprintln(f.errOut, "Opened your browser; check that it shows the same code.")
		}
	}

	stopWaiting := showWaiting(f.errOut, f.stderrTTY(), dc.ExpiresAt, f.now)
	tokens, err := p.Poll(ctx, dc, f.pollOptions)
	stopWaiting()
	if err != nil {
		return loginError(err, cfg)
	}
	if tokens.RefreshToken == "" {
		return &exitError{code: exitFailure, what: "login", err: errors.New("the provider issued no refresh token"),
			hint: "add offline_access to 'scopes', or allow refresh tokens for client " + cfg.ClientID + " at the provider"}
	}
	id, err := p.Verify(ctx, tokens)
	if err != nil {
		return &exitError{code: exitFailure, what: "login: verifying the ID token", err: err,
			hint: "the provider's answer could not be trusted; check the issuer URL and client ID, and the machine's clock"}
	}
	id.TokenStorage = store.Kind()

	if err := store.Set(cfg.RefreshTokenAccount(), tokens.RefreshToken); err != nil {
		return &exitError{code: exitFailure, what: "login: storing the refresh token", err: err, hint: keyringHint(err)}
	}
	if err := identity.SaveCache(cfg.IdentityFile(), id); err != nil {
		return &exitError{code: exitFailure, what: "login: saving the identity cache", err: err}
	}
	if !opts.insecureStorage {
		// A token from an earlier --insecure-storage login must not linger in plaintext.
		if err := keyring.NewFile(cfg.InsecureStoreFile()).Delete(cfg.RefreshTokenAccount()); err != nil && !errors.Is(err, keyring.ErrNotFound) {
			fmt.Fprintf(f.errOut, "warning: could not remove the old plaintext token: %v\n", err)
		}
	}
	slog.Debug("login done", "subject", id.Subject, "issuer", id.Issuer, "took", f.now().Sub(started).Round(time.Millisecond))

	who := id.Subject
	if id.Email != "" {
		who += " <" + id.Email + ">"
	}
	fmt.Fprintf(f.errOut, "Logged in as %s at %s.\n", who, id.Issuer)
	fmt.Fprintf(f.errOut, "Refresh token stored in %s.\n", store.Location())
	return nil
}

func configName(cfg *config.Config) string {
	if cfg.File != "" {
		return cfg.File
	}
	return config.DefaultFile()
}

// loginError turns identity's errors into one clear line and a hint.
func loginError(err error, cfg *config.Config) error {
	e := &exitError{code: exitFailure, what: "login", err: err}
	var oe *identity.OAuthError
	switch {
	case errors.Is(err, context.Canceled):
		e.code, e.err, e.hint = exitInterrupted, errors.New("cancelled"), "nothing was stored; run 'crewgate login' to try again"
	case errors.Is(err, identity.ErrNoDeviceEndpoint):
		e.hint = "enable the device authorization grant for client " + cfg.ClientID + " at the provider, or check the issuer URL"
	case errors.Is(err, identity.ErrAccessDenied):
		e.hint = "run 'crewgate login' again and approve the request; if you did, ask your IdP admin whether your account may use client " + cfg.ClientID
	case errors.Is(err, identity.ErrExpired):
		e.hint = "run 'crewgate login' again and confirm the code before it expires"
	case errors.As(err, &oe):
		e.hint = "the provider refused the request; check client_id and scopes in " + configName(cfg)
	default:
		e.hint = "check the issuer URL (" + cfg.Issuer + ") and your network connection"
	}
	return e
}

// keyringHint is the hint of a keyring error, or a general one.
func keyringHint(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		return h.Hint()
	}
	return "unlock or start your OS keyring, or pass --insecure-storage to keep the token in a plaintext file"
}

// showWaiting shows that login waits for the user: a spinner with the time
// left on a terminal, one line otherwise. The returned func stops it and
// clears the spinner's line.
func showWaiting(w io.Writer, tty bool, expires time.Time, now func() time.Time) func() {
	if !tty {
		fmt.Fprintln(w, "Waiting for you to confirm in the browser...")
		return func() {}
	}
	frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			left := max(expires.Sub(now()).Round(time.Second), 0)
			fmt.Fprintf(w, "\r\033[K%s Waiting for you to confirm in the browser (code expires in %s; Ctrl-C cancels)", frames[i%len(frames)], left)
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}
