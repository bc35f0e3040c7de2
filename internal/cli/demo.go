package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/demo"
)

// demoProfile keeps the demo's fake key apart from the user's own secrets.
const demoProfile = "crewgate-demo"

func newDemoCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Show crewgate's main job end to end on local stand-ins (no account, no internet)",
		Long: `Run a small sample agent (python3, standard library only) through 'crewgate run'
against a stand-in OpenAI-compatible API on 127.0.0.1 that poses as
api.openai.com. You see the agent hold only a placeholder while the API gets
the real (fake) key, secrets in the model's answers masked, streamed or not,
and requests that policy refuses.

The demo stores its fake key in the OS keyring under the profile
"crewgate-demo" and removes it afterwards; it touches nothing else of yours.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demoRun(cmd.Context(), f)
		},
	}
}

func demoRun(ctx context.Context, f *factory) error {
	python, err := exec.LookPath("python3")
	if err != nil {
		return &exitError{code: exitFailure, what: "demo", err: errors.New("python3 is not installed"), hint: "install python3; the sample agent needs only its standard library"}
	}
	exe, err := os.Executable()
	if err != nil {
		return &exitError{code: exitFailure, what: "demo", err: err}
	}
	dir, err := os.MkdirTemp("", "crewgate-demo-")
	if err != nil {
		return &exitError{code: exitFailure, what: "demo", err: err}
	}
	defer os.RemoveAll(dir)

	key := "sk-demo-" + randomHex(20)
	api, err := demo.NewStandIn(key)
	if err != nil {
		return &exitError{code: exitFailure, what: "demo: starting the stand-in API", err: err}
	}
	defer api.Close()

	cfg := &config.Config{Profile: demoProfile}
	store, err := f.tokenStore(cfg, "keyring")
	if err != nil {
		return err
	}
	if err := store.Set(cfg.SecretAccount("openai"), key); err != nil {
		return &exitError{code: exitFailure, what: "demo: storing the demo key", err: err,
			hint: "the demo keeps its fake key in your OS keyring; scripts/demo.sh runs it with a private one"}
	}
	defer store.Delete(cfg.SecretAccount("openai"))

	caFile, agent, cfgFile := filepath.Join(dir, "stand-in.pem"), filepath.Join(dir, "agent.py"), filepath.Join(dir, "config.yaml")
	sessions := filepath.Join(dir, "sessions")
	files := map[string]string{
		caFile: string(api.CertPEM),
		agent:  demo.Agent,
		cfgFile: fmt.Sprintf(`# crewgate demo: the stand-in poses as api.openai.com on 127.0.0.1.
default_action: deny          # hosts no upstream claims are refused
upstreams:
  - name: openai
    hosts: [%s]
    address: %s
    ca_file: %s
    credential: {source: secret, secret: openai}
    env: [OPENAI_API_KEY]
audit:
  dir: %s                   # the demo's session log stays in its own temp dir
rules:
  - name: no-destructive-sql
    action: deny
    reason: agents never drop tables
    match: {body: '(?i)\bdrop\s+table\b'}
`, demo.Host, api.Addr, caFile, sessions),
	}
	for name, body := range files {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			return &exitError{code: exitFailure, what: "demo", err: err}
		}
	}

	w := f.errOut
	fmt.Fprintf(w, "crewgate demo\n")
	fmt.Fprintf(w, "  stand-in OpenAI API on %s, posing as %s; it accepts only the real demo key\n", api.Addr, demo.Host)
	fmt.Fprintf(w, "  the real key is in the OS keyring (profile %s); the agent gets a placeholder\n", demoProfile)
	fmt.Fprintf(w, "  config: default_action deny, so hosts other than %s are refused; a rule refuses SQL that drops tables\n", demo.Host)
	fmt.Fprintf(w, "\n$ crewgate run -- python3 agent.py\n")

	cmd := exec.CommandContext(ctx, exe, "--config", cfgFile, "--profile", demoProfile, "run", "--", python, agent)
	cmd.Env = withoutCrewgateConfig(os.Environ())
	cmd.Stdout, cmd.Stderr = f.out, f.errOut
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return &exitError{code: exitFailure, what: "demo: running the agent", err: err}
	}

	// Show that the session was recorded and its log's chain holds.
	if logs, _ := filepath.Glob(filepath.Join(sessions, "*.jsonl")); len(logs) == 1 {
		id := strings.TrimSuffix(filepath.Base(logs[0]), ".jsonl")
		fmt.Fprintf(w, "\n$ crewgate sessions verify %s\n", id)
		verify := exec.CommandContext(ctx, exe, "--config", cfgFile, "sessions", "verify", id)
		verify.Env = cmd.Env
		verify.Stdout, verify.Stderr = f.errOut, f.errOut
		verify.Run()
	}

	good, bad := api.Requests()
	fmt.Fprintf(w, "\nThe stand-in API received the real key on %d requests and anything else on %d.\n", good, bad)
	fmt.Fprintf(w, "The agent never held the key: what it printed of it was masked, and so were the AWS key and e-mail address in the answers.\n")
	if code != 0 {
		return silentExit(code)
	}
	return nil
}

// withoutCrewgateConfig drops the user's CREWGATE_* settings, so the demo
// runs with its own config only.
func withoutCrewgateConfig(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, config.EnvPrefix+"_") {
			out = append(out, kv)
		}
	}
	return out
}
