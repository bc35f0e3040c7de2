package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certsIn returns the DER of every CERTIFICATE block in data and the types
// of all blocks.
func certsIn(t *testing.T, data []byte) (ders [][]byte, types []string) {
	t.Helper()
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			if len(bytes.TrimSpace(data)) != 0 {
				t.Fatalf("bundle has trailing non-PEM data: %q", data)
			}
			return ders, types
		}
		types = append(types, b.Type)
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
}

func has(ders [][]byte, der []byte) bool {
	for _, d := range ders {
		if bytes.Equal(d, der) {
			return true
		}
	}
	return false
}

// otherCA returns a throwaway CA certificate standing in for a system root
// or a user's corporate CA.
func otherCA(t *testing.T, host string) *CA {
	t.Helper()
	c, err := New([]string{host}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeTemp(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// listTree returns the paths under root (relative), root excluded.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteBundle(t *testing.T) {
	c := newTestCA(t)
	src := t.TempDir()
	sys1, sys2, extra := otherCA(t, "sys1.test"), otherCA(t, "sys2.test"), otherCA(t, "corp.test")
	sysFile := writeTemp(t, src, "system.pem", append(append([]byte("# comment\n"), sys1.PEM()...), sys2.PEM()...))
	// The user's file also carries a key (a combined PEM): it must not be copied.
	keyPEM := []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKey\n-----END PRIVATE KEY-----\n")
	extraFile := writeTemp(t, src, "corp.pem", append(append([]byte(nil), keyPEM...), extra.PEM()...))
	dupFile := writeTemp(t, src, "dup.pem", sys1.PEM())

	tmp := t.TempDir()
	later := otherCA(t, "later.test") // a second system file: only the first one found counts
	laterFile := writeTemp(t, t.TempDir(), "later.pem", later.PEM())
	roots := rootSource{files: []string{filepath.Join(src, "missing.pem"), sysFile, laterFile}, dirs: []string{src}}
	b, err := writeBundle(c, []string{"", filepath.Join(src, "absent.pem"), extraFile, dupFile}, roots, tmp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Remove() })

	if filepath.Dir(b.File) != b.Dir || filepath.Dir(b.Dir) != tmp {
		t.Errorf("bundle %s in %s, want a fresh dir in %s", b.File, b.Dir, tmp)
	}
	if got := listTree(t, tmp); len(got) != 2 {
		t.Errorf("files written: %q, want the dir and the bundle only", got)
	}
	if fi, err := os.Stat(b.Dir); err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Errorf("dir mode %v (%v), want 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(b.File); err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
		t.Errorf("file mode %v (%v), want 0600", fi.Mode(), err)
	}

	data, err := os.ReadFile(b.File)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Error("bundle contains a PRIVATE KEY block")
	}
	ders, types := certsIn(t, data)
	for _, typ := range types {
		if typ != "CERTIFICATE" {
			t.Errorf("bundle holds a %s block", typ)
		}
	}
	for name, want := range map[string]*CA{"system root 1": sys1, "system root 2": sys2, "extra CA": extra, "session CA": c} {
		if !has(ders, want.Certificate().Raw) {
			t.Errorf("bundle lacks the %s", name)
		}
	}
	if has(ders, later.Certificate().Raw) {
		t.Error("bundle holds a root from a second system file")
	}
	if len(ders) != 4 {
		t.Errorf("bundle holds %d certificates, want 4 (duplicates once, dirs unread when a file exists)", len(ders))
	}
	// Go (standing in for every client) trusts the session CA from the file.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("bundle does not parse as a cert pool")
	}
	leaf, err := c.Leaf("good.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "good.test", Roots: pool}); err != nil {
		t.Errorf("leaf does not verify against the bundle: %v", err)
	}

	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, tmp); len(got) != 0 {
		t.Errorf("left after Remove: %q", got)
	}
	if err := b.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := (*Bundle)(nil).Remove(); err != nil {
		t.Errorf("nil Remove: %v", err)
	}
}

