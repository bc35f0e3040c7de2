package session

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/config"
)

func testConfig(t *testing.T, audit string) *config.Config {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	cfg := config.Defaults()
	cfg.Audit.Dir = audit
	return &cfg
}

func TestStartAndFinish(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	run, err := Start(context.Background(), Options{
		Config: cfg, ID: "s1", Args: []string{"crew"}, Env: []string{"PATH=/bin", "HTTPS_PROXY=", "CREWGATE_SESSION="},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(run.Env, "\n")
	for _, want := range []string{"HTTPS_PROXY=" + run.ProxyURL, "CREWGATE_SESSION=s1", "SSL_CERT_FILE="} {
		if !strings.Contains(env, want) {
			t.Errorf("the crew's environment lacks %q:\n%s", want, env)
		}
	}
	// The proxy serves only with the credential.
	u, _ := url.Parse(run.ProxyURL)
	u.User = nil
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
	resp, err := c.Get("http://127.0.0.1:1/")
	if err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("without the credential: %v %v", resp, err)
	}
	bundle := run.bundle.File
	run.Finish(3)
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Errorf("the trust bundle is still there: %v", err)
	}
	lg, err := audit.Read(filepath.Join(dir, "s1.jsonl"))
	if err != nil || lg.Abrupt {
		t.Fatalf("log: %v, abrupt %v", err, lg != nil && lg.Abrupt)
	}
	if end := lg.Events[len(lg.Events)-1].End; end == nil || end.ExitCode != 3 {
		t.Errorf("the log ends with %+v", lg.Events[len(lg.Events)-1])
	}
	run.Finish(3) // twice is harmless
}

func TestStartFailsCleanly(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	os.WriteFile(file, nil, 0o600)
	cfg := testConfig(t, file)
	_, err := Start(context.Background(), Options{Config: cfg, ID: "s2"})
	var se *Error
	if !errors.As(err, &se) || se.What != "opening the session log" || se.Hint == "" || se.Config {
		t.Fatalf("err = %v", err)
	}
}
