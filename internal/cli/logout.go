package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
)

type logoutOptions struct {
	f *factory
}

func newLogoutCmd(f *factory) *cobra.Command {
	opts := &logoutOptions{f: f}
	return &cobra.Command{
		Use:   "logout",
		Short: "Revoke the refresh token and forget the login",
		Long: `Revoke the refresh token at the provider's revocation endpoint (when it has
one), then delete it from the keyring (or the --insecure-storage file) and
remove the cached identity. Static secrets stay; remove them with
'crewgate secret rm'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(nil)
			if err != nil {
				return err
			}
			return logoutRun(cmd.Context(), opts, cfg)
		},
	}
}

func logoutRun(ctx context.Context, opts *logoutOptions, cfg *config.Config) error {
	f := opts.f
	id, err := identity.LoadCache(cfg.IdentityFile())
	if err != nil && !errors.Is(err, identity.ErrNotLoggedIn) {
		// A damaged cache must not keep the token alive: go on and delete it.
		fmt.Fprintf(f.errOut, "warning: %v\n", err)
	}
	kinds := []string{"keyring", "file"}
	if id != nil && id.TokenStorage == "file" {
		kinds = []string{"file"}
	}

	removed := ""
	for _, kind := range kinds {
		store, err := f.tokenStore(cfg, kind)
		if err != nil {
			return err
		}
		token, err := store.Get(cfg.RefreshTokenAccount())
		if errors.Is(err, keyring.ErrNotFound) {
			continue
		}
		if err != nil {
			if id == nil && kind == "keyring" {
				continue // not logged in through the keyring; nothing of ours there
			}
			return &exitError{code: exitFailure, what: "logout: reading the refresh token", err: err, hint: keyringHint(err)}
		}
		if id != nil {
			revoke(ctx, f, id, token)
		}
		if err := store.Delete(cfg.RefreshTokenAccount()); err != nil && !errors.Is(err, keyring.ErrNotFound) {
			return &exitError{code: exitFailure, what: "logout: deleting the refresh token", err: err, hint: keyringHint(err)}
		}
		removed = store.Location()
	}
	if err := identity.RemoveCache(cfg.IdentityFile()); err != nil {
		return &exitError{code: exitFailure, what: "logout: removing the identity cache", err: err}
	}
	switch {
	case removed != "":
		who := "you"
		if id != nil {
			who = id.Subject
		}
		fmt.Fprintf(f.errOut, "Logged out %s; the refresh token was removed from %s.\n", who, removed)
	case id != nil:
		fmt.Fprintln(f.errOut, "Logged out; no refresh token was stored.")
	default:
		fmt.Fprintln(f.errOut, "Not logged in; nothing to do.")
	}
	return nil
}

// revoke asks the provider to revoke token. Failure is reported but does not
// stop logout: the local copy is deleted either way.
func revoke(ctx context.Context, f *factory, id *identity.Identity, token string) {
	p, err := identity.Discover(ctx, identity.Config{Issuer: id.Issuer, ClientID: id.ClientID, HTTPClient: f.httpClient()})
	if err == nil {
		if !p.CanRevoke() {
			fmt.Fprintf(f.errOut, "The provider has no revocation endpoint; the token stays valid there until it expires.\n")
			return
		}
		if err = p.Revoke(ctx, token); err == nil {
			fmt.Fprintln(f.errOut, "Revoked the refresh token at the provider.")
			return
		}
	}
	fmt.Fprintf(f.errOut, "warning: could not revoke the token at the provider: %v\n", err)
	fmt.Fprintln(f.errOut, "hint: the local copy is deleted anyway; revoke the session in your provider's account page if it matters")
}
