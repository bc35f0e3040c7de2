package creds

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
)

func TestSecret(t *testing.T) {
	t.Parallel()
	store := keyring.NewFile(filepath.Join(t.TempDir(), "secrets.json"))
	const value = "sk-live-0123456789abcdef"
	if err := store.Set("default/secret/openai", value); err != nil {
		t.Fatal(err)
	}
	src, err := Secret(store, "default/secret/openai", "openai")
	if err != nil {
		t.Fatalf("Secret: %v", err)
	}
	if got, err := src.Token(context.Background()); err != nil || got != value {
		t.Errorf("Token = %v, right value: %v", err, got == value)
	}
	if out := fmt.Sprintf("%v %+v %#v %s", src, src, src, src); strings.Contains(out, value) || !strings.Contains(out, "openai") {
		t.Errorf("printing a secret source: %s", out)
	}

	_, err = Secret(store, "default/secret/github", "github")
	if !errors.Is(err, keyring.ErrNotFound) {
		t.Fatalf("missing secret: %v, want keyring.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), `"github"`) || hintOf(err) != "store it with 'crewgate secret set github'" {
		t.Errorf("missing secret: error %q, hint %q", err, hintOf(err))
	}

	if err := store.Set("default/secret/empty", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := Secret(store, "default/secret/empty", "empty"); err == nil || !strings.Contains(hintOf(err), "crewgate secret set empty") {
		t.Errorf("empty secret: %v", err)
	}
}

// brokenStore fails every read as a locked keyring would.
type brokenStore struct{ keyring.Store }

func (brokenStore) Get(string) (string, error) { return "", errStoreDown }
func (brokenStore) Location() string           { return "broken" }

// TestKeyringTroubleIsNotAbsence: a keyring that cannot be read is reported
// as such, never as a missing secret or a missing login (invariant 5).
func TestKeyringTroubleIsNotAbsence(t *testing.T) {
	t.Parallel()
	_, err := Secret(brokenStore{}, "default/secret/x", "x")
	if !errors.Is(err, errStoreDown) || errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("Secret on a broken keyring = %v", err)
	}
	_, err = NewSession(new(identity.Provider), brokenStore{}, account)
	if !errors.Is(err, errStoreDown) || errors.Is(err, ErrLoginRequired) {
		t.Errorf("NewSession on a broken keyring = %v", err)
	}
}
