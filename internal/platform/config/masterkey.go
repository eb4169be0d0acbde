package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	// Write a complete temporary file, then link it into place: a replica
	// starting at the same moment sees either no key or the whole key, and
	// if it lost the race it reads the winner's.
	tmp, err := os.CreateTemp(c.DataDir, ".master.key-*")
	if err != nil {
		return nil, fmt.Errorf("config: create master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("config: write master key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return c.LoadMasterKey()
		}
		return nil, fmt.Errorf("config: install master key: %w", err)
	}
	return key, nil
}

func decodeKey(v, from string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("config: master key from %s must be 32 bytes in base64", from)
	}
	return k, nil
}
