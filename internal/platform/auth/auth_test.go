package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v=19" || parts[3] != "m=19456,t=2,p=1" {
		t.Fatalf("hash %q is not a PHC argon2id string with the configured parameters", h)
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) != 16 {
		t.Fatalf("salt %q: %d bytes, %v", parts[4], len(salt), err)
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) != 32 {
		t.Fatalf("key %q: %d bytes, %v", parts[5], len(key), err)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("hash contains the password")
	}

	if err := CheckPassword(h, "correct horse battery staple"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	for _, wrong := range []string{"", "correct horse battery stapl", "correct horse battery staple ", "Correct horse battery staple"} {
		if err := CheckPassword(h, wrong); !errors.Is(err, ErrMismatch) {
			t.Fatalf("CheckPassword(%q) = %v, want ErrMismatch", wrong, err)
		}
	}

	// Salted: the same password hashes differently, and both check.
	h2, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Fatal("two hashes of one password are equal")
	}
	if err := CheckPassword(h2, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}

	// Empty and non-ASCII passwords.
	for _, pw := range []string{"", "pässwörd 🔑", strings.Repeat("x", 1000)} {
		h, err := HashPassword(pw)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPassword(h, pw); err != nil {
			t.Fatalf("CheckPassword(hash(%q)): %v", pw, err)
		}
		if err := CheckPassword(h, pw+"x"); !errors.Is(err, ErrMismatch) {
			t.Fatalf("CheckPassword(hash(%q), +x) = %v", pw, err)
		}
	}
}

// Hashes made with other parameters (older or tuned deployments) still
// check: the parameters are read from the hash.
func TestCheckPasswordOtherParams(t *testing.T) {
	b64 := base64.RawStdEncoding
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 8*1024, 2, 16)
	h := "$argon2id$v=19$m=8192,t=1,p=2$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(key)
	if err := CheckPassword(h, "pw"); err != nil {
		t.Fatalf("CheckPassword with m=8192,t=1,p=2, 16-byte key: %v", err)
	}
	if err := CheckPassword(h, "pW"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	// Changing a parameter in the string breaks the match.
	h2 := strings.Replace(h, "t=1", "t=2", 1)
	if err := CheckPassword(h2, "pw"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("altered parameters: %v", err)
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	good, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	cases := map[string]string{
		"empty":          "",
		"plain text":     "pw",
		"bcrypt":         "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"argon2i":        with(1, "argon2i"),
		"too few parts":  strings.Join(parts[:5], "$"),
		"too many parts": good + "$extra",
		"version 16":     with(2, "v=16"),
		"no version":     with(2, "19"),
		"bad params":     with(3, "m=x,t=2,p=1"),
		"missing params": with(3, "m=19456"),
		"p overflow":     with(3, "m=19456,t=2,p=256"),
		"bad salt":       with(4, "!!!"),
		"padded salt":    with(4, parts[4]+"=="),
		"bad key":        with(5, "@@@"),
		"empty key":      with(5, ""),
	}
	for name, h := range cases {
		err := CheckPassword(h, "pw")
		if err == nil {
			t.Errorf("%s: CheckPassword(%q) = nil", name, h)
		} else if errors.Is(err, ErrMismatch) {
			t.Errorf("%s: CheckPassword(%q) = ErrMismatch, want a malformed-hash error", name, h)
		}
	}
}

// A stored hash with zero rounds or zero lanes must be an error, not a
// panic inside argon2.
func TestCheckPasswordZeroParams(t *testing.T) {
	good, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, params := range []string{"m=19456,t=0,p=1", "m=19456,t=2,p=0"} {
		h := strings.Replace(good, "m=19456,t=2,p=1", params, 1)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("CheckPassword with %s panicked: %v", params, r)
				}
			}()
			if err := CheckPassword(h, "pw"); err == nil || errors.Is(err, ErrMismatch) {
				t.Errorf("CheckPassword with %s = %v, want a malformed-hash error", params, err)
			}
		}()
	}
}

func TestTokenHash(t *testing.T) {
	// SHA-256("abc"), FIPS 180-2 test vector.
	if got := TokenHash("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("TokenHash(abc) = %s", got)
	}
	tok := RandomToken("oe_", 32)
	a, b := TokenHash(tok), TokenHash(tok)
	if a != b || len(a) != 64 {
		t.Fatalf("TokenHash not stable: %s %s", a, b)
	}
	if _, err := hex.DecodeString(a); err != nil || strings.ToLower(a) != a {
		t.Fatalf("TokenHash %q is not lower-case hex", a)
	}
	if TokenHash(tok+"x") == a || TokenHash("") == a {
		t.Fatal("different tokens share a hash")
	}
}

func TestRandomToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := RandomToken("sk_", 32)
		rest, ok := strings.CutPrefix(tok, "sk_")
		if !ok {
			t.Fatalf("token %q lacks its prefix", tok)
		}
		b, err := base64.RawURLEncoding.DecodeString(rest)
		if err != nil || len(b) != 32 || len(rest) != 43 {
			t.Fatalf("token body %q: %d bytes, %v", rest, len(b), err)
		}
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
	}
	if got := RandomToken("", 0); got != "" {
		t.Fatalf("RandomToken(\"\", 0) = %q", got)
	}
	if a, b := RandomBytes(32), RandomBytes(32); len(a) != 32 || bytes.Equal(a, b) {
		t.Fatalf("RandomBytes: %x %x", a, b)
	}
}

func TestDeriveKey(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	a := DeriveKey(master, "jwt")
	if len(a) != 32 || !bytes.Equal(a, DeriveKey(master, "jwt")) {
		t.Fatalf("DeriveKey not a stable 32-byte key: %x", a)
	}
	m := hmac.New(sha256.New, master)
	m.Write([]byte("jwt\x01"))
	if !bytes.Equal(a, m.Sum(nil)) {
		t.Fatal("DeriveKey is not HMAC-SHA256(master, purpose || 0x01)")
	}
	if bytes.Equal(a, DeriveKey(master, "seal")) {
		t.Fatal("different purposes give the same key")
	}
	if bytes.Equal(a, DeriveKey(bytes.Repeat([]byte{8}, 32), "jwt")) {
		t.Fatal("different masters give the same key")
	}
}

func TestSealer(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewSealer(make([]byte, n)); err == nil {
			t.Errorf("NewSealer(%d-byte key) succeeded", n)
		}
	}

	for _, pt := range [][]byte{[]byte("network secret"), {}, bytes.Repeat([]byte{0xff}, 4096)} {
		sealed := s.Seal(pt, []byte("vn_1"))
		if !strings.HasPrefix(sealed, "v1:") {
			t.Fatalf("sealed %q lacks v1:", sealed)
		}
		if len(pt) > 0 && strings.Contains(sealed, string(pt)) {
			t.Fatal("plaintext visible in sealed value")
		}
		got, err := s.Open(sealed, []byte("vn_1"))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, %v; want %q", got, err, pt)
		}
	}

	// Randomised: sealing twice differs; both open.
	a, b := s.Seal([]byte("x"), nil), s.Seal([]byte("x"), nil)
	if a == b {
		t.Fatal("two seals of one value are equal (nonce reuse)")
	}

	sealed := s.Seal([]byte("secret"), []byte("vn_1"))
	// Bound to its aad.
	for _, aad := range [][]byte{[]byte("vn_2"), nil, []byte("vn_1 ")} {
		if _, err := s.Open(sealed, aad); !errors.Is(err, ErrUnseal) {
			t.Fatalf("Open with aad %q = %v, want ErrUnseal", aad, err)
		}
	}
	// Another key.
	other, _ := NewSealer(bytes.Repeat([]byte{2}, 32))
	if _, err := other.Open(sealed, []byte("vn_1")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open with another key = %v", err)
	}
	// Any flipped bit of nonce, ciphertext or tag.
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, "v1:"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		mod := bytes.Clone(raw)
		mod[i] ^= 0x01
		if _, err := s.Open("v1:"+base64.StdEncoding.EncodeToString(mod), []byte("vn_1")); !errors.Is(err, ErrUnseal) {
			t.Fatalf("Open with byte %d flipped = %v", i, err)
		}
	}
	// Truncated or garbage.
	for _, bad := range []string{
		"", "v1", "v1:", "v2:" + strings.TrimPrefix(sealed, "v1:"), strings.TrimPrefix(sealed, "v1:"),
		"v1:!!!", sealed[:len(sealed)-4], "v1:" + base64.StdEncoding.EncodeToString(raw[:12]),
		"v1:" + base64.StdEncoding.EncodeToString(raw[:12+15]), sealed + "AAAA",
	} {
		if _, err := s.Open(bad, []byte("vn_1")); !errors.Is(err, ErrUnseal) {
			t.Errorf("Open(%q) = %v, want ErrUnseal", bad, err)
		}
	}
	// Key is copied? Mutating the caller's key after NewSealer does not matter.
	k2 := bytes.Repeat([]byte{3}, 32)
	s3, _ := NewSealer(k2)
	v := s3.Seal([]byte("z"), nil)
	k2[0] ^= 0xff
	if got, err := s3.Open(v, nil); err != nil || string(got) != "z" {
		t.Fatalf("sealer changed with its key slice: %q, %v", got, err)
	}
}
