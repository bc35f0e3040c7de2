package ca

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// bundleName is the file name of the bundle inside Bundle.Dir.
const bundleName = "ca-bundle.pem"

// bundlePrefix starts the name of every bundle directory: then the pid of
// the crewgate that wrote it, '-', and a random part.
const bundlePrefix = "crewgate-ca-"

// staleAge is when a bundle is stale whoever wrote it: the session CA in it
// has expired (it lives at most 24 h).
const staleAge = 24 * time.Hour

// sweepStale removes, from tmp (the system temporary directory when
// empty), the bundle directories of this user whose crewgate is gone or
// that are older than staleAge. It never fails a run: what it cannot
// remove stays.
func sweepStale(tmp string) {
	if tmp == "" {
		tmp = os.TempDir()
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), bundlePrefix)
		if !ok || !e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil || !ownedByMe(info) {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		// Linux pids stay below 2^22; a longer number is an older
		// crewgate's random name, judged by its age alone.
		gone := err == nil && pid > 0 && pid <= 1<<22 && pid != os.Getpid() && !processAlive(pid)
		if gone || time.Since(info.ModTime()) > staleAge {
			_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
		}
	}
}

// Bundle is the trust bundle handed to the child: one PEM file with the
// system roots, the CA files the user already points at, and the session
// CA, written 0600 in a fresh 0700 temporary directory. It holds
// certificates only, never a private key.
type Bundle struct {
	Dir  string // the private directory; Remove deletes it
	File string // the PEM file inside Dir
}

// rootSource says where the system roots are: the first file of files that
// exists, and every certificate file in dirs (dirs only when no file exists).
type rootSource struct {
	files, dirs []string
	userDirs    []string // SSL_CERT_DIR: always read
}

// WriteBundle writes the trust bundle for c.
//
// extraFiles are CA files the user already relies on: the values of
// SSL_CERT_FILE and REQUESTS_CA_BUNDLE from crewgate's own environment.
// Empty values and files that do not exist are skipped; a file that cannot
// be read or holds no PEM certificate is an error naming it. Only
// CERTIFICATE blocks are copied, so a key kept in the same file stays out.
//
// System roots: on Linux, the BSDs and Solaris, the first existing file of
// the list crypto/x509 uses on that system or, when there is none, the
// certificates in its directories; plus certDirs (the caller's
// SSL_CERT_DIR, split), since the user points at those too. On macOS
// it is the /etc/ssl/cert.pem snapshot of the system roots, without roots
// added to the keychain. On Windows there is no exportable root store: the
// bundle holds the extra files and the session CA only, so clients that
// take it as their sole trust can reach only intercepted hosts and hosts
// whose roots the extra files carry.
//
// Certificates appearing in more than one source are written once.
func WriteBundle(c *CA, extraFiles, certDirs []string) (*Bundle, error) {
	src := rootSource{files: systemRootFiles, dirs: systemRootDirs, userDirs: certDirs}
	return writeBundle(c, extraFiles, src, "")
}

// Remove deletes the bundle's directory and everything in it. It is safe to
// call more than once.
func (b *Bundle) Remove() error {
	if b == nil || b.Dir == "" {
		return nil
	}
	if err := os.RemoveAll(b.Dir); err != nil {
		return fmt.Errorf("remove CA bundle: %w", err)
	}
	return nil
}

func writeBundle(c *CA, extraFiles []string, src rootSource, tmp string) (*Bundle, error) {
	var w pemSet
	w.addSystem(src)
	for _, name := range extraFiles {
		if err := w.addExtra(name); err != nil {
			return nil, fmt.Errorf("write CA bundle: %w", err)
		}
	}
	w.add(c.cert.Raw)

	// Named after crewgate's pid, so that the next run can tell a bundle
	// left by a crewgate that was killed outright (SIGKILL) and sweep it.
	sweepStale(tmp)
	dir, err := os.MkdirTemp(tmp, bundlePrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("write CA bundle: %w", err)
	}
	b := &Bundle{Dir: dir, File: filepath.Join(dir, bundleName)}
	if err := writeFile(dir, b.File, w.buf); err != nil {
		_ = b.Remove()
		return nil, fmt.Errorf("write CA bundle: %w", err)
	}
	return b, nil
}

func writeFile(dir, name string, data []byte) error {
	// MkdirTemp makes 0700 and O_CREATE 0600 is only narrowed by the umask;
	// the chmods make both exact.
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pemSet accumulates CERTIFICATE blocks, each distinct certificate once.
type pemSet struct {
	buf  []byte
	seen map[string]bool
}

func (s *pemSet) add(der []byte) {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	if s.seen[string(der)] {
		return
	}
	s.seen[string(der)] = true
	s.buf = append(s.buf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
}

// addPEM adds the CERTIFICATE blocks in data and reports how many it found.
func (s *pemSet) addPEM(data []byte) int {
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return n
		}
		if block.Type == "CERTIFICATE" && len(block.Headers) == 0 {
			s.add(block.Bytes)
			n++
		}
	}
}

// addSystem adds the system roots; what cannot be read is skipped, as
// crypto/x509 does.
func (s *pemSet) addSystem(src rootSource) {
	found := false
	for _, name := range src.files {
		if data, err := os.ReadFile(name); err == nil {
			s.addPEM(data)
			found = true
			break
		}
	}
	dirs := src.userDirs
	if !found {
		dirs = append(append([]string(nil), src.dirs...), src.userDirs...)
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if sameDirSymlink(dir, e) {
				continue // c_rehash's hash links repeat files already read
			}
			if data, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				s.addPEM(data)
			}
		}
	}
}

func (s *pemSet) addExtra(name string) error {
	if name == "" {
		return nil
	}
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read CA file %s: %w", name, err)
	}
	if s.addPEM(data) == 0 {
		return fmt.Errorf("CA file %s holds no PEM certificate", name)
	}
	return nil
}

func sameDirSymlink(dir string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	target, err := os.Readlink(filepath.Join(dir, e.Name()))
	return err == nil && !strings.Contains(target, "/")
}
