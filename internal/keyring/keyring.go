package keyring

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Store keeps secret values by account name under one service (default "crewgate").
type Store interface {
	// Get returns the value stored for account; errors.Is(err, ErrNotFound) when absent.
	Get(account string) (string, error)
	// Set stores value for account, replacing any previous value.
	Set(account, value string) error
	// Delete removes account and all its chunks; errors.Is(err, ErrNotFound) when absent.
	Delete(account string) error
	// Kind is "keyring" or "file".
	Kind() string
	// Location describes where values live, for humans: e.g.
	// "Secret Service (service crewgate)" or the file path.
	Location() string
}

// Options configure New.
type Options struct {
	// Service names the keyring service; "" means "crewgate".
	Service string
	// Timeout bounds every Store call. 0 means CREWGATE_KEYRING_TIMEOUT (a Go
	// duration, or plain seconds) when set, else DefaultTimeout, or
	// InteractiveTimeout when Interactive.
	Timeout time.Duration
	// Interactive reports that a TTY is attached, so the user may have to type
	// an unlock password: the default timeout is longer.
	Interactive bool
	// ChunkSize is the largest value stored in one item; 0 means
	// DefaultChunkSize.
	ChunkSize int
}

// Defaults for Options.
const (
	DefaultService     = "crewgate"
	DefaultTimeout     = 3 * time.Second
	InteractiveTimeout = 60 * time.Second
	// DefaultChunkSize stays below every platform limit: Windows rejects
	// more than 2560 bytes; macOS passes service, account and the base64 of
	// the value in one `security -i` line of at most 4096 bytes, which leaves
	// about 3000 bytes of value minus the names.
	DefaultChunkSize = 2048
	// TimeoutEnv overrides the default timeout.
	TimeoutEnv = "CREWGATE_KEYRING_TIMEOUT"
)

var (
	// ErrNotFound means no value is stored for the account.
	ErrNotFound = errors.New("secret not found")
	// ErrTimeout means the keyring did not answer in time.
	ErrTimeout = errors.New("keyring timed out")
	// ErrUnavailable means the keyring cannot be used: no session bus, no
	// Secret Service, a locked collection, or another backend failure.
	ErrUnavailable = errors.New("keyring unavailable")

	// errCorrupt means a chunked value is incomplete or does not match its header.
	errCorrupt = errors.New("stored value is incomplete or damaged")
	// errBadAccount means an account name the naming scheme cannot hold.
	errBadAccount = errors.New("invalid account name")
)

// Error is a keyring or file store failure with a hint for the user.
// errors.Is works for ErrTimeout and ErrUnavailable through it.
type Error struct {
	Op      string // "get", "set", "delete", "configure"
	Account string // may be empty
	Err     error
	hint    string
	file    bool // from the file store
}

func (e *Error) Error() string {
	what := "keyring"
	if e.file {
		what = "secrets file"
	}
	if e.Account == "" {
		return fmt.Sprintf("%s %s: %v", what, e.Op, e.Err)
	}
	return fmt.Sprintf("%s %s %q: %v", what, e.Op, e.Account, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Hint says, in one line, what the user can do about the error.
func (e *Error) Hint() string { return e.hint }

// New returns the OS keyring store, safe for concurrent use. The keyring
// itself is not contacted until the first call, so New is cheap. It fails only when CREWGATE_KEYRING_TIMEOUT
// is set to something that is not a positive duration.
func New(opts Options) (Store, error) {
	s := &keyringStore{
		service: opts.Service,
		timeout: opts.Timeout,
		chunk:   opts.ChunkSize,
		be:      goKeyring{},
	}
	if s.service == "" {
		s.service = DefaultService
	}
	if s.chunk <= 0 {
		s.chunk = DefaultChunkSize
	}
	if s.timeout <= 0 {
		d, err := timeoutFromEnv(opts.Interactive)
		if err != nil {
			return nil, err
		}
		s.timeout = d
	}
	return s, nil
}

func timeoutFromEnv(interactive bool) (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(TimeoutEnv))
	if v == "" {
		if interactive {
			return InteractiveTimeout, nil
		}
		return DefaultTimeout, nil
	}
	d, err := parseTimeout(v)
	if err != nil {
		return 0, &Error{
			Op:   "configure",
			Err:  fmt.Errorf("%s=%q: %w", TimeoutEnv, v, err),
			hint: "set " + TimeoutEnv + " to a duration such as 30s or 2m, or a number of seconds",
		}
	}
	return d, nil
}

// parseTimeout accepts a Go duration ("1m30s") or plain seconds ("10", "2.5").
func parseTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, errors.New("not a duration or a number of seconds")
		}
		if !(secs > 0) { // also rejects NaN
			return 0, errors.New("must be positive")
		}
		if secs > float64(1<<62)/float64(time.Second) {
			return 0, errors.New("too large")
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}
