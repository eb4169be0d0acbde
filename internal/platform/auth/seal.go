package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
)

// Sealer encrypts small secrets for storage with AES-256-GCM. The output is
// "v1:" + base64(nonce || ciphertext).
type Sealer struct{ aead cipher.AEAD }

// NewSealer builds a sealer from a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, errors.New("auth: sealing key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext; aad binds it to its row (e.g. the record id).
func (s *Sealer) Seal(plaintext, aad []byte) string {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	out := s.aead.Seal(nonce, nonce, plaintext, aad)
	return "v1:" + base64.StdEncoding.EncodeToString(out)
}

// ErrUnseal is returned for tampered, truncated or foreign ciphertexts.
var ErrUnseal = errors.New("auth: cannot decrypt sealed value")

// Open decrypts a value made by Seal with the same aad.
func (s *Sealer) Open(sealed string, aad []byte) ([]byte, error) {
	if len(sealed) < 3 || sealed[:3] != "v1:" {
		return nil, ErrUnseal
	}
	raw, err := base64.StdEncoding.DecodeString(sealed[3:])
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, ErrUnseal
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, raw[:n], raw[n:], aad)
	if err != nil {
		return nil, ErrUnseal
	}
	return pt, nil
}
