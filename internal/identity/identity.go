// Package identity signs the user in with an OpenID Connect provider and
// says who they are.
//
// It discovers the provider, runs the OAuth 2.0 device authorization grant
// (RFC 8628) with a polling loop that survives slow_down and clock drift,
// verifies the ID token with go-oidc, refreshes and revokes tokens with its own
// token-endpoint requests, and keeps a secret-free Identity cache on disk.
//
// Nothing in this package prints or returns a token in an error message:
// Tokens redacts itself whenever it is formatted, logged or encoded.
package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Errors that callers map to exit codes and hints.
var (
	// ErrNotLoggedIn means there is no identity cache: nobody has logged in.
	ErrNotLoggedIn = errors.New("not logged in")
	// ErrAccessDenied means the user (or the provider) refused the device login.
	ErrAccessDenied = errors.New("login was denied at the provider")
	// ErrExpired means the device code expired before the user approved it,
	// or the provider rejected the refresh token (invalid_grant): either way
	// the user has to log in again.
	ErrExpired = errors.New("login expired")
	// ErrNoDeviceEndpoint means the provider's discovery document lists no
	// device_authorization_endpoint, so the device flow cannot be used.
	ErrNoDeviceEndpoint = errors.New("provider does not support the device authorization grant")
	// ErrNoRevocationEndpoint means the provider lists no revocation_endpoint.
	ErrNoRevocationEndpoint = errors.New("provider has no revocation endpoint")
)

// Identity is who the user is, as cached on disk: it holds no secrets.
type Identity struct {
	Issuer       string         `json:"issuer"`
	ClientID     string         `json:"client_id"`
	Subject      string         `json:"subject"`
	Email        string         `json:"email,omitempty"`
	Name         string         `json:"name,omitempty"`
	Groups       []string       `json:"groups"`
	Claims       map[string]any `json:"claims,omitempty"` // verified ID-token claims (for policy rules later), without nonce/at_hash/c_hash
	Scopes       []string       `json:"scopes,omitempty"` // granted scopes
	TokenStorage string         `json:"token_storage"`    // "keyring" or "file"; set by the caller
	LoggedInAt   time.Time      `json:"logged_in_at"`
	Expiry       time.Time      `json:"id_token_expiry"`
}

// SaveCache writes id to path as JSON, atomically (a temporary file in the
// same directory, then a rename), with mode 0600 in a directory created 0700.
func SaveCache(path string, id *Identity) error {
	if id == nil {
		return errors.New("saving identity cache: nil identity")
	}
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding identity cache: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating identity cache directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".identity-*.tmp") // CreateTemp uses mode 0600
	if err != nil {
		return fmt.Errorf("writing identity cache: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing identity cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing identity cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing identity cache: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("writing identity cache: %w", err)
	}
	return nil
}

// LoadCache reads the identity cache at path. When the file does not exist
// the error satisfies errors.Is(err, ErrNotLoggedIn).
func LoadCache(path string) (*Identity, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no identity cache at %s", ErrNotLoggedIn, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading identity cache: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("reading identity cache %s: %w", path, err)
	}
	if id.Groups == nil {
		id.Groups = []string{}
	}
	return &id, nil
}

// RemoveCache deletes the identity cache at path; a missing file is not an error.
func RemoveCache(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing identity cache: %w", err)
	}
	return nil
}
