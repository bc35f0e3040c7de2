package config

import (
	"os"
	"path/filepath"
	"runtime"
)

// DefaultFile is where crewgate looks for its config when --config and
// CREWGATE_CONFIG are unset: $XDG_CONFIG_HOME/crewgate/config.yaml on Linux,
// the platform's usual config directory elsewhere.
func DefaultFile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "crewgate", "config.yaml")
}

// StateDir is where crewgate keeps state that is not configuration: identity
// caches and session logs. $XDG_STATE_HOME/crewgate on Linux.
func StateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "crewgate")
	}
	switch runtime.GOOS {
	case "windows", "darwin":
		if d, err := os.UserConfigDir(); err == nil {
			return filepath.Join(d, "crewgate", "state")
		}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "crewgate-state")
	}
	return filepath.Join(home, ".local", "state", "crewgate")
}

// ProfileDir is the state directory of one profile.
func (c *Config) ProfileDir() string { return filepath.Join(StateDir(), c.Profile) }

// IdentityFile is the identity cache of the active profile (no secrets).
func (c *Config) IdentityFile() string { return filepath.Join(c.ProfileDir(), "identity.json") }

// InsecureStoreFile is the plaintext credential file that --insecure-storage
// uses instead of the OS keyring.
func (c *Config) InsecureStoreFile() string {
	return filepath.Join(c.ProfileDir(), "insecure-credentials.json")
}

// RefreshTokenAccount is the keyring account of the profile's refresh token.
func (c *Config) RefreshTokenAccount() string { return c.Profile + "/refresh_token" }

// SecretAccount is the keyring account of a static upstream secret.
func (c *Config) SecretAccount(name string) string { return c.Profile + "/secret/" + name }

// SecretIndexAccount is the keyring item that lists the profile's secret
// names (no values), since keyrings cannot be enumerated portably.
func (c *Config) SecretIndexAccount() string { return c.Profile + "/secret_index" }
