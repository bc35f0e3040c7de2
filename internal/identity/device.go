package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DeviceCode is a started device login: show VerificationURI (or
// VerificationURIComplete) and UserCode to the user, then Poll.
// The device code itself is a secret and is never printed.
type DeviceCode struct {
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string        // empty when the provider gives none
	ExpiresAt               time.Time     // wall-clock time, for display
	Interval                time.Duration // the server's polling interval; 5 s when it gave none

	deviceCode    string
	intervalGiven bool      // the server sent an interval
	deadline      time.Time // local monotonic expiry
}

// String describes dc without the device code.
func (dc DeviceCode) String() string {
	return fmt.Sprintf("identity.DeviceCode{UserCode:%s VerificationURI:%s VerificationURIComplete:%s ExpiresAt:%s Interval:%s}",
		dc.UserCode, dc.VerificationURI, dc.VerificationURIComplete, dc.ExpiresAt.UTC().Format(time.RFC3339), dc.Interval)
}

// GoString is String, so %#v does not show the device code.
func (dc DeviceCode) GoString() string { return dc.String() }

// Format writes String for every verb.
func (dc DeviceCode) Format(f fmt.State, _ rune) { io.WriteString(f, dc.String()) }

type deviceAuthResponse struct {
	DeviceCode              string      `json:"device_code"`
	UserCode                string      `json:"user_code"`
	VerificationURI         string      `json:"verification_uri"`
	VerificationURL         string      `json:"verification_url"` // Google's spelling
	VerificationURIComplete string      `json:"verification_uri_complete"`
	ExpiresIn               json.Number `json:"expires_in"`
	Interval                json.Number `json:"interval"`
}

// StartDevice asks the provider for a device code (RFC 8628 §3.1) with the
// configured scopes and resources.
//
// The request is built here rather than with x/oauth2's Config.DeviceAuth,
// because x/oauth2 can send a parameter only once and RFC 8707 repeats
// "resource" for each audience.
func (p *Provider) StartDevice(ctx context.Context) (*DeviceCode, error) {
	form := url.Values{"client_id": {p.cfg.ClientID}}
	if len(p.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(p.cfg.Scopes, " "))
	}
	p.resourceParams(form, p.cfg.Resources)
	what := "device authorization endpoint " + p.meta.DeviceAuthURL
	started := time.Now()
	status, ctype, body, err := post(ctx, p.hc, what, p.meta.DeviceAuthURL, form)
	if err != nil {
		return nil, fmt.Errorf("starting the device login: %w", err)
	}
	if err := answerError(what, status, ctype, body); err != nil {
		return nil, fmt.Errorf("starting the device login: %w", err)
	}
	var r deviceAuthResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("starting the device login: %s: the answer is not valid JSON (Content-Type %q)", what, ctype)
	}
	if r.VerificationURI == "" {
		r.VerificationURI = r.VerificationURL
	}
	if r.DeviceCode == "" || r.UserCode == "" || r.VerificationURI == "" {
		return nil, fmt.Errorf("starting the device login: %s answered without device_code, user_code or verification_uri", what)
	}
	expiresIn := 10 * time.Minute
	if n, err := r.ExpiresIn.Int64(); err == nil && n > 0 {
		expiresIn = time.Duration(n) * time.Second
	}
	dc := &DeviceCode{
		UserCode:                r.UserCode,
		VerificationURI:         r.VerificationURI,
		VerificationURIComplete: r.VerificationURIComplete,
		Interval:                5 * time.Second,
		deviceCode:              r.DeviceCode,
		// started carries a monotonic reading, so the deadline ignores
		// wall-clock jumps and the server's Date.
		deadline: started.Add(expiresIn),
	}
	dc.ExpiresAt = dc.deadline.Round(0)
	if n, err := r.Interval.Int64(); err == nil && n > 0 {
		dc.Interval = time.Duration(n) * time.Second
		dc.intervalGiven = true
	}
	return dc, nil
}

// PollOptions tunes Poll.
type PollOptions struct {
	// OnWait, when set, is called before each wait with its length, e.g. to
	// show a countdown or log the interval.
	OnWait func(next time.Duration)
	// MinInterval, when positive, replaces RFC 8628's 5-second unit: the
	// interval used when the server sent none, and the step added per
	// slow_down. Tests set it to milliseconds; leave it zero otherwise.
	MinInterval time.Duration
}

// Poll polls the token endpoint until the user approves or denies the login,
// the device code expires, or ctx is done (then it returns ctx.Err()).
//
// It waits the server's interval times a safety factor (1.2, or 1.4 once the
// server has said slow_down) so that clock drift between client and server
// does not cause slow_down loops; each slow_down adds 5 s to the interval.
// slow_down alone never ends polling: the code's expiry does, measured on the
// local monotonic clock. access_denied and authorization_declined give
// ErrAccessDenied; expired_token or the local expiry give ErrExpired; other
// error codes give an *OAuthError. Network errors and 5xx answers are retried
// a few times with back-off.
func (p *Provider) Poll(ctx context.Context, dc *DeviceCode, opts PollOptions) (*Tokens, error) {
	if dc == nil || dc.deviceCode == "" {
		return nil, errors.New("polling for the login: no device code (call StartDevice first)")
	}
	unit := p.pollUnit
	if opts.MinInterval > 0 {
		unit = opts.MinInterval
	}
	interval := dc.Interval
	if !dc.intervalGiven || interval <= 0 {
		interval = unit
	}
	const maxFailures = 4
	factor := 1.2
	failures := 0
	form := url.Values{
		"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {dc.deviceCode},
		"client_id":   {p.cfg.ClientID},
	}
	p.resourceParams(form, p.cfg.Resources)
	for {
		wait := time.Duration(float64(interval) * factor)
		if failures > 0 {
			wait = max(wait, (unit/5)<<(failures-1))
		}
		remaining := time.Until(dc.deadline)
		expiring := wait >= remaining
		if expiring {
			wait = max(remaining, 0)
		}
		if opts.OnWait != nil {
			opts.OnWait(wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		if expiring {
			return nil, fmt.Errorf("%w: the device code expired before the login was approved", ErrExpired)
		}
		tr, err := p.tokenRequest(ctx, form)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			t, err := tr.tokens(p.cfg.Scopes)
			if err != nil {
				return nil, fmt.Errorf("polling for the login: %w", err)
			}
			return t, nil
		}
		var oe *OAuthError
		if errors.As(err, &oe) {
			failures = 0
			switch oe.Code {
			case "authorization_pending":
				continue
			case "slow_down":
				interval += unit
				factor = 1.4
				continue
			case "access_denied", "authorization_declined":
				return nil, fmt.Errorf("%w (%s)", ErrAccessDenied, oe.Code)
			case "expired_token":
				return nil, fmt.Errorf("%w: the device code expired before the login was approved (%s)", ErrExpired, oe.Code)
			}
			return nil, fmt.Errorf("polling for the login: %w", err)
		}
		if !retryable(err) {
			return nil, fmt.Errorf("polling for the login: %w", err)
		}
		failures++
		if failures >= maxFailures {
			return nil, fmt.Errorf("polling for the login failed %d times in a row: %w", failures, err)
		}
	}
}

// retryable reports whether a failed request may succeed later: transport
// errors, 5xx and 429 answers.
func retryable(err error) bool {
	var se *httpStatusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests
	}
	var oe *OAuthError
	return !errors.As(err, &oe)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
