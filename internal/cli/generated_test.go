package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesAreFresh fails when the committed completions or man
// pages differ from what the command tree generates now.
func TestGeneratedFilesAreFresh(t *testing.T) {
	const hint = "run scripts/completions.sh and commit the result"
	files := map[string]string{
		"bash":       "crewgate.bash",
		"zsh":        "_crewgate",
		"fish":       "crewgate.fish",
		"powershell": "crewgate.ps1",
	}
	for shell, name := range files {
		var out, errOut bytes.Buffer
		if code := Main([]string{"completion", shell}, nil, &out, &errOut); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errOut.String())
		}
		committed, err := os.ReadFile(filepath.Join("..", "..", "completions", name))
		if err != nil || !bytes.Equal(committed, out.Bytes()) {
			t.Errorf("completions/%s is stale (%v): %s", name, err, hint)
		}
	}

	dir := t.TempDir()
	var errOut bytes.Buffer
	if code := Main([]string{"man", dir}, nil, &bytes.Buffer{}, &errOut); code != 0 {
		t.Fatalf("man: exit %d: %s", code, errOut.String())
	}
	fresh, _ := filepath.Glob(filepath.Join(dir, "*"))
	committed, _ := filepath.Glob(filepath.Join("..", "..", "docs", "man", "*"))
	if len(fresh) == 0 || len(fresh) != len(committed) {
		t.Errorf("docs/man has %d pages, the command tree %d: %s", len(committed), len(fresh), hint)
	}
	for _, p := range fresh {
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join("..", "..", "docs", "man", filepath.Base(p)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("docs/man/%s is stale (%v): %s", filepath.Base(p), err, hint)
		}
	}
}
