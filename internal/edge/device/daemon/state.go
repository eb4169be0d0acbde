package daemon

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/auth"
)

// File names inside the state directory.
const (
	IdentityFile = "identity.json"
	SocketFile   = "control.sock"
)

// DefaultStateDir is /var/lib/omniedge for root and
// $XDG_STATE_HOME/omniedge (else ~/.local/state/omniedge) for other users.
func DefaultStateDir(getenv func(string) string) string {
	if os.Geteuid() == 0 {
		return "/var/lib/omniedge"
	}
	if x := getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "omniedge")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "omniedge")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("omniedge-%d", os.Geteuid()))
}

// Identity is what the device keeps between runs. The private key never
// leaves the device; only the public key is sent to the nucleus.
type Identity struct {
	PrivateKey   wgkey.Key `json:"private_key"`
	PublicKey    wgkey.Key `json:"public_key"`
	HardwareUUID string    `json:"hardware_uuid"`
	DeviceID     string    `json:"device_id,omitempty"`
	// Server is the control plane the tokens belong to.
	Server       string `json:"server,omitempty"`
	Token        string `json:"token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// Followed lists the networks this device joined through the daemon.
	// Following the account's networks (no --network) joins only networks
	// not listed here; for a listed one the daemon reads its membership
	// and does not join again, so that a removal by the owner sticks
	// across restarts.
	Followed []string `json:"followed_networks,omitempty"`
}

// State is the state directory of one device.
type State struct {
	Dir string
	log *slog.Logger

	mu sync.Mutex
	id Identity
}

// OpenState opens (creating with mode 0700) the state directory and loads
// the identity, generating the key pair and hardware uuid on first use.
// A directory or identity file readable by others is tightened to
// 0700/0600 with a warning: the private key may have been exposed.
func OpenState(dir string, log *slog.Logger) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := tighten(dir, 0o700, log); err != nil {
		return nil, err
	}
	s := &State{Dir: dir, log: log}
	id, err := ReadIdentity(dir)
	switch {
	case err == nil:
		if err := tighten(filepath.Join(dir, IdentityFile), 0o600, log); err != nil {
			return nil, err
		}
		s.id = id
		return s, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if s.id, err = NewIdentity(); err != nil {
		return nil, err
	}
	return s, s.save()
}

func tighten(path string, mode fs.FileMode, log *slog.Logger) error {
	if err := auth.Restrict(path, mode, "state file", log); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// NewIdentity generates an X25519 key pair and a random hardware uuid.
func NewIdentity() (Identity, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	var id Identity
	copy(id.PrivateKey[:], priv.Bytes())
	copy(id.PublicKey[:], priv.PublicKey().Bytes())
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return Identity{}, err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	id.HardwareUUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	return id, nil
}

// ReadIdentity reads dir/identity.json without creating anything; a
// missing directory or file is fs.ErrNotExist.
func ReadIdentity(dir string) (Identity, error) {
	var id Identity
	b, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if err != nil {
		return id, err
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("state: %s: %w", IdentityFile, err)
	}
	priv, err := ecdh.X25519().NewPrivateKey(id.PrivateKey[:])
	if err != nil {
		return id, fmt.Errorf("state: %s: %w", IdentityFile, err)
	}
	if pub := priv.PublicKey().Bytes(); string(pub) != string(id.PublicKey[:]) {
		return id, fmt.Errorf("state: %s: public key does not match the private key", IdentityFile)
	}
	if id.HardwareUUID == "" {
		return id, fmt.Errorf("state: %s: no hardware_uuid", IdentityFile)
	}
	return id, nil
}

// Identity returns a copy of the current identity.
func (s *State) Identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// Update changes the identity and writes it.
func (s *State) Update(f func(*Identity)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.id
	old.Followed = slices.Clone(old.Followed)
	f(&s.id)
	if reflect.DeepEqual(s.id, old) {
		return nil
	}
	return s.save()
}

// save writes identity.json atomically with mode 0600. s.mu is held or
// the State is not shared yet.
func (s *State) save() error {
	b, err := json.MarshalIndent(s.id, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".identity-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("state: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.Dir, IdentityFile)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}
