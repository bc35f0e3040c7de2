// Package creds provides the real credentials that crewgate's proxy injects
// into upstream requests: static secrets from the keyring, and OIDC access
// tokens derived from the user's login, narrowed per upstream, cached until
// shortly before they expire, and refreshed without ever burning a rotated
// refresh token.
//
// No error, log line or formatted value of this package contains a secret:
// the types that hold one redact themselves when printed.
package creds

import (
	"context"

	"github.com/crewgate/crewgate/internal/identity"
)

// Source yields the real credential for one upstream: the raw token or
// secret value (the proxy formats the header).
type Source interface {
	Token(ctx context.Context) (string, error)
}

// ErrLoginRequired means there is no usable login: no refresh token is
// stored, or the provider rejected it (invalid_grant). The fix is to run
// `crewgate login`. It also matches identity.ErrNotLoggedIn, so the CLI maps
// it to exit code 3 without knowing this package.
var ErrLoginRequired error = loginRequired{}

type loginRequired struct{}

func (loginRequired) Error() string { return "no usable login: run 'crewgate login'" }

func (loginRequired) Is(target error) bool { return target == identity.ErrNotLoggedIn }

// hintError is an error with a line saying what to do, which the CLI prints
// under the error (it looks for a Hint method).
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// Hint says what to do about the error.
func (e *hintError) Hint() string { return e.hint }
