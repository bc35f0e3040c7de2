package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sdkNode returns the Node binary that scripts/test.sh installs next to the
// npm SDKs in testdata/sdk (a Node new enough to honour the proxy
// variables). Without it the test skips, or fails under CI, which must run
// it.
func sdkNode(t *testing.T) (node, dir string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "sdk"))
	if err != nil {
		t.Fatal(err)
	}
	node = filepath.Join(dir, "node_modules", ".bin", "node")
	if _, err := exec.LookPath(node); err != nil {
		msg := "the npm SDKs are not installed in testdata/sdk: run scripts/test.sh (npm ci there)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node, dir
}

// TestSDKCrewsShowTheRefusal: the real npm openai and @anthropic-ai/sdk
// SDKs, as the crew, put the refusing rule and its reason in the error they
// raise, so an agent (and its human) can tell why the call failed.
func TestSDKCrewsShowTheRefusal(t *testing.T) {
	node, dir := sdkNode(t)
	api := newStandIn(t)
	s := runSandbox(t, api, `rules:
  - name: no-destructive-sql
    action: deny
    reason: agents never drop tables
    match: {body: '(?i)\bdrop\s+table\b'}
`)
	r := s.run("", "run", "--", node, filepath.Join(dir, "refusal.mjs"), "https://api.example.com")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, sdk := range []string{"openai", "anthropic"} {
		var line string
		for l := range strings.SplitSeq(r.stdout, "\n") {
			if strings.HasPrefix(l, sdk+" error: ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("%s: no error line in\n%s\nstderr:\n%s", sdk, r.stdout, r.stderr)
			continue
		}
		for _, want := range []string{"403", "no-destructive-sql", "agents never drop tables"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s's error lacks %q: %s", sdk, want, line)
			}
		}
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.auths) != 0 {
		t.Errorf("the stand-in got %d requests", len(api.auths))
	}
}
