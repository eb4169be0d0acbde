package wgkey

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestForms(t *testing.T) {
	priv, err := GeneratePrivate()
	if err != nil {
		t.Fatal(err)
	}
	if priv[0]&7 != 0 || priv[31]&128 != 0 || priv[31]&64 == 0 {
		t.Fatalf("private key not clamped: %x", priv)
	}
	pub := priv.PublicKey()
	if pub.IsZero() || pub == priv {
		t.Fatalf("public key %v", pub)
	}
	for _, s := range []string{pub.String(), pub.Hex()} {
		k, err := Parse(s)
		if err != nil || k != pub {
			t.Errorf("Parse(%q) = %v, %v; want %v", s, k, err, pub)
		}
	}
	if k, err := ParseBase64(pub.String()); err != nil || k != pub {
		t.Errorf("ParseBase64 = %v, %v", k, err)
	}
	if _, err := ParseBase64(pub.Hex()); !errors.Is(err, ErrBadKey) {
		t.Errorf("ParseBase64(hex) err = %v; want ErrBadKey", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("z", 64), strings.Repeat("A", 43) + "!", "AAAA"} {
		if _, err := Parse(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("Parse(%q) err = %v; want ErrBadKey", bad, err)
		}
	}
	b, err := json.Marshal(struct{ K Key }{pub})
	if err != nil || string(b) != `{"K":"`+pub.String()+`"}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	var back struct{ K Key }
	if err := json.Unmarshal(b, &back); err != nil || back.K != pub {
		t.Fatalf("json back = %v, %v", back.K, err)
	}
	if !(Key{}).IsZero() {
		t.Error("zero key not IsZero")
	}
}

// ParsePublic is the one reader of device keys in standard base64 that the
// control plane's and the user-hosted nucleus's directories share.
func TestParsePublic(t *testing.T) {
	var k Key
	for i := range k {
		k[i] = 7
	}
	if got, err := ParsePublic(k.String()); err != nil || got != k {
		t.Fatalf("ParsePublic(%s) = %v, %v", k, got, err)
	}
	for _, bad := range []string{"", "not a key", k.String()[:40], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", k.String() + "AAAA", k.Hex()} {
		if _, err := ParsePublic(bad); err == nil {
			t.Errorf("ParsePublic(%q) accepted", bad)
		}
	}
}
