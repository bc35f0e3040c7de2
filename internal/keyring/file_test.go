package keyring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "crewgate", "secrets.json")
	s := NewFile(path)
	if s.Kind() != "file" || s.Location() != path {
		t.Fatalf("Kind %q Location %q", s.Kind(), s.Location())
	}
	if _, err := s.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before any write: %v", err)
	}
	if err := s.Delete("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete before any write: %v", err)
	}
	big := strings.Repeat("x", 8192)
	for acct, v := range map[string]string{"default/refresh_token": "tok", "big": big, "odd#name": "\x00\xff\n"} {
		if err := s.Set(acct, v); err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, acct, v)
	}
	if err := s.Set("big", "small"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "big", "small")
	if err := s.Delete("big"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("big"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	mustGet(t, s, "default/refresh_token", "tok")

	if runtime.GOOS != "windows" {
		for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
			}
		}
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

func TestFileStoreDamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	const content = `{"version":1,"secrets":{"a":"hunter2`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewFile(path)
	for _, err := range []error{
		func() error { _, err := s.Get("a"); return err }(),
		s.Set("b", "v"),
	} {
		var ke *Error
		if !errors.As(err, &ke) || ke.Hint() == "" || errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want *Error with a hint", err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("error quotes the file: %v", err)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != content {
		t.Fatal("a failed Set rewrote the damaged file")
	}
}

func TestFileStoreConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	s := NewFile(path)
	const goroutines, each = 16, 10
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			// Each goroutine has its own Store too: the file lock, not the
			// Store's mutex, must keep them apart.
			own := NewFile(path)
			for i := range each {
				st := s
				if i%2 == 1 {
					st = own
				}
				if err := st.Set(fmt.Sprintf("g%d-%d", g, i), fmt.Sprint(g*i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for g := range goroutines {
		for i := range each {
			mustGet(t, s, fmt.Sprintf("g%d-%d", g, i), fmt.Sprint(g*i))
		}
	}
}

func TestFileStoreConcurrentProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			runFileHelper(t, path, fmt.Sprintf("p%d", p))
		})
	}
	wg.Wait()
	s := NewFile(path)
	for p := range 4 {
		for i := range 20 {
			mustGet(t, s, fmt.Sprintf("p%d-%d", p, i), "v")
		}
	}
}

func runFileHelper(t *testing.T, path, prefix string) {
	self, err := os.Executable()
	if err != nil {
		t.Error(err)
		return
	}
	cmd := newHelperCmd(self, "file", "HELPER_PATH="+path, "HELPER_PREFIX="+prefix)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("file helper %s: %v: %s", prefix, err, out)
	}
}
