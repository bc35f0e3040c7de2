package cli

import (
	"github.com/spf13/cobra"
)

func newRootCmd(f *factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "crewgate",
		Short: "Identity-aware enforcement point between AI agents and the services they call",
		Long: `crewgate signs you in with your company's OIDC provider and runs AI agent
programs (CrewAI crews and the like) behind a localhost proxy that injects
short-lived, narrowly scoped credentials, enforces policy, masks secrets in
responses and records every request.

Configuration comes from the config file, CREWGATE_* environment variables and
flags, in that order of precedence. Every config key can be set as
CREWGATE_<KEY>, with dots and dashes as underscores (CREWGATE_APPROVAL_TIMEOUT).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetIn(f.in)
	root.SetOut(f.out)
	root.SetErr(f.errOut)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })

	pf := root.PersistentFlags()
	pf.StringVar(&f.configFile, "config", "", "config file (default $XDG_CONFIG_HOME/crewgate/config.yaml; env CREWGATE_CONFIG)")
	pf.String("profile", "default", "credential profile: separate login and secrets (env CREWGATE_PROFILE)")
	pf.String("log-level", "info", "log level: debug, info, warn or error (env CREWGATE_LOG_LEVEL)")
	f.flags["profile"] = pf.Lookup("profile")
	f.flags["log_level"] = pf.Lookup("log-level")

	root.AddCommand(
		newLoginCmd(f),
		newLogoutCmd(f),
		newStatusCmd(f),
		newRunCmd(f),
		newSessionsCmd(f),
		newDemoCmd(f),
		newSecretCmd(f),
		newPolicyCmd(f),
		newApproveCmd(f),
		newVersionCmd(f),
		newManCmd(f),
	)
	return root
}
