// Package demo holds what `crewgate demo` needs to show crewgate's main job
// on local stand-ins: an OpenAI-compatible HTTPS API on 127.0.0.1 whose
// answers contain fake secrets, and a small sample agent that calls it.
package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Agent is the sample agent: Python 3 with the standard library only, so it
// runs wherever python3 does.
//
//go:embed agent.py
var Agent string

// Host is the name the stand-in answers to. crewgate dials the stand-in
// instead (the upstream's address), so no internet is needed.
const Host = "api.openai.com"

// StandIn is an OpenAI-compatible API on 127.0.0.1 that only accepts one key.
type StandIn struct {
	Addr    string // host:port to dial
	CertPEM []byte // its self-signed certificate, for the upstream's ca_file

	key  string
	srv  *http.Server
	mu   sync.Mutex
	good int // requests that carried the right key
	bad  int // requests that did not
}

// NewStandIn starts the stand-in; it accepts requests with "Bearer key".
func NewStandIn(key string) (*StandIn, error) {
	cert, certPEM, err := selfSigned(Host)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &StandIn{Addr: ln.Addr().String(), CertPEM: certPEM, key: key}
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	go s.srv.ServeTLS(ln, "", "")
	return s, nil
}

// Close stops the stand-in.
func (s *StandIn) Close() error { return s.srv.Close() }

// Requests reports how many requests carried the right key and how many did not.
func (s *StandIn) Requests() (good, bad int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.good, s.bad
}

// answer is what the model "says": it leaks things a crew must never see.
func answer(sentKey string) string {
	return "Deploy notes: the CI user has AWS key AKIAIOSFODNN7EXAMPLE, page ops-oncall@example.com " +
		"if it fails, and by the way the key you sent me is " + sentKey + "."
}

func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sent := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	ok := sent == s.key
	if ok {
		s.good++
	} else {
		s.bad++
	}
	s.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`)
		return
	}
	switch r.URL.Path {
	case "/v1/models":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"stand-in-1","object":"model","owned_by":"crewgate-demo"}]}`)
	case "/v1/chat/completions":
		var req struct {
			Stream bool `json:"stream"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
		if req.Stream {
			s.stream(w, answer(sent))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-demo", "object": "chat.completion", "model": "stand-in-1",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": answer(sent)}}},
		})
	default:
		http.NotFound(w, r)
	}
}

// stream sends text as an OpenAI Chat Completions stream, a few characters
// per event, so every secret is split across events as a real model would.
func (s *StandIn) stream(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	event := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	for i := 0; i < len(text); i += 4 {
		piece := text[i:min(i+4, len(text))]
		event(map[string]any{"id": "chatcmpl-demo", "object": "chat.completion.chunk",
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": piece}}}})
		time.Sleep(15 * time.Millisecond)
	}
	event(map[string]any{"id": "chatcmpl-demo", "object": "chat.completion.chunk",
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	io.WriteString(w, "data: [DONE]\n\n")
}

func selfSigned(host string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host + " (crewgate demo stand-in)"},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
