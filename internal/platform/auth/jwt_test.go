package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	jwtKey = bytes.Repeat([]byte("k"), 32)
	now    = time.Unix(1_750_000_000, 0)
)

func newSigner(t testing.TB, key []byte, aud string) *Signer {
	t.Helper()
	s, err := NewSigner(key, "omni-test", aud)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forge builds a token with any header and payload, signed with key.
func forge(key []byte, header, payload string) string {
	enc := base64.RawURLEncoding
	msg := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

func TestNewSigner(t *testing.T) {
	for _, n := range []int{0, 16, 31} {
		if _, err := NewSigner(make([]byte, n), "i", "a"); err == nil {
			t.Errorf("NewSigner(%d-byte key) succeeded", n)
		}
	}
	key := bytes.Repeat([]byte{9}, 32)
	s := newSigner(t, key, "edge")
	tok, err := s.Sign(NewClaims("u1", "", now, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff // the signer keeps its own copy
	if _, err := s.Verify(tok, now); err != nil {
		t.Fatalf("signer changed with its key slice: %v", err)
	}
}

func TestSignVerify(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	c := NewClaims("user-1", "fam-1", now, 15*time.Minute)
	if c.IssuedAt != now.Unix() || c.ExpiresAt != now.Add(15*time.Minute).Unix() || c.ID == "" || c.Subject != "user-1" || c.Session != "fam-1" {
		t.Fatalf("NewClaims = %+v", c)
	}
	if NewClaims("u", "", now, time.Minute).ID == c.ID {
		t.Fatal("NewClaims ids repeat")
	}
	c.Issuer, c.Audience = "ignored", "ignored" // Sign fills its own
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", tok, len(parts))
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]string
	if err := json.Unmarshal(hdr, &h); err != nil || h["alg"] != "HS256" || h["typ"] != "JWT" {
		t.Fatalf("header %s", hdr)
	}
	// The signature is HMAC-SHA256 of header.payload: interoperable.
	if forge(jwtKey, string(hdr), mustDecode(t, parts[1])) != tok {
		t.Fatal("token is not standard HS256")
	}

	got, err := s.Verify(tok, now)
	if err != nil {
		t.Fatal(err)
	}
	want := c
	want.Issuer, want.Audience = "omni-test", "edge"
	if got != want {
		t.Fatalf("Verify = %+v, want %+v", got, want)
	}
	// Valid until the second before exp.
	if _, err := s.Verify(tok, now.Add(15*time.Minute-time.Second)); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
}

func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerifyExpired(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	tok, _ := s.Sign(NewClaims("u", "", now, time.Minute))
	for _, at := range []time.Time{now.Add(time.Minute), now.Add(time.Hour)} {
		c, err := s.Verify(tok, at)
		if !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("Verify at %v = %v, want ErrTokenExpired", at, err)
		}
		if c != (Claims{}) {
			t.Fatalf("expired token returned claims %+v", c)
		}
	}
	// No exp at all is expired, not eternal.
	noExp := forge(jwtKey, jwtHeader, `{"sub":"u","aud":"edge"}`)
	if _, err := s.Verify(noExp, now); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("token without exp: %v", err)
	}
}

func TestVerifyTampered(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	tok, _ := s.Sign(NewClaims("alice", "", now, time.Hour))
	parts := strings.Split(tok, ".")
	enc := base64.RawURLEncoding

	// Payload swapped for another subject, signature kept.
	payload := strings.Replace(mustDecode(t, parts[1]), `"alice"`, `"admin"`, 1)
	forged := parts[0] + "." + enc.EncodeToString([]byte(payload)) + "." + parts[2]
	if _, err := s.Verify(forged, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("tampered payload: %v, want ErrTokenSignature", err)
	}
	// Longer expiry.
	payload = strings.Replace(mustDecode(t, parts[1]), `"exp":`, `"exp":9`, 1)
	if _, err := s.Verify(parts[0]+"."+enc.EncodeToString([]byte(payload))+"."+parts[2], now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("extended expiry: %v", err)
	}
	// A flipped signature bit.
	sig, _ := enc.DecodeString(parts[2])
	sig[5] ^= 1
	if _, err := s.Verify(parts[0]+"."+parts[1]+"."+enc.EncodeToString(sig), now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("flipped signature: %v", err)
	}
	// Another key.
	other := newSigner(t, bytes.Repeat([]byte("o"), 32), "edge")
	if _, err := other.Verify(tok, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("wrong key: %v", err)
	}
	wrongKey := forge(bytes.Repeat([]byte("o"), 32), jwtHeader, mustDecode(t, parts[1]))
	if _, err := s.Verify(wrongKey, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("token signed with another key: %v", err)
	}
}

func TestVerifyHeader(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	payload := `{"sub":"u","aud":"edge","exp":` + itoa(now.Add(time.Hour).Unix()) + `}`
	enc := base64.RawURLEncoding

	// alg none, unsigned: rejected whatever the signature part holds.
	none := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	for _, tok := range []string{none + ".", none, none + ".AAAA"} {
		if _, err := s.Verify(tok, now); err == nil {
			t.Fatalf("alg none token %q accepted", tok)
		}
	}
	// Even correctly MACed, only HS256 headers pass.
	for _, hdr := range []string{`{"alg":"none"}`, `{"alg":"HS512","typ":"JWT"}`, `{"alg":"RS256"}`, `{"alg":"hs256"}`, `{}`, `not json`, `{"alg":["HS256"]}`} {
		if _, err := s.Verify(forge(jwtKey, hdr, payload), now); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("header %s: %v, want ErrTokenMalformed", hdr, err)
		}
	}
	// An equivalent HS256 header in another form is fine.
	if c, err := s.Verify(forge(jwtKey, `{"typ":"JWT","alg":"HS256","kid":"1"}`, payload), now); err != nil || c.Subject != "u" {
		t.Fatalf("reordered HS256 header: %+v, %v", c, err)
	}
}

