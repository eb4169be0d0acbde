package daemon

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestStateCreatesAndKeepsIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	if _, err := ReadIdentity(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading a missing state dir: %v", err)
	}
	st, err := OpenState(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, filepath.Join(dir, IdentityFile), 0o600)
	id := st.Identity()
	priv, err := ecdh.X25519().NewPrivateKey(id.PrivateKey[:])
	if err != nil || !bytes.Equal(priv.PublicKey().Bytes(), id.PublicKey[:]) {
		t.Fatalf("public key does not belong to the private key: %v", err)
	}
	if len(id.HardwareUUID) != 36 || id.HardwareUUID[14] != '4' {
		t.Fatalf("hardware uuid %q is not a v4 uuid", id.HardwareUUID)
	}
	if err := st.Update(func(i *Identity) { i.RefreshToken = "oer_x" }); err != nil {
		t.Fatal(err)
	}
	st2, err := OpenState(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := st2.Identity(); got.PrivateKey != id.PrivateKey || got.HardwareUUID != id.HardwareUUID || got.RefreshToken != "oer_x" {
		t.Fatal("identity not kept across opens")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left-over files in the state dir: %v", entries)
	}
}

func TestStateTightensPermissions(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenState(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := st.Identity()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, IdentityFile), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	st, err = OpenState(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, filepath.Join(dir, IdentityFile), 0o600)
	if !reflect.DeepEqual(st.Identity(), want) || strings.Count(logs.String(), "level=WARN") != 2 {
		t.Fatalf("want the identity kept and two warnings, logs: %s", logs.String())
	}
}

func TestStateRefusesBrokenIdentity(t *testing.T) {
	dir := t.TempDir()
	a, _ := NewIdentity()
	b, _ := NewIdentity()
	a.PublicKey = b.PublicKey
	st := &State{Dir: dir, id: a}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(dir, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key pair accepted: %v", err)
	}
}
