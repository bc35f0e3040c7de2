package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Tokens is what the token endpoint returned. Every field but Expiry and
// Scopes is a secret, so Tokens redacts itself in String, GoString, every fmt
// verb, slog and JSON: printing one by accident shows no secret.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	Expiry       time.Time // access-token expiry; zero when the provider gave none
	Scopes       []string  // granted scopes (the requested ones when the provider does not say)
}

// String describes t without its secrets.
func (t Tokens) String() string {
	exp := "none"
	if !t.Expiry.IsZero() {
		exp = t.Expiry.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("identity.Tokens{AccessToken:%s RefreshToken:%s IDToken:%s Expiry:%s Scopes:%q}",
		redacted(t.AccessToken), redacted(t.RefreshToken), redacted(t.IDToken), exp, t.Scopes)
}

// GoString is String, so %#v redacts too.
func (t Tokens) GoString() string { return t.String() }

// Format writes String for every verb (%v, %+v, %#v, %s, %q, %x...).
func (t Tokens) Format(f fmt.State, _ rune) { io.WriteString(f, t.String()) }

// LogValue makes slog log t without its secrets.
func (t Tokens) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("access_token", t.AccessToken != ""),
		slog.Bool("refresh_token", t.RefreshToken != ""),
		slog.Bool("id_token", t.IDToken != ""),
		slog.Time("expiry", t.Expiry),
		slog.Any("scopes", t.Scopes),
	)
}

// MarshalJSON encodes t without its secrets; store the fields you need
// explicitly instead.
func (t Tokens) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		AccessToken  string    `json:"access_token"`
		RefreshToken string    `json:"refresh_token"`
		IDToken      string    `json:"id_token"`
		Expiry       time.Time `json:"expiry"`
		Scopes       []string  `json:"scopes"`
	}{redacted(t.AccessToken), redacted(t.RefreshToken), redacted(t.IDToken), t.Expiry, t.Scopes})
}

func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return "[redacted]"
}

// OAuthError is an error response from an OAuth endpoint (RFC 6749 §5.2).
// It never holds a token.
type OAuthError struct {
	Endpoint    string // what was being done, e.g. "token endpoint https://idp/token"
	Status      int    // HTTP status
	Code        string // the "error" field, e.g. "invalid_grant"
	Description string // the "error_description" field
}

func (e *OAuthError) Error() string {
	msg := fmt.Sprintf("%s answered %s", e.Endpoint, e.Code)
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// httpStatusError is a non-2xx answer without an OAuth error body.
type httpStatusError struct {
	what   string
	status string
	code   int
}

func (e *httpStatusError) Error() string { return fmt.Sprintf("%s answered %s", e.what, e.status) }

// tokenResponse is the union of the token-endpoint fields we read.
type tokenResponse struct {
	AccessToken  string      `json:"access_token"`
	TokenType    string      `json:"token_type"`
	RefreshToken string      `json:"refresh_token"`
	IDToken      string      `json:"id_token"`
	ExpiresIn    json.Number `json:"expires_in"`
	Scope        string      `json:"scope"`
	Error        string      `json:"error"`
	ErrorDesc    string      `json:"error_description"`
}

// post sends form to endpoint and returns the answer's status, Content-Type
// and body (at most 1 MiB). what names the endpoint in errors; errors never
// include the request or response body, which may hold secrets.
func post(ctx context.Context, hc *http.Client, what, endpoint string, form url.Values) (int, string, []byte, error) {
	req, err := formRequest(ctx, what, endpoint, form)
	if err != nil {
		return 0, "", nil, err
	}
	return send(hc, what, req)
}

// formRequest is a POST of form to endpoint that asks for JSON.
func formRequest(ctx context.Context, what, endpoint string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// send does req and reads the answer, as post describes.
func send(hc *http.Client, what string, req *http.Request) (int, string, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error repeats the URL that what already names; keep its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s: reading the answer: %w", what, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, nil
}

// answerError turns a non-2xx answer (or a 2xx one carrying an "error"
// field, as GitHub sends) into *OAuthError or *httpStatusError; nil otherwise.
func answerError(what string, status int, ctype string, body []byte) error {
	var tr tokenResponse
	if decodeTokenResponse(ctype, body, &tr) == nil && tr.Error != "" {
		return &OAuthError{Endpoint: what, Status: status, Code: tr.Error, Description: tr.ErrorDesc}
	}
	if status < 200 || status > 299 {
		return &httpStatusError{what: what, status: fmt.Sprintf("%d %s", status, http.StatusText(status)), code: status}
	}
	return nil
}

// tokenRequest POSTs form to the token endpoint and decodes a successful answer.
func (p *Provider) tokenRequest(ctx context.Context, form url.Values) (*tokenResponse, error) {
	what := "token endpoint " + p.meta.TokenURL
	status, ctype, body, err := post(ctx, p.hc, what, p.meta.TokenURL, form)
	if err != nil {
		return nil, err
	}
	if err := answerError(what, status, ctype, body); err != nil {
		return nil, err
	}
	var tr tokenResponse
	if err := decodeTokenResponse(ctype, body, &tr); err != nil {
		return nil, fmt.Errorf("%s: the answer is not valid JSON (Content-Type %q)", what, ctype)
	}
	return &tr, nil
}

func decodeTokenResponse(contentType string, body []byte, tr *tokenResponse) error {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return err
		}
		*tr = tokenResponse{
			AccessToken: v.Get("access_token"), TokenType: v.Get("token_type"),
			RefreshToken: v.Get("refresh_token"), IDToken: v.Get("id_token"),
			ExpiresIn: json.Number(v.Get("expires_in")), Scope: v.Get("scope"),
			Error: v.Get("error"), ErrorDesc: v.Get("error_description"),
		}
		return nil
	}
	return json.Unmarshal(body, tr)
}

// tokens turns a successful token response into Tokens, measuring the
// expiry from now (the local clock), not from the server's Date.
func (tr *tokenResponse) tokens(requested []string) (*Tokens, error) {
	if tr.AccessToken == "" {
		return nil, errors.New("the token endpoint answered without an access_token")
	}
	t := &Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, IDToken: tr.IDToken}
	if s := tr.ExpiresIn.String(); s != "" {
		if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 {
			t.Expiry = time.Now().Add(time.Duration(n * float64(time.Second)))
		}
	}
	if tr.Scope != "" {
		t.Scopes = strings.Fields(tr.Scope)
	} else {
		t.Scopes = append([]string(nil), requested...)
	}
	return t, nil
}