func itoa(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestVerifyAudience(t *testing.T) {
	edge := newSigner(t, jwtKey, "edge")
	route := newSigner(t, jwtKey, "route") // same key, other audience
	tok, _ := edge.Sign(NewClaims("u", "", now, time.Hour))
	c, err := route.Verify(tok, now)
	if !errors.Is(err, ErrTokenAudience) {
		t.Fatalf("wrong audience: %v", err)
	}
	if c != (Claims{}) {
		t.Fatalf("wrong-audience token returned claims %+v", c)
	}
	noAud := forge(jwtKey, jwtHeader, `{"sub":"u","exp":`+itoa(now.Add(time.Hour).Unix())+`}`)
	if _, err := edge.Verify(noAud, now); !errors.Is(err, ErrTokenAudience) {
		t.Fatalf("missing audience: %v", err)
	}
	// A signer without an audience accepts any.
	any := newSigner(t, jwtKey, "")
	if _, err := any.Verify(tok, now); err != nil {
		t.Fatalf("audience-less verifier: %v", err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	exp := itoa(now.Add(time.Hour).Unix())
	tok, _ := s.Sign(NewClaims("u", "", now, time.Hour))
	parts := strings.Split(tok, ".")
	cases := []string{
		"", ".", "..", "...", "a", "a.b", "a.b.c", ".b.c", tok + ".", "." + tok,
		parts[0] + "." + parts[1] + ".", // empty signature
		parts[0] + "." + parts[1] + "." + parts[2][:10],
		parts[0] + "." + parts[1] + "." + parts[2] + "=",
		parts[0] + "." + parts[1] + "." + parts[2] + "AA",
		forge(jwtKey, jwtHeader, "not json"),
		forge(jwtKey, jwtHeader, `{"aud":"edge","exp":`+exp+`}`),          // no subject
		forge(jwtKey, jwtHeader, `{"sub":"","aud":"edge","exp":`+exp+`}`), // empty subject
		forge(jwtKey, jwtHeader, `{"sub":1,"aud":"edge","exp":`+exp+`}`),  // wrong type
		forge(jwtKey, jwtHeader, `{"sub":"u","aud":"edge","exp":"soon"}`), // wrong type
		forge(jwtKey, jwtHeader, `["sub","u"]`),                           //
		jwtHeaderB64 + ".!!!." + parts[2],                                 //
		jwtHeaderB64 + "." + parts[1] + ".x." + parts[2],                  // four parts
	}
	for _, tok := range cases {
		c, err := s.Verify(tok, now)
		if err == nil {
			t.Errorf("Verify(%q) accepted", tok)
			continue
		}
		if !errors.Is(err, ErrTokenMalformed) && !errors.Is(err, ErrTokenSignature) {
			t.Errorf("Verify(%q) = %v, want malformed or signature", tok, err)
		}
		if c != (Claims{}) {
			t.Errorf("Verify(%q) returned claims %+v with error", tok, c)
		}
	}
}

func FuzzVerify(f *testing.F) {
	s := newSigner(f, jwtKey, "edge")
	exp := itoa(now.Add(time.Hour).Unix())
	valid, _ := s.Sign(NewClaims("u", "fam", now, time.Hour))
	expired, _ := s.Sign(NewClaims("u", "", now.Add(-2*time.Hour), time.Hour))
	seeds := []string{
		valid, expired, "", ".", "..", "a.b.c", valid + ".", strings.Replace(valid, ".", "..", 1),
		forge(jwtKey, `{"alg":"none"}`, `{"sub":"u","aud":"edge","exp":`+exp+`}`),
		forge(jwtKey, `{"typ":"JWT","alg":"HS256"}`, `{"sub":"u","aud":"edge","exp":`+exp+`}`),
		forge(jwtKey, jwtHeader, `{"sub":"u","aud":"route","exp":`+exp+`}`),
		forge(jwtKey, jwtHeader, `{"sub":"u","aud":"edge","exp":1e400}`),
		forge(jwtKey, jwtHeader, `{"sub":"u","aud":"edge","exp":-9223372036854775808}`),
		forge(jwtKey, `{"alg":"HS256","alg":"none"}`, `{"sub":"u","aud":"edge","exp":`+exp+`}`),
		forge(jwtKey, jwtHeader, `{"sub":"u","sub":"admin","aud":"edge","exp":`+exp+`}`),
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.",
	}
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok, now)
		if err != nil {
			if !errors.Is(err, ErrTokenMalformed) && !errors.Is(err, ErrTokenSignature) &&
				!errors.Is(err, ErrTokenExpired) && !errors.Is(err, ErrTokenAudience) {
				t.Fatalf("Verify(%q) = unexpected error %v", tok, err)
			}
			if c != (Claims{}) {
				t.Fatalf("Verify(%q) returned claims %+v with %v", tok, c, err)
			}
			return
		}
		// Accepted: it must be a correctly MACed, live, well-formed
		// token for this audience.
		i, j := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.')
		if i <= 0 || j <= i {
			t.Fatalf("accepted %q without three parts", tok)
		}
		m := hmac.New(sha256.New, jwtKey)
		m.Write([]byte(tok[:j]))
		if got := base64.RawURLEncoding.EncodeToString(m.Sum(nil)); got != tok[j+1:] {
			t.Fatalf("accepted %q with a signature that is not the HMAC", tok)
		}
		if c.Subject == "" || c.Audience != "edge" || c.ExpiresAt <= now.Unix() {
			t.Fatalf("accepted %q with claims %+v", tok, c)
		}
	})
}

// Verified tokens are remembered; a remembered token still expires, and
// remembering one token says nothing about its tampered variants.
func TestVerifyRemembered(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	tok, _ := s.Sign(NewClaims("u", "fam", now, time.Minute))
	first, err := s.Verify(tok, now)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := s.Verify(tok, now.Add(30*time.Second))
		if err != nil || again != first {
			t.Fatalf("second Verify = %+v, %v; want %+v", again, err, first)
		}
	}
	if _, err := s.Verify(tok, now.Add(time.Minute-time.Second)); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	for _, at := range []time.Time{now.Add(time.Minute), now.Add(time.Hour)} {
		c, err := s.Verify(tok, at)
		if !errors.Is(err, ErrTokenExpired) || c != (Claims{}) {
			t.Fatalf("remembered token at %v = %+v, %v; want ErrTokenExpired", at, c, err)
		}
	}
	// Another signer (other key) does not share what this one remembers.
	other := newSigner(t, bytes.Repeat([]byte("o"), 32), "edge")
	if _, err := other.Verify(tok, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("other signer: %v", err)
	}
	// A failed verification is not remembered as good.
	tok2, _ := s.Sign(NewClaims("v", "", now, time.Minute))
	parts := strings.Split(tok2, ".")
	bad := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	for range 2 {
		if _, err := s.Verify(bad, now); !errors.Is(err, ErrTokenSignature) {
			t.Fatalf("tampered token: %v", err)
		}
	}
	// Nor is an expired one, even if it verifies later by an earlier clock.
	if _, err := s.Verify(tok2, now.Add(time.Hour)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := s.Verify(tok2, now); err != nil {
		t.Fatalf("same token at an earlier time: %v", err)
	}
}

// A remembered signature does not vouch for another payload: a token
// whose header and payload were swapped under a cached signature fails.
func TestVerifyRememberedSignatureNotReusable(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	good, _ := s.Sign(NewClaims("alice", "", now, time.Hour))
	if _, err := s.Verify(good, now); err != nil {
		t.Fatal(err)
	}
	other, _ := s.Sign(NewClaims("mallory", "", now, time.Hour))
	forged := other[:strings.LastIndexByte(other, '.')] + good[strings.LastIndexByte(good, '.'):]
	for range 3 {
		if c, err := s.Verify(forged, now); !errors.Is(err, ErrTokenSignature) {
			t.Fatalf("payload of mallory under alice's cached signature: %+v %v", c, err)
		}
	}
}

// The memory of verified tokens is bounded per shard.
func TestVerifyRememberedBounded(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	tok, _ := s.Sign(NewClaims("u", "", now, time.Hour))
	sh := &s.cache[maphash.String(s.seed, tok)%verifyShards]
	sh.mu.Lock()
	for i := range verifyPerShard {
		sh.m["filler"+itoa(int64(i))] = verified{claims: Claims{Subject: "x"}}
	}
	sh.mu.Unlock()
	if _, err := s.Verify(tok, now); err != nil {
		t.Fatal(err)
	}
	sh.mu.RLock()
	n := len(sh.m)
	_, kept := sh.m[tok[strings.LastIndexByte(tok, '.')+1:]]
	sh.mu.RUnlock()
	if n > verifyPerShard || !kept {
		t.Fatalf("shard holds %d entries (limit %d), token kept %v", n, verifyPerShard, kept)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	s := newSigner(t, jwtKey, "edge")
	toks := make([]string, 50)
	for i := range toks {
		toks[i], _ = s.Sign(NewClaims("u"+itoa(int64(i)), "", now, time.Hour))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for r := range 200 {
				i := (g*31 + r) % len(toks)
				c, err := s.Verify(toks[i], now)
				if err != nil || c.Subject != "u"+itoa(int64(i)) {
					t.Errorf("Verify = %+v, %v", c, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
