package seal

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ParseMasterKeys parses a comma-separated list of master keys, each
// MasterKeySize bytes in standard padded base64, as given in configuration
// (PARLEY_MASTER_KEY). The first key seals; the others, earlier keys
// kept through a rotation, only open. Spaces around a key are ignored.
// Errors name the position of a bad key, never its content.
func ParseMasterKeys(s string) ([][]byte, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("seal: no master key")
	}
	var keys [][]byte
	for i, field := range strings.Split(s, ",") {
		key, err := parseMasterKey(strings.TrimSpace(field))
		if err != nil {
			return nil, fmt.Errorf("seal: master key %d: %w", i+1, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func parseMasterKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	key, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not valid standard base64")
	}
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("%d bytes, want %d", len(key), MasterKeySize)
	}
	return key, nil
}

// LoadOrCreateKeyFile returns the master keys in the file at path: one
// base64 key per line, the first one active, blank lines and lines starting
// with # ignored. If the file does not exist, it creates it with one new
// random key, mode 0600, durably (file and directory fsynced), creating the
// directory (mode 0700) if needed. Creation is exclusive: when two
// processes start at once, both end up with the key of the one that won.
func LoadOrCreateKeyFile(path string) ([][]byte, error) {
	keys, err := readKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return keys, err
	}
	if err := createKeyFile(path); err != nil {
		return nil, err
	}
	return readKeyFile(path)
}

func readKeyFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	var keys [][]byte
	lines := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; lines.Scan(); n++ {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := parseMasterKey(line)
		if err != nil {
			return nil, fmt.Errorf("seal: key file %s, line %d: %w", path, n, err)
		}
		keys = append(keys, key)
	}
	if err := lines.Err(); err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("seal: key file %s holds no key", path)
	}
	return keys, nil
}

// createKeyFile writes a new key to a temporary file and links it to path,
// which fails if path exists: the file appears complete or not at all, and
// a process that loses the race reads the winner's key.
func createKeyFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("seal: key file directory: %w", err)
	}
	key := make([]byte, MasterKeySize)
	rand.Read(key)
	content := "# Parley message encryption keys: one base64 key per line, the first one\n" +
		"# encrypts, all decrypt. Keep secret; losing it loses every message.\n" +
		base64.StdEncoding.EncodeToString(key) + "\n"

	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("seal: create key file: %w", err)
	}
	defer os.Remove(f.Name()) // for the error paths; fails harmlessly after the Remove below
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("seal: create key file: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("seal: create key file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("seal: create key file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("seal: sync key file directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("seal: sync key file directory: %w", err)
	}
	return nil
}
