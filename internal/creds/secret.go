package creds

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/crewgate/crewgate/internal/keyring"
)

// Secret returns a Source for the static secret stored under account (see
// config's SecretAccount) as the secret called name. It reads the value
// once, now, so that `run` can refuse to start when it is missing: the error
// then wraps keyring.ErrNotFound and says to run `crewgate secret set NAME`.
// Other keyring failures are returned as they are (they carry their own
// hint), never treated as an absent secret.
//
// The value is kept in memory for the run: a `crewgate secret set` during a
// run takes effect at the next run.
func Secret(store keyring.Store, account, name string) (Source, error) {
	v, err := store.Get(account)
	if errors.Is(err, keyring.ErrNotFound) {
		return nil, &hintError{
			err:  fmt.Errorf("secret %q is not stored in %s: %w", name, store.Location(), err),
			hint: fmt.Sprintf("store it with 'crewgate secret set %s'", name),
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %q: %w", name, err)
	}
	if v == "" {
		return nil, &hintError{
			err:  fmt.Errorf("secret %q in %s is empty", name, store.Location()),
			hint: fmt.Sprintf("store it again with 'crewgate secret set %s'", name),
		}
	}
	return &secretSource{name: name, value: v}, nil
}

// secretSource holds a secret's value; it never prints it.
type secretSource struct {
	name  string
	value string
}

// Token returns the secret's value.
func (s *secretSource) Token(context.Context) (string, error) { return s.value, nil }

func (s *secretSource) String() string             { return fmt.Sprintf("creds.Secret(%q)", s.name) }
func (s *secretSource) GoString() string           { return s.String() }
func (s *secretSource) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }
