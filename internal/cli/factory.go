package cli

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/pkg/browser"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
)

// factory builds the commands' dependencies lazily, in one place, so that
// tests can swap any of them and no command pays for what it does not use.
type factory struct {
	in     io.Reader
	out    io.Writer // data: JSON, tables
	errOut io.Writer // messages, prompts, progress

	// Global flags.
	configFile string
	flags      map[string]*pflag.Flag // config key -> persistent flag

	// Replaceable dependencies.
	httpClient  func() *http.Client
	openBrowser func(url string) error
	now         func() time.Time
	stdinTTY    func() bool
	stderrTTY   func() bool
	openKeyring func(interactive bool) (keyring.Store, error)
	pollOptions identity.PollOptions
}

func newFactory(in io.Reader, out, errOut io.Writer) *factory {
	f := &factory{
		in:          in,
		out:         out,
		errOut:      errOut,
		flags:       map[string]*pflag.Flag{},
		httpClient:  identity.DefaultHTTPClient,
		openBrowser: openBrowser,
		now:         time.Now,
	}
	f.stdinTTY = func() bool { return isTerminal(f.in) }
	f.stderrTTY = func() bool { return isTerminal(f.errOut) }
	f.openKeyring = func(interactive bool) (keyring.Store, error) {
		return keyring.New(keyring.Options{Interactive: interactive})
	}
	return f
}

// config loads the configuration with the global flags and the command's own
// flags (config key -> flag) applied on top.
func (f *factory) config(cmdFlags map[string]*pflag.Flag) (*config.Config, error) {
	flags := map[string]*pflag.Flag{}
	for k, v := range f.flags {
		flags[k] = v
	}
	for k, v := range cmdFlags {
		flags[k] = v
	}
	cfg, err := config.Load(config.Options{File: f.configFile, Flags: flags})
	if err != nil {
		return nil, err
	}
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	// Log lines go to the terminal the user watches: no timestamps.
	dropTime := func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(f.errOut, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime})))
	return cfg, nil
}

// interactive reports whether a human can answer on this terminal.
func (f *factory) interactive() bool { return f.stdinTTY() && f.stderrTTY() }

// tokenStore returns where the profile's refresh token lives: the keyring,
// or the plaintext file when the user chose --insecure-storage.
func (f *factory) tokenStore(cfg *config.Config, kind string) (keyring.Store, error) {
	if kind == "file" {
		return keyring.NewFile(cfg.InsecureStoreFile()), nil
	}
	return f.openKeyring(f.interactive())
}

func isTerminal(v any) bool {
	fd, ok := v.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(fd.Fd()))
}

// openBrowser opens url in the user's browser when there is a display to show
// it on. The launcher's own output is discarded so it can never reach our
// stdout or the terminal UI.
func openBrowser(url string) error {
	if !hasDisplay() {
		return errNoDisplay
	}
	browser.Stdout, browser.Stderr = io.Discard, io.Discard
	return browser.OpenURL(url)
}

// hasDisplay tells whether a graphical browser can be shown. On Linux a text
// browser would take over the terminal, so without X11, Wayland or WSL we do
// not try.
func hasDisplay() bool {
	if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "openbsd" {
		return true
	}
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "" || os.Getenv("WSL_DISTRO_NAME") != ""
}

// flagMap names the config key each of cmd's flags sets.
func flagMap(cmd *cobra.Command, pairs ...string) map[string]*pflag.Flag {
	m := map[string]*pflag.Flag{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = cmd.Flags().Lookup(pairs[i+1])
	}
	return m
}
