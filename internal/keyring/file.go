package keyring

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"unicode/utf8"

	"github.com/rogpeppe/go-internal/lockedfile"
)

// NewFile returns a plaintext store for --insecure-storage: one JSON file
// at path (mode 0600, its directory created 0700). Every write replaces the
// file atomically (temporary file and rename) under an advisory lock on
// path+".lock", so concurrent writers, in this process or others, lose
// nothing and readers never see a half-written file.
func NewFile(path string) Store {
	return &fileStore{path: path}
}

// fileData is the file's format.
type fileData struct {
	Version int                    `json:"version"`
	Secrets map[string]secretValue `json:"secrets"`
}

// secretValue is a JSON string when it is valid UTF-8, else
// {"base64": "..."}: JSON strings cannot carry arbitrary bytes, and the
// keyring store keeps them.
type secretValue string

func (v secretValue) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(v)) {
		return json.Marshal(string(v))
	}
	return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString([]byte(v))})
}

func (v *secretValue) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = secretValue(s)
		return nil
	}
	var enc struct {
		Base64 *string `json:"base64"`
	}
	if err := json.Unmarshal(b, &enc); err != nil || enc.Base64 == nil {
		return errors.New("bad value")
	}
	raw, err := base64.StdEncoding.DecodeString(*enc.Base64)
	if err != nil {
		return errors.New("bad base64 value")
	}
	*v = secretValue(raw)
	return nil
}

type fileStore struct {
	path string
	mu   sync.Mutex // with the file lock, which alone does not order goroutines on all platforms
}

func (f *fileStore) Kind() string     { return "file" }
func (f *fileStore) Location() string { return f.path }

func (f *fileStore) Get(account string) (string, error) {
	d, err := f.read()
	if err != nil {
		return "", f.fail("get", account, err)
	}
	v, ok := d.Secrets[account]
	if !ok {
		return "", fmt.Errorf("secrets file get %q: %w", account, ErrNotFound)
	}
	return string(v), nil
}

func (f *fileStore) Set(account, value string) error {
	return f.update("set", account, func(d *fileData) bool {
		d.Secrets[account] = secretValue(value)
		return true
	})
}

func (f *fileStore) Delete(account string) error {
	return f.update("delete", account, func(d *fileData) bool {
		if _, ok := d.Secrets[account]; !ok {
			return false
		}
		delete(d.Secrets, account)
		return true
	})
}

// update applies change under the lock and writes the result when change
// reports that it found something to change; otherwise it is ErrNotFound.
func (f *fileStore) update(name, account string, change func(*fileData) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return f.fail(name, account, err)
	}
	unlock, err := lockedfile.MutexAt(f.path + ".lock").Lock()
	if err != nil {
		return f.fail(name, account, err)
	}
	defer unlock()
	d, err := f.read()
	if err != nil {
		return f.fail(name, account, err)
	}
	if !change(d) {
		return fmt.Errorf("secrets file %s %q: %w", name, account, ErrNotFound)
	}
	if err := f.write(d); err != nil {
		return f.fail(name, account, err)
	}
	return nil
}

func (f *fileStore) read() (*fileData, error) {
	d := &fileData{Version: 1, Secrets: map[string]secretValue{}}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, d); err != nil || d.Version != 1 {
		// Not err itself: JSON errors quote bits of the content.
		return nil, errors.New("not a crewgate secrets file (version 1 JSON)")
	}
	if d.Secrets == nil {
		d.Secrets = map[string]secretValue{}
	}
	return d, nil
}

func (f *fileStore) write(d *fileData) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), filepath.Base(f.path)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}

func (f *fileStore) fail(name, account string, err error) error {
	return &Error{Op: name, Account: account, Err: err, file: true,
		hint: "check that " + f.path + " is readable and writable by you (or remove it and store the secrets again)"}
}
