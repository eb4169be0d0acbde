package hosted

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/platform/auth"
)

// KeyFile is the file of the state directory that holds the nucleus's
// static X25519 private key (standard base64, mode 0600).
const KeyFile = "nucleus.key"

// LoadKey returns the nucleus's static key kept in dir, making the
// directory (0700) and a new key on first use. A directory or key file
// that others could read is restricted with a warning (the key may have
// been exposed); a file that holds no valid key is an error, never
// replaced: the devices know the key, so a new one cuts them off until
// they join again.
func LoadKey(dir string, log *slog.Logger) (*ecdh.PrivateKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("hosted nucleus: state dir: %w", err)
	}
	if err := restrict(dir, 0o700, log); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := restrict(path, 0o600, log); err != nil {
			return nil, err
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("hosted nucleus: %s holds no key (32 bytes in standard base64)", path)
		}
		return nucleus.NewPrivateKey(raw)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("hosted nucleus: %w", err)
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeFile(dir, KeyFile, []byte(base64.StdEncoding.EncodeToString(k.Bytes())+"\n")); err != nil {
		return nil, err
	}
	log.Info("hosted nucleus: new static key", "path", path, "public_key", nucleus.PublicKeyOf(k).String())
	return k, nil
}

func restrict(path string, mode fs.FileMode, log *slog.Logger) error {
	if err := auth.Restrict(path, mode, "nucleus state", log); err != nil {
		return fmt.Errorf("hosted nucleus: %w", err)
	}
	return nil
}

// writeFile writes dir/name atomically with mode 0600.
func writeFile(dir, name string, b []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return fmt.Errorf("hosted nucleus: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(b)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		return fmt.Errorf("hosted nucleus: %w", err)
	}
	return nil
}
