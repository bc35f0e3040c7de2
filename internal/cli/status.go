package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
)

type statusOptions struct {
	f    *factory
	json bool
}

func newStatusCmd(f *factory) *cobra.Command {
	opts := &statusOptions{f: f}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show who you are logged in as, and how crewgate is configured",
		Long: `Show the logged-in identity (subject, e-mail, name, groups), the issuer, where
the refresh token is stored, the config file and the configured upstreams.
Exits 3 when not logged in.`,
		Example: `  crewgate status
  crewgate status --json | jq .groups`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(nil)
			if err != nil {
				return err
			}
			return statusRun(cmd.Context(), opts, cfg)
		},
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print one JSON object on stdout")
	return cmd
}

type statusReport struct {
	LoggedIn      bool             `json:"logged_in"`
	Profile       string           `json:"profile"`
	Issuer        string           `json:"issuer,omitempty"`
	Subject       string           `json:"subject,omitempty"`
	Email         string           `json:"email,omitempty"`
	Name          string           `json:"name,omitempty"`
	Groups        []string         `json:"groups"`
	TokenStorage  string           `json:"token_storage,omitempty"`
	TokenLocation string           `json:"token_location,omitempty"`
	LoggedInAt    *time.Time       `json:"logged_in_at,omitempty"`
	ConfigFile    string           `json:"config_file"`
	Upstreams     []statusUpstream `json:"upstreams"`
	Problem       string           `json:"problem,omitempty"`
}

type statusUpstream struct {
	Name   string   `json:"name"`
	Hosts  []string `json:"hosts"`
	Source string   `json:"credential_source"`
}

func statusRun(_ context.Context, opts *statusOptions, cfg *config.Config) error {
	f := opts.f
	rep := statusReport{Profile: cfg.Profile, ConfigFile: cfg.File, Groups: []string{}, Upstreams: []statusUpstream{}}
	for _, u := range cfg.Upstreams {
		rep.Upstreams = append(rep.Upstreams, statusUpstream{Name: u.Name, Hosts: u.Hosts, Source: u.Credential.Source})
	}

	id, err := identity.LoadCache(cfg.IdentityFile())
	switch {
	case errors.Is(err, identity.ErrNotLoggedIn):
		rep.Problem = "not logged in"
	case err != nil:
		return &exitError{code: exitFailure, what: "status: reading the identity cache", err: err, hint: "run 'crewgate login' to sign in again"}
	default:
		store, err := f.tokenStore(cfg, id.TokenStorage)
		if err != nil {
			return err
		}
		rep.Issuer, rep.Subject, rep.Email, rep.Name = id.Issuer, id.Subject, id.Email, id.Name
		rep.Groups = append(rep.Groups, id.Groups...)
		rep.TokenStorage, rep.TokenLocation = store.Kind(), store.Location()
		at := id.LoggedInAt
		rep.LoggedInAt = &at
		// The cache alone could lie: the token may have been removed from the keyring.
		_, err = store.Get(cfg.RefreshTokenAccount())
		switch {
		case errors.Is(err, keyring.ErrNotFound):
			rep.Problem = "the refresh token is missing from " + store.Location()
		case err != nil:
			return &exitError{code: exitFailure, what: "status: reading the refresh token", err: err, hint: keyringHint(err)}
		default:
			rep.LoggedIn = true
		}
	}

	if opts.json {
		enc := json.NewEncoder(f.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printStatus(f, rep, cfg)
	}
	if !rep.LoggedIn {
		return &exitError{code: exitNotLoggedIn, what: "status", err: errors.New(rep.Problem), hint: "run 'crewgate login'"}
	}
	if cfg.Issuer != "" && strings.TrimSuffix(cfg.Issuer, "/") != strings.TrimSuffix(rep.Issuer, "/") {
		fmt.Fprintf(f.errOut, "warning: logged in at %s, but the config names issuer %s; run 'crewgate login' to switch\n", rep.Issuer, cfg.Issuer)
	}
	return nil
}

func printStatus(f *factory, rep statusReport, cfg *config.Config) {
	w := tabwriter.NewWriter(f.out, 0, 4, 2, ' ', 0)
	if rep.LoggedIn {
		who := rep.Subject
		if rep.Email != "" {
			who += " <" + rep.Email + ">"
		}
		if rep.Name != "" {
			who += " (" + rep.Name + ")"
		}
		fmt.Fprintf(w, "Logged in as %s\n", who)
		fmt.Fprintf(w, "  issuer:\t%s\n", rep.Issuer)
		groups := strings.Join(rep.Groups, ", ")
		if groups == "" {
			groups = "(none; claim " + cfg.GroupsClaim + ")"
		}
		fmt.Fprintf(w, "  groups:\t%s\n", groups)
		token := rep.TokenLocation
		if rep.TokenStorage == "file" {
			token = "plaintext file " + token + " (--insecure-storage)"
		}
		fmt.Fprintf(w, "  refresh token:\t%s\n", token)
		fmt.Fprintf(w, "  since:\t%s\n", rep.LoggedInAt.Local().Format(time.RFC1123))
	} else {
		if rep.Problem == "not logged in" {
			fmt.Fprintln(w, "Not logged in")
		} else {
			fmt.Fprintf(w, "Not logged in: %s\n", rep.Problem)
		}
	}
	fmt.Fprintf(w, "  profile:\t%s\n", rep.Profile)
	file := rep.ConfigFile
	if file == "" {
		file = "none (" + config.DefaultFile() + " does not exist)"
	}
	fmt.Fprintf(w, "  config:\t%s\n", file)
	w.Flush()
	if len(rep.Upstreams) > 0 {
		fmt.Fprintln(f.out, "Upstreams:")
		for _, u := range rep.Upstreams {
			fmt.Fprintf(w, "  %s\t%s\t%s\n", u.Name, strings.Join(u.Hosts, ","), u.Source)
		}
		w.Flush()
	}
}
