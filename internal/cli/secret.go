package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/keyring"
)

// maxSecretSize bounds what 'secret set' reads from stdin.
const maxSecretSize = 64 << 10

var secretNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

func newSecretCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Manage static upstream secrets kept in the OS keyring",
		Long: `Static secrets are upstream API keys that crewgate injects for upstreams with
'credential: {source: secret, secret: NAME}'. They live in the OS keyring; the
crew only ever sees a placeholder.`,
	}
	cmd.AddCommand(newSecretSetCmd(f), newSecretListCmd(f), newSecretRmCmd(f))
	return cmd
}

// secretEnv is what the secret subcommands share: config and the keyring.
type secretEnv struct {
	cfg   *config.Config
	store keyring.Store
}

func (f *factory) secretEnv() (*secretEnv, error) {
	cfg, err := f.config(nil)
	if err != nil {
		return nil, err
	}
	store, err := f.tokenStore(cfg, "keyring")
	if err != nil {
		return nil, err
	}
	return &secretEnv{cfg: cfg, store: store}, nil
}

// secretNameArg takes exactly one argument, a valid secret name.
func secretNameArg(cmd *cobra.Command, args []string) error {
	if err := cobra.ExactArgs(1)(cmd, args); err != nil {
		return err
	}
	if !secretNameRE.MatchString(args[0]) {
		return usageErrorf("secret name %q: use 1-64 lower-case letters, digits, '_', '-' or '.'", args[0])
	}
	return nil
}

func newSecretSetCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "set NAME",
		Short: "Store a secret, read from stdin (hidden prompt on a terminal)",
		Long: `Store a secret under NAME in the OS keyring. The value is read from stdin, with
one trailing newline removed; on a terminal you are prompted and the input is
hidden. Replaces any value stored under NAME before.`,
		Example: `  crewgate secret set openai              # prompts, input hidden
  printf %s "$KEY" | crewgate secret set openai`,
		Args: secretNameArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			env, err := f.secretEnv()
			if err != nil {
				return err
			}
			value, err := readSecret(f, name)
			if err != nil {
				return err
			}
			if err := env.store.Set(env.cfg.SecretAccount(name), value); err != nil {
				return &exitError{code: exitFailure, what: "secret set: storing " + name, err: err, hint: keyringHint(err)}
			}
			names, err := env.index()
			if err == nil && !slices.Contains(names, name) {
				err = env.saveIndex(append(names, name))
			}
			if err != nil {
				fmt.Fprintf(f.errOut, "warning: the secret is stored, but 'secret list' may not show it: %v\n", err)
			}
			fmt.Fprintf(f.errOut, "Stored secret %q in %s.\n", name, env.store.Location())
			return nil
		},
	}
}

// readSecret reads a secret value: hidden from a terminal, else all of stdin
// without one trailing newline.
func readSecret(f *factory, name string) (string, error) {
	var raw []byte
	if file, ok := f.in.(*os.File); ok && f.stdinTTY() {
		fmt.Fprintf(f.errOut, "Value for secret %q (input hidden): ", name)
		b, err := term.ReadPassword(int(file.Fd()))
		fmt.Fprintln(f.errOut)
		if err != nil {
			return "", &exitError{code: exitFailure, what: "secret set: reading the value", err: err}
		}
		raw = b
	} else {
		b, err := io.ReadAll(io.LimitReader(f.in, maxSecretSize+1))
		if err != nil {
			return "", &exitError{code: exitFailure, what: "secret set: reading stdin", err: err}
		}
		if len(b) > maxSecretSize {
			return "", &exitError{code: exitFailure, what: "secret set", err: fmt.Errorf("the value is larger than %d KiB", maxSecretSize>>10)}
		}
		raw = b
	}
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	raw = bytes.TrimSuffix(raw, []byte("\r"))
	if len(raw) == 0 {
		return "", &exitError{code: exitFailure, what: "secret set", err: errors.New("the value is empty"),
			hint: "pipe the value on stdin, e.g. printf %s \"$KEY\" | crewgate secret set " + name}
	}
	return string(raw), nil
}

func newSecretListCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List stored secrets and the upstreams that use them (never the values)",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			env, err := f.secretEnv()
			if err != nil {
				return err
			}
			names, err := env.index()
			if err != nil {
				return &exitError{code: exitFailure, what: "secret list", err: err, hint: keyringHint(err)}
			}
			usedBy := map[string][]string{}
			for _, u := range env.cfg.Upstreams {
				if s := u.Credential.Secret; u.Credential.Source == "secret" {
					usedBy[s] = append(usedBy[s], u.Name)
					if !slices.Contains(names, s) {
						names = append(names, s)
					}
				}
			}
			if len(names) == 0 {
				fmt.Fprintln(f.errOut, "No secrets stored; add one with 'crewgate secret set NAME'.")
				return nil
			}
			slices.Sort(names)
			w := tabwriter.NewWriter(f.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSTATUS\tUSED BY")
			for _, name := range names {
				status := "stored"
				if _, err := env.store.Get(env.cfg.SecretAccount(name)); errors.Is(err, keyring.ErrNotFound) {
					status = "missing"
				} else if err != nil {
					return &exitError{code: exitFailure, what: "secret list: reading " + name, err: err, hint: keyringHint(err)}
				}
				users := strings.Join(usedBy[name], ",")
				if users == "" {
					users = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", name, status, users)
			}
			return w.Flush()
		},
	}
}

func newSecretRmCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove", "delete"},
		Short:   "Delete a stored secret",
		Args:    secretNameArg,
		RunE: func(_ *cobra.Command, args []string) error {
			name := args[0]
			env, err := f.secretEnv()
			if err != nil {
				return err
			}
			err = env.store.Delete(env.cfg.SecretAccount(name))
			if errors.Is(err, keyring.ErrNotFound) {
				return &exitError{code: exitFailure, what: "secret rm", err: fmt.Errorf("no secret named %q is stored", name), hint: "see 'crewgate secret list'"}
			}
			if err != nil {
				return &exitError{code: exitFailure, what: "secret rm: deleting " + name, err: err, hint: keyringHint(err)}
			}
			if names, err := env.index(); err == nil {
				err = env.saveIndex(slices.DeleteFunc(names, func(n string) bool { return n == name }))
				if err != nil {
					fmt.Fprintf(f.errOut, "warning: the secret is deleted, but the list of names was not updated: %v\n", err)
				}
			}
			fmt.Fprintf(f.errOut, "Deleted secret %q.\n", name)
			return nil
		},
	}
}

// index returns the names of the profile's stored secrets.
func (e *secretEnv) index() ([]string, error) {
	v, err := e.store.Get(e.cfg.SecretIndexAccount())
	if errors.Is(err, keyring.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strings.Fields(v), nil
}

func (e *secretEnv) saveIndex(names []string) error {
	if len(names) == 0 {
		err := e.store.Delete(e.cfg.SecretIndexAccount())
		if errors.Is(err, keyring.ErrNotFound) {
			return nil
		}
		return err
	}
	return e.store.Set(e.cfg.SecretIndexAccount(), strings.Join(names, "\n"))
}
