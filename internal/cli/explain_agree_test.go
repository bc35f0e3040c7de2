package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExplainAgreesWithRun runs a table of requests through 'crewgate run'
// (curl as the crew, headless) and through 'crewgate policy explain', and
// checks that both name the same outcome: the refusal kind, or none when
// the request goes out.
func TestExplainAgreesWithRun(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl missing; run scripts/test.sh")
	}
	api := newStandIn(t)
	apiAddr := strings.TrimPrefix(api.URL, "https://")
	s := runSandbox(t, api, `rules:
  - name: no-destructive-sql
    action: deny
    match: {body: '(?i)\bdrop\s+table\b'}
  - name: confirm-deletes
    action: approve
    match: {methods: [DELETE]}
  - name: no-secret-paths
    action: deny
    match: {path: "/secret*"}
  - name: no-evil
    action: deny
    match: {hosts: [evil.example]}
`)
	// default_action tunnel for the tunnel and address rows.
	cfgPath := filepath.Join(s.home, ".config", "crewgate", "config.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "default_action: deny", "default_action: tunnel", 1)), 0o600)
	bodyFile := filepath.Join(t.TempDir(), "drop.json")
	os.WriteFile(bodyFile, []byte(`{"q":"DROP TABLE users"}`), 0o600)

	rows := []struct{ method, url, body string }{
		{"GET", "https://api.example.com/v1/models", ""},
		{"DELETE", "https://api.example.com/v1/files/1", ""},
		{"POST", "https://api.example.com/v1/chat/completions", bodyFile},
		{"GET", "https://api.example.com/secret/keys", ""},
		{"GET", "http://169.254.169.254/latest/meta-data/", ""},
		{"GET", "https://[64:ff9b::a9fe:a9fe]/latest/", ""},
		{"GET", "https://" + apiAddr + "/secret/keys", ""}, // a tunnel: path rules cannot apply
		{"GET", "https://evil.example/", ""},               // a tunnel the host rule refuses
		{"GET", "https://api.example.com:8443/v1/models", ""},
	}
	var script strings.Builder
	// The crew trusts the session CA (intercepted hosts) and the stand-in's
	// own certificate (the tunnel row).
	fmt.Fprintf(&script, "cat \"$CURL_CA_BUNDLE\" %s > \"$TMPDIR/roots.pem\"\n", api.caFile)
	for i, r := range rows {
		data := ""
		if r.body != "" {
			data = "--data-binary @" + r.body + " -H 'Content-Type: application/json'"
		}
		// The last X-Crewgate-Error curl saw (the proxy's CONNECT answer
		// or the response), or "-".
		fmt.Fprintf(&script, `k=$(curl -sv --noproxy '' --max-time 5 -o /dev/null -X %s %s -H "Authorization: Bearer $OPENAI_API_KEY" --cacert "$TMPDIR/roots.pem" '%s' 2>&1 | tr -d '\r' | sed -n 's/^< [Xx]-[Cc]rewgate-[Ee]rror: //p' | tail -1); echo "row %d: ${k:--}"`+"\n",
			r.method, data, r.url, i)
	}
	res := s.run("", "run", "--no-tui", "--", "sh", "-c", script.String())
	if res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	ran := map[int]string{}
	for l := range strings.SplitSeq(res.stdout, "\n") {
		var i int
		var k string
		if n, _ := fmt.Sscanf(l, "row %d: %s", &i, &k); n == 2 {
			ran[i] = k
		}
	}
	kindRE := regexp.MustCompile(`\(\d{3} ([a-z-]+)\)$`)
	for i, r := range rows {
		args := []string{"policy", "explain", r.method, r.url}
		if r.body != "" {
			args = append(args, "--body", r.body, "--header", "Content-Type: application/json")
		}
		ex := s.run("", args...)
		var decision string
		for l := range strings.SplitSeq(ex.stdout, "\n") {
			if strings.HasPrefix(l, "decision: ") {
				decision = l
			}
		}
		said := "-"
		switch {
		case decision == "":
			t.Errorf("%s %s: explain printed no decision:\n%s%s", r.method, r.url, ex.stdout, ex.stderr)
			continue
		case kindRE.MatchString(decision):
			said = kindRE.FindStringSubmatch(decision)[1]
		case strings.HasPrefix(decision, "decision: approve"):
			said = "approval-unavailable" // run is headless here
		}
		if ran[i] != said {
			t.Errorf("%s %s: run %q, explain %q\nexplain said:\n%s", r.method, r.url, ran[i], said, ex.stdout)
		}
	}
	t.Logf("run:\n%s", res.stdout)
}
