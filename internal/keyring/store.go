package keyring

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	gokeyring "github.com/zalando/go-keyring"
)

// backend is the part of go-keyring the store uses.
type backend interface {
	Get(service, user string) (string, error)
	Set(service, user, value string) error
	Delete(service, user string) error
}

type goKeyring struct{}

func (goKeyring) Get(service, user string) (string, error) { return gokeyring.Get(service, user) }
func (goKeyring) Set(service, user, value string) error    { return gokeyring.Set(service, user, value) }
func (goKeyring) Delete(service, user string) error        { return gokeyring.Delete(service, user) }

// errDeadline marks a backend call abandoned because the operation's time ran out.
var errDeadline = errors.New("deadline exceeded")

type keyringStore struct {
	service string
	timeout time.Duration
	chunk   int
	be      backend

	// mu serialises writers in this process so their chunk slots do not
	// interleave. Readers go without it and retry when a header moves.
	mu sync.Mutex
}

func (s *keyringStore) Kind() string { return "keyring" }

func (s *keyringStore) Location() string {
	switch runtime.GOOS {
	case "darwin":
		return "macOS Keychain (service " + s.service + ")"
	case "windows":
		return "Windows Credential Manager (service " + s.service + ")"
	default:
		return "Secret Service (service " + s.service + ")"
	}
}

func (s *keyringStore) Get(account string) (string, error) {
	var v string
	err := s.do("get", account, func(o *op) error {
		var err error
		v, err = o.getValue(account)
		return err
	})
	return v, err
}

func (s *keyringStore) Set(account, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.do("set", account, func(o *op) error { return o.setValue(account, value) })
}

func (s *keyringStore) Delete(account string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.do("delete", account, func(o *op) error { return o.deleteValue(account) })
}

// do runs one Store operation under the timeout and turns its failure into
// ErrNotFound or an *Error with a hint.
func (s *keyringStore) do(name, account string, f func(*op) error) error {
	if account == "" || strings.Contains(account, "#") {
		return &Error{Op: name, Account: account,
			Err:  fmt.Errorf("%w: must be non-empty and without '#'", errBadAccount),
			hint: "this is a bug in crewgate: please report it"}
	}
	if err := checkBus(); err != nil {
		return &Error{Op: name, Account: account, Err: fmt.Errorf("%w: %v", ErrUnavailable, err), hint: noBusHint}
	}
	o := &op{s: s, deadline: time.Now().Add(s.timeout)}
	err := f(o)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("keyring %s %q: %w", name, account, ErrNotFound)
	case errors.Is(err, errDeadline):
		return &Error{Op: name, Account: account,
			Err:  fmt.Errorf("%w after %v", ErrTimeout, s.timeout),
			hint: timeoutHint(s.timeout)}
	case errors.Is(err, errCorrupt):
		return &Error{Op: name, Account: account, Err: err,
			hint: "store the value again (crewgate login or crewgate secret set), or remove it (crewgate logout or crewgate secret rm)"}
	case errors.Is(err, errTooLarge):
		return &Error{Op: name, Account: account, Err: err,
			hint: "store a smaller value, or use --insecure-storage"}
	case errors.Is(err, gokeyring.ErrSetDataTooBig):
		return &Error{Op: name, Account: account,
			Err:  fmt.Errorf("item larger than the platform allows (chunk size %d): %w", s.chunk, err),
			hint: "this is a bug in crewgate (chunk size too large for this platform): please report it"}
	}
	hint, kind := classify(err)
	return &Error{Op: name, Account: account, Err: fmt.Errorf("%w: %w", kind, err), hint: hint}
}

func timeoutHint(d time.Duration) string {
	return fmt.Sprintf("the keyring did not answer within %v: unlock it if it is locked, or raise %s (e.g. 30s); without a keyring use --insecure-storage", d, TimeoutEnv)
}

// op is one Store operation: several backend calls sharing one deadline.
type op struct {
	s        *keyringStore
	deadline time.Time
}

type result struct {
	v   string
	err error
}

// call runs f in a goroutine and waits for it until the deadline. On timeout
// the goroutine is abandoned: go-keyring has no way to cancel a call, so it
// stays blocked until the library returns (see the package doc).
func (o *op) call(f func() (string, error)) (string, error) {
	left := time.Until(o.deadline)
	if left <= 0 {
		return "", errDeadline
	}
	ch := make(chan result, 1) // buffered: an abandoned call must not block forever on send
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case r := <-ch:
		if errors.Is(r.err, gokeyring.ErrNotFound) {
			r.err = ErrNotFound
		}
		return r.v, r.err
	case <-t.C:
		return "", errDeadline
	}
}

func (o *op) get(user string) (string, error) {
	return o.call(func() (string, error) { return o.s.be.Get(o.s.service, user) })
}

func (o *op) set(user, value string) error {
	_, err := o.call(func() (string, error) { return "", o.s.be.Set(o.s.service, user, value) })
	return err
}

func (o *op) del(user string) error {
	_, err := o.call(func() (string, error) { return "", o.s.be.Delete(o.s.service, user) })
	return err
}
