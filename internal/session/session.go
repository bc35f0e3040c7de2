// Package session assembles one `crewgate run` from a Config: the policy,
// the session log, the approval queue and its control socket, the session
// CA and its trust bundle, the proxy on a loopback port, and the crew's
// environment. It takes crewgate's own environment and logger as inputs and
// never reads the process's; the caller (internal/cli) starts the crew with
// Run.Env and maps the typed errors of Start to exit codes and hints.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/ca"
	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/policy"
	"github.com/crewgate/crewgate/internal/proxy"
	"github.com/crewgate/crewgate/internal/runner"
)

// Options is one run's inputs besides its Config.
type Options struct {
	Config *config.Config
	ID     string   // the session id
	Args   []string // the crew's command, for the log
	// Env is crewgate's own environment: the crew's starts from it, and
	// crewgate's own HTTPS_PROXY and CA variables are read from it.
	Env    []string
	Logger *slog.Logger
	// Credentials opens the upstreams' credential sources.
	Credentials Credentials
	Identity    *identity.Identity // nil when nobody is logged in
	Version     string             // crewgate's, for the log
	// Warn reports trouble that does not stop the run (the audit copy,
	// the control socket).
	Warn func(error)
}

// Error is a failure to assemble the run: what failed, and what to do.
type Error struct {
	What   string // "opening the session log"
	Err    error
	Hint   string
	Config bool // the config is at fault (exit 4)
}

func (e *Error) Error() string { return e.What + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Stop is why crewgate stopped the crew itself, with what to do; it is the
// cause of Run.Context.
type Stop struct {
	Err error
	Fix string // what to do, one line
}

func (s Stop) Error() string { return s.Err.Error() }

// Hint is what to do about it.
func (s Stop) Hint() string { return s.Fix }

// Run is one assembled session, its proxy serving.
type Run struct {
	ID       string
	Proxy    *proxy.Proxy
	Queue    *approval.Queue
	Recorder *audit.Recorder
	Env      []string // the crew's environment
	ProxyURL string

	ctx    context.Context
	stop   context.CancelCauseFunc
	bundle *ca.Bundle
	once   sync.Once
	warn   func(error)
}

// Start assembles and starts the run: every credential is checked before
// anything else starts. On error nothing is left running.
func Start(ctx context.Context, o Options) (_ *Run, err error) {
	cfg := o.Config
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Warn == nil {
		o.Warn = func(error) {}
	}
	pol, err := policy.Compile(cfg)
	if err != nil {
		return nil, err // a *config.Error with file:line
	}

	ups, err := buildUpstreams(ctx, cfg, o.Credentials)
	if err != nil {
		return nil, err
	}

	r := &Run{ID: o.ID, warn: o.Warn}
	r.ctx, r.stop = context.WithCancelCause(context.WithoutCancel(ctx))
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			r.stop(nil)
		}
	}()

	start := audit.Start{Command: o.Args, Version: o.Version, ConfigDigest: configDigest(cfg)}
	if id := o.Identity; id != nil {
		start.Identity = audit.Identity{Subject: id.Subject, Email: id.Email, Name: id.Name, Issuer: id.Issuer, Groups: id.Groups}
	}
	dir := SessionsDir(cfg)
	r.Recorder, err = audit.Open(dir, o.ID, audit.Event{Start: &start}, audit.Options{
		OnError:      cfg.Audit.OnError,
		OTLPEndpoint: cfg.Audit.OTLPEndpoint,
		Warn:         func(err error) { o.Warn(fmt.Errorf("audit: %w", err)) },
	})
	if err != nil {
		return nil, &Error{What: "opening the session log", Err: err, Hint: "check audit.dir (" + dir + "): the crew does not run unrecorded"}
	}
	// A run that fails before its crew ends still closes its log, so the
	// log says how the session ended instead of looking killed.
	cleanups = append(cleanups, func() { r.Recorder.Close(audit.Event{End: &audit.End{ExitCode: 1}}) })
	go func() {
		select {
		case <-r.Recorder.Failed():
			r.stop(Stop{fmt.Errorf("the session log cannot be written (%v), so the crew was stopped (audit.on_error: stop)", r.Recorder.Err()),
				"free space or fix the permissions of " + dir + ", or set audit.on_error: continue"})
		case <-r.ctx.Done():
		}
	}()

	r.Queue = approval.NewQueue(approval.Options{Timeout: cfg.Approval.Timeout, Headless: true})
	cleanups = append(cleanups, r.Queue.Close)
	if cfg.Approval.Headless == "fail" {
		r.Queue.OnDecision(func(req approval.Request, v approval.Verdict) {
			if v.How == approval.HowHeadless {
				r.stop(Stop{fmt.Errorf("rule %s needs approval and there is no terminal to ask, so the crew was stopped (approval.headless: fail)", req.Rule),
					"run the crew on a terminal, or answer from another one with 'crewgate approve'"})
			}
		})
	}
	// A client refused because it runs inside the crew is worth the user's
	// attention: the crew tried to answer its own prompt.
	refused := func(p approval.RefusedPeer) {
		o.Logger.Warn("approvals: refused a control socket client", "session", o.ID, "pid", p.PID, "reason", p.Reason)
	}
	go func() {
		if err := approval.Serve(r.ctx, approval.SocketPath(o.ID), r.Queue, approval.ServeOptions{OnRefusedPeer: refused}); err != nil && r.ctx.Err() == nil {
			o.Warn(fmt.Errorf("approvals: %w; 'crewgate approve' cannot reach this session", err))
		}
	}()

	var hosts []string
	for _, u := range cfg.Upstreams {
		hosts = append(hosts, u.Hosts...)
	}
	if len(hosts) == 0 {
		hosts = []string{"crewgate.invalid"} // nothing to intercept: a CA that can sign nothing useful
	}
	sessionCA, err := ca.New(hosts, 24*time.Hour)
	if err != nil {
		return nil, &Error{What: "creating the session CA", Err: err}
	}
	r.bundle, err = ca.WriteBundle(sessionCA, []string{lookup(o.Env, "SSL_CERT_FILE"), lookup(o.Env, "REQUESTS_CA_BUNDLE")},
		filepath.SplitList(lookup(o.Env, "SSL_CERT_DIR")))
	if err != nil {
		return nil, &Error{What: "writing the CA bundle", Err: err, Hint: "check SSL_CERT_FILE and REQUESTS_CA_BUNDLE in your environment"}
	}
	cleanups = append(cleanups, func() { r.bundle.Remove() })

	credential := randomString(32)
	r.Proxy, err = proxy.New(proxy.Config{
		Upstreams:     ups.list,
		DefaultAction: cfg.DefaultAction,
		CA:            sessionCA,
		Credential:    credential,
		Session:       o.ID,
		UpstreamProxy: upstreamProxy(o.Env),
		Logger:        o.Logger,
		Policy:        pol,
		Identity:      o.Identity,
		Approver:      r.Queue,
		Recorder:      r.Recorder,
		BodyMemory:    int64(cfg.Mask.Memory),
	})
	if err != nil {
		return nil, &Error{What: "building the proxy", Err: err, Config: true}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, &Error{What: "starting the proxy", Err: err}
	}
	go r.Proxy.Serve(ln)
	cleanups = append(cleanups, func() { r.Proxy.Close() })

	r.ProxyURL = (&url.URL{Scheme: "http", User: url.UserPassword("crewgate", credential), Host: ln.Addr().String()}).String()
	r.Env = runner.BuildEnv(o.Env, runner.EnvParams{
		ProxyURL:     r.ProxyURL,
		CABundle:     r.bundle.File,
		Session:      o.ID,
		Placeholders: ups.placeholders,
		KeepEnv:      cfg.KeepEnv,
		Secrets:      ups.secrets,
	})
	o.Logger.Debug("session started", "session", o.ID, "proxy", ln.Addr().String(), "upstreams", len(ups.list))
	return r, nil
}

