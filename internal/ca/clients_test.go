package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireTool returns the path of a program a test needs, skipping the test
// without it, or failing it under CI=true, where it must run.
func requireTool(t *testing.T, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not installed", candidates[len(candidates)-1])
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// clientCase is a TLS server on 127.0.0.1 presenting one leaf, reached as
// host by a real client trusting only the bundle.
type clientCase struct {
	host string // the name (or IP) the client asks for
	leaf func(c *CA) (*tls.Certificate, error)
	ok   bool
}

func clientCases() []clientCase {
	viaLeaf := func(host string) func(c *CA) (*tls.Certificate, error) {
		return func(c *CA) (*tls.Certificate, error) { return c.Leaf(host) }
	}
	forged := func(tmpl *x509.Certificate) func(c *CA) (*tls.Certificate, error) {
		return func(c *CA) (*tls.Certificate, error) { return c.issue(tmpl) }
	}
	return []clientCase{
		{"good.test", viaLeaf("good.test"), true},
		{"a.example.test", viaLeaf("a.example.test"), true},
		{"evil.test", forged(&x509.Certificate{DNSNames: []string{"evil.test"}}), false},
		{"example.test", forged(&x509.Certificate{DNSNames: []string{"example.test"}}), false},
		{"127.0.0.1", forged(&x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}), false},
	}
}

const helloBody = "hello from the stand-in upstream"

// serve starts an HTTPS server with leaf and returns its port.
func serve(t *testing.T, leaf *tls.Certificate) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, helloBody)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// clientSetup makes a session CA and a real bundle (system roots included)
// in a private temp dir.
func clientSetup(t *testing.T) (*CA, *Bundle) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
	c := newTestCA(t)
	b, err := WriteBundle(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Remove() })
	return c, b
}

func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run %s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

func TestCurlHonoursConstraints(t *testing.T) {
	curl := requireTool(t, "curl")
	version, _, _ := run(t, curl, "--version")
	openssl := strings.Contains(version, "OpenSSL")
	c, b := clientSetup(t)

	for _, tc := range clientCases() {
		t.Run(tc.host, func(t *testing.T) {
			leaf, err := tc.leaf(c)
			if err != nil {
				t.Fatal(err)
			}
			port := serve(t, leaf)
			args := []string{"-q", "--silent", "--show-error", "--max-time", "20", "--noproxy", "*",
				"--cacert", b.File}
			if net.ParseIP(tc.host) == nil {
				args = append(args, "--resolve", tc.host+":"+port+":127.0.0.1")
			}
			args = append(args, "https://"+net.JoinHostPort(tc.host, port)+"/")
			out, errOut, code := run(t, curl, args...)
			if tc.ok {
				if code != 0 || out != helloBody {
					t.Fatalf("curl exit %d, stdout %q, stderr %q; want success", code, out, errOut)
				}
				return
			}
			// 60: the peer's certificate did not verify.
			if code != 60 {
				t.Fatalf("curl exit %d, stdout %q, stderr %q; want 60 (verification failed)", code, out, errOut)
			}
			if openssl && !strings.Contains(errOut, "subtree violation") {
				t.Errorf("curl failed for another reason than the name constraints: %s", errOut)
			}
			t.Logf("curl: %s", strings.SplitN(errOut, "\n", 2)[0])
		})
	}
}

// pyClient connects to 127.0.0.1:port as sni with Python's ssl module,
// trusting only the bundle, in strict X.509 mode (Python 3.13's default).
// Exit 0: verified; 3: verification failed; anything else: a broken test.
const pyClient = `
import socket, ssl, sys
port, cafile, sni = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            t.sendall(b"GET / HTTP/1.1\r\nHost: " + sni.encode() + b"\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := t.recv(65536):
                data += chunk
            sys.stdout.write(data.decode().split("\r\n\r\n", 1)[1])
except ssl.SSLCertVerificationError as e:
    sys.stderr.write("verify failed: %s\n" % e.verify_message)
    sys.exit(3)
`

func TestPythonSSLHonoursConstraints(t *testing.T) {
	python := requireTool(t, "/usr/bin/python3", "python3")
	c, b := clientSetup(t)

	for _, tc := range clientCases() {
		t.Run(tc.host, func(t *testing.T) {
			leaf, err := tc.leaf(c)
			if err != nil {
				t.Fatal(err)
			}
			port := serve(t, leaf)
			out, errOut, code := run(t, python, "-c", pyClient, port, b.File, tc.host)
			if tc.ok {
				if code != 0 || out != helloBody {
					t.Fatalf("python exit %d, stdout %q, stderr %q; want success", code, out, errOut)
				}
				return
			}
			if code != 3 {
				t.Fatalf("python exit %d, stdout %q, stderr %q; want 3 (verification failed)", code, out, errOut)
			}
			if !strings.Contains(errOut, "subtree violation") {
				t.Errorf("python failed for another reason than the name constraints: %s", errOut)
			}
			t.Logf("python: %s", strings.TrimSpace(errOut))
		})
	}
}