func TestWriteBundleRootDirs(t *testing.T) {
	c := newTestCA(t)
	dir, userDir := t.TempDir(), t.TempDir()
	a, b, u := otherCA(t, "a.test"), otherCA(t, "b.test"), otherCA(t, "u.test")
	writeTemp(t, dir, "a.pem", a.PEM())
	writeTemp(t, dir, "b.crt", b.PEM())
	writeTemp(t, dir, "README", []byte("not a certificate\n"))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.pem", filepath.Join(dir, "1234abcd.0")); err != nil {
		t.Fatal(err)
	}
	writeTemp(t, userDir, "u.pem", u.PEM())

	count := func(src rootSource) [][]byte {
		t.Helper()
		bundle, err := writeBundle(c, nil, src, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer bundle.Remove()
		data, err := os.ReadFile(bundle.File)
		if err != nil {
			t.Fatal(err)
		}
		ders, _ := certsIn(t, data)
		return ders
	}

	// No system file: the directories are read.
	ders := count(rootSource{files: []string{filepath.Join(dir, "none.pem")}, dirs: []string{dir, filepath.Join(dir, "none")}})
	if len(ders) != 3 || !has(ders, a.Certificate().Raw) || !has(ders, b.Certificate().Raw) || !has(ders, c.Certificate().Raw) {
		t.Errorf("from dirs: %d certificates, want a, b and the session CA", len(ders))
	}

	// A system file wins over the directories, but SSL_CERT_DIR is always read.
	sysFile := writeTemp(t, t.TempDir(), "sys.pem", b.PEM())
	ders = count(rootSource{files: []string{sysFile}, dirs: []string{dir}, userDirs: []string{userDir}})
	if len(ders) != 3 || !has(ders, b.Certificate().Raw) || !has(ders, u.Certificate().Raw) || has(ders, a.Certificate().Raw) {
		t.Errorf("file + SSL_CERT_DIR: %d certificates, want b, u and the session CA", len(ders))
	}

	// No roots at all (Windows): the session CA alone.
	ders = count(rootSource{})
	if len(ders) != 1 || !has(ders, c.Certificate().Raw) {
		t.Errorf("no roots: %d certificates, want the session CA", len(ders))
	}
}

func TestWriteBundleBadExtraFile(t *testing.T) {
	c := newTestCA(t)
	src := t.TempDir()
	notPEM := writeTemp(t, src, "notpem.crt", []byte("this is not PEM\n"))
	keyOnly := writeTemp(t, src, "key.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	empty := writeTemp(t, src, "empty.pem", nil)
	der := writeTemp(t, src, "ca.der", c.Certificate().Raw)
	dir := filepath.Join(src, "adir") // unreadable as a file, even for root
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{notPEM, keyOnly, empty, der, dir} {
		tmp := t.TempDir()
		b, err := writeBundle(c, []string{bad}, rootSource{}, tmp)
		if err == nil {
			b.Remove()
			t.Errorf("%s: no error", filepath.Base(bad))
			continue
		}
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("error %q does not name %s", err, bad)
		}
		if got := listTree(t, tmp); len(got) != 0 {
			t.Errorf("%s: left behind %q", filepath.Base(bad), got)
		}
	}
}

// TestWriteBundleSystem uses the machine's real roots through the exported
// function and checks that the CA key reaches no file.
func TestWriteBundleSystem(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("SSL_CERT_DIR", "")
	c := newTestCA(t)
	if _, err := c.Leaf("good.test"); err != nil {
		t.Fatal(err)
	}
	b, err := WriteBundle(c, []string{filepath.Join(tmp, "absent.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Remove()
	if filepath.Dir(b.Dir) != tmp {
		t.Errorf("bundle dir %s not under TMPDIR", b.Dir)
	}
	if got := listTree(t, tmp); len(got) != 2 {
		t.Errorf("files written: %q, want the dir and the bundle only", got)
	}
	data, err := os.ReadFile(b.File)
	if err != nil {
		t.Fatal(err)
	}
	ders, types := certsIn(t, data)
	if len(ders) != len(types) {
		t.Errorf("bundle holds non-certificate blocks: %q", types)
	}
	if !has(ders, c.Certificate().Raw) {
		t.Error("bundle lacks the session CA")
	}

	// Every form the key could take on disk.
	pkcs8, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := c.key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{pkcs8, sec1, scalar, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})} {
		if bytes.Contains(data, secret) {
			t.Fatal("the CA key is in the bundle")
		}
	}
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Error("bundle contains a PRIVATE KEY block")
	}

	var sysFile string
	for _, f := range systemRootFiles {
		if _, err := os.Stat(f); err == nil {
			sysFile = f
			break
		}
	}
	if sysFile == "" {
		t.Logf("no system root file on this machine; bundle has %d certificates", len(ders))
		return
	}
	sys, err := os.ReadFile(sysFile)
	if err != nil {
		t.Fatal(err)
	}
	sysDers, _ := certsIn(t, sys)
	for _, d := range sysDers {
		if !has(ders, d) {
			t.Fatalf("bundle lacks a root from %s", sysFile)
		}
	}
	t.Logf("bundle: %d certificates from %s plus the session CA, %d bytes", len(sysDers), sysFile, len(data))
}
