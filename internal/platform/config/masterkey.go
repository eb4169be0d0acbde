package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"crypto/rand"
)

// LoadMasterKey returns the 32-byte master key: the configured one (base64),
// else the one in DATA/master.key, created with mode 0600 on first use.
// Replicas sharing a database must share this key.
func (c *Config) LoadMasterKey() ([]byte, error) {
	if v := c.MasterKey.Reveal(); v != "" {
		return decodeKey(v, "--master-key")
	}
	path := filepath.Join(c.DataDir, "master.key")
	b, err := os.ReadFile(path)
	if err == nil {
		return decodeKey(strings.TrimSpace(string(b)), path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("config: read master key: %w", err)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("config: create data dir: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Another process created it first: use theirs.
		return c.LoadMasterKey()
	}
	if err != nil {
		return nil, fmt.Errorf("config: create master key: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		return nil, fmt.Errorf("config: write master key: %w", err)
	}
	return key, f.Sync()
}

func decodeKey(v, from string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("config: master key from %s must be 32 bytes in base64", from)
	}
	return k, nil
}