// Context ends when crewgate stops the crew for a reason of its own (the
// log cannot be written, approval.headless: fail); its cause is a Stop.
func (r *Run) Context() context.Context { return r.ctx }

// Stopped is why crewgate stopped the crew, or nil.
func (r *Run) Stopped() error {
	if c := context.Cause(r.ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return nil
}

// Finish ends the run after the crew exited with code: what still waits
// for approval is denied, the proxy stops, the log is closed with the exit
// code and the trust bundle removed. It returns the proxy's totals.
func (r *Run) Finish(code int) proxy.Stats {
	var st proxy.Stats
	r.once.Do(func() {
		r.Queue.Close()
		r.Proxy.Close()
		st = r.Proxy.Stats()
		if err := r.Recorder.Close(audit.Event{End: &audit.End{ExitCode: code}}); err != nil {
			r.warn(fmt.Errorf("closing the session log: %w", err))
		}
		r.bundle.Remove()
		r.stop(nil)
	})
	return st
}

// SessionsDir is where the config's session logs live.
func SessionsDir(cfg *config.Config) string {
	if cfg.Audit.Dir != "" {
		return cfg.Audit.Dir
	}
	return filepath.Join(config.StateDir(), "sessions")
}

// configDigest identifies the configuration a session ran with.
func configDigest(cfg *config.Config) string {
	b, err := json.Marshal(cfg)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// upstreamProxy is the proxy crewgate itself must use, from its own
// environment.
func upstreamProxy(env []string) *url.URL {
	for _, k := range []string{"HTTPS_PROXY", "https_proxy"} {
		if v := lookup(env, k); v != "" {
			if u, err := url.Parse(v); err == nil && u.Host != "" {
				return u
			}
		}
	}
	return nil
}

// lookup is the value of key in env, the last one when repeated.
func lookup(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
