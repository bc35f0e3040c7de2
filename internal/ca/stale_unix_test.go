//go:build unix

package ca

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestStaleBundlesAreSwept: a bundle left by a crewgate that was killed
// outright is removed by the next run; a live crewgate's is kept.
func TestStaleBundlesAreSwept(t *testing.T) {
	tmp := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "10")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Process.Kill(); live.Wait() })
	mk := func(name string, age time.Duration) string {
		d := filepath.Join(tmp, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, bundleName), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(d, at, at); err != nil {
			t.Fatal(err)
		}
		return d
	}
	gone := []string{
		mk(bundlePrefix+strconv.Itoa(dead.Process.Pid)+"-111", 0),
		mk(bundlePrefix+"3521678901", 25*time.Hour), // an older crewgate's name, expired
	}
	// A crew (the same user) plants a stale-looking name that links to the
	// user's files: the link is not followed, and what it points at stays.
	precious := t.TempDir()
	if err := os.WriteFile(filepath.Join(precious, "work.txt"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(precious, filepath.Join(tmp, bundlePrefix+strconv.Itoa(dead.Process.Pid)+"-link")); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(tmp, bundlePrefix+strconv.Itoa(dead.Process.Pid)+"-dir")
	if err := os.Mkdir(planted, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(precious, filepath.Join(planted, "inside")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := os.Stat(filepath.Join(precious, "work.txt")); err != nil {
			t.Errorf("the sweep followed a planted link: %v", err)
		}
	}()
	kept := []string{
		mk(bundlePrefix+strconv.Itoa(live.Process.Pid)+"-222", time.Hour),
		mk(bundlePrefix+"3521678902", time.Hour),
		mk("other-"+strconv.Itoa(dead.Process.Pid), 48*time.Hour),
	}
	c, err := New([]string{"api.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := writeBundle(c, nil, rootSource{}, tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Remove()
	for _, d := range gone {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s was not swept", filepath.Base(d))
		}
	}
	for _, d := range kept {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was swept: %v", filepath.Base(d), err)
		}
	}
	if want := bundlePrefix + strconv.Itoa(os.Getpid()) + "-"; filepath.Base(b.Dir)[:len(want)] != want {
		t.Errorf("bundle dir %s is not named after crewgate's pid", b.Dir)
	}
}
