package identity

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"
)

func TestCacheRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "default", "identity.json")
	if _, err := LoadCache(path); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("LoadCache of a missing file: %v, want ErrNotLoggedIn", err)
	}
	id := &Identity{
		Issuer: "https://idp.example/", ClientID: "crewgate", Subject: "alice", Email: "alice@example.com",
		Name: "Alice Example", Groups: []string{"ml-engineers"}, Claims: map[string]any{"sub": "alice"},
		Scopes: []string{"openid"}, TokenStorage: "keyring",
		LoggedInAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Expiry: time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC),
	}
	if err := SaveCache(path, id); err != nil {
		t.Fatal(err)
	}
	id.Name = "Alice Updated" // overwrite in place
	if err := SaveCache(path, id); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, id) {
		t.Errorf("LoadCache = %+v, want %+v", got, id)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(path)
		di, _ := os.Stat(filepath.Dir(path))
		if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
			t.Errorf("modes: file %v, dir %v; want 0600, 0700", fi.Mode().Perm(), di.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("cache dir holds %d entries, want only identity.json (temp files left?)", len(entries))
	}
	if err := RemoveCache(path); err != nil {
		t.Fatal(err)
	}
	if err := RemoveCache(path); err != nil {
		t.Errorf("RemoveCache of a missing file: %v", err)
	}
	if _, err := LoadCache(path); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("after RemoveCache: %v", err)
	}
}

func TestLoadCacheCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	_, err := LoadCache(path)
	if err == nil || errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("err = %v, want a decode error", err)
	}
}
