package auth

import (
	"hash/maphash"
	"sync"

	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Claims are the fields of an access token.
type Claims struct {
	Subject   string `json:"sub"`
	Session   string `json:"sid,omitempty"` // refresh family the token came from
	Issuer    string `json:"iss,omitempty"`
	Audience  string `json:"aud,omitempty"`
	IssuedAt  int64  `json:"iat"`
	ExpiresAt int64  `json:"exp"`
	ID        string `json:"jti,omitempty"`
	// AuthTime is when the login behind the session happened (Unix
	// seconds); it survives refreshes. AuthMethod is how it happened.
	AuthTime   int64  `json:"auth_time,omitempty"`
	AuthMethod string `json:"amr,omitempty"`
}

// JWT errors.
var (
	ErrTokenMalformed = errors.New("auth: malformed token")
	ErrTokenSignature = errors.New("auth: bad token signature")
	ErrTokenExpired   = errors.New("auth: token expired")
	ErrTokenAudience  = errors.New("auth: token audience mismatch")
)

// Signer issues and verifies HS256 JWTs. Only HS256 is accepted, so the
// "alg: none" and algorithm-confusion attacks do not apply. Verified tokens
// are remembered (bounded), because clients present the same token for
// every request; a remembered token is still checked for expiry.
type Signer struct {
	key      []byte
	issuer   string
	audience string
	seed     maphash.Seed
	cache    [verifyShards]verifyShard
}

const (
	verifyShards   = 32
	verifyPerShard = 4096 // ~131k tokens in all
)

type verifyShard struct {
	mu sync.RWMutex
	m  map[string]verified // keyed by the token's signature
}

// verified is a remembered token: its claims and a secret-seeded hash of
// the whole token, so a different header or payload presented with a
// known signature never borrows these claims.
type verified struct {
	sum    uint64
	claims Claims
}

// NewSigner returns a signer using key (at least 32 bytes).
func NewSigner(key []byte, issuer, audience string) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("auth: JWT key shorter than 32 bytes")
	}
	s := &Signer{key: append([]byte(nil), key...), issuer: issuer, audience: audience, seed: maphash.MakeSeed()}
	for i := range s.cache {
		s.cache[i].m = make(map[string]verified)
	}
	return s, nil
}

const jwtHeader = `{"alg":"HS256","typ":"JWT"}`

var jwtHeaderB64 = base64.RawURLEncoding.EncodeToString([]byte(jwtHeader))

// Sign returns a compact JWT for c, filling issuer and audience.
func (s *Signer) Sign(c Claims) (string, error) {
	c.Issuer, c.Audience = s.issuer, s.audience
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(jwtHeaderB64)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(sha256.Size))
	buf = append(buf, jwtHeaderB64...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	mac := hmac.New(sha256.New, s.key)
	mac.Write(buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, mac.Sum(nil))
	return string(buf), nil
}

// Verify checks the signature, header, audience and expiry of token at now.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	sig := token
	if j := strings.LastIndexByte(token, '.'); j >= 0 {
		sig = token[j+1:]
	}
	sum := maphash.String(s.seed, token)
	sh := &s.cache[sum%verifyShards]
	sh.mu.RLock()
	v, ok := sh.m[sig]
	sh.mu.RUnlock()
	if ok && v.sum == sum {
		if now.Unix() >= v.claims.ExpiresAt {
			return Claims{}, ErrTokenExpired
		}
		return v.claims, nil
	}
	c, err := s.verify(token, now)
	if err == nil {
		sh.mu.Lock()
		if len(sh.m) >= verifyPerShard {
			clear(sh.m) // cheap bounded eviction; hot tokens come back at once
		}
		// Issuer and audience are this signer's own: share its strings
		// instead of keeping a decoded copy per token.
		if c.Issuer == s.issuer {
			c.Issuer = s.issuer
		}
		if c.Audience == s.audience {
			c.Audience = s.audience
		}
		sh.m[strings.Clone(sig)] = verified{sum: sum, claims: c}
		sh.mu.Unlock()
	}
	return c, err
}

func (s *Signer) verify(token string, now time.Time) (Claims, error) {
	var c Claims
	i := strings.IndexByte(token, '.')
	j := strings.LastIndexByte(token, '.')
	if i <= 0 || j <= i || j == len(token)-1 {
		return c, ErrTokenMalformed
	}
	enc := base64.RawURLEncoding
	sig, err := enc.DecodeString(token[j+1:])
	if err != nil || len(sig) != sha256.Size {
		return c, ErrTokenMalformed
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(token[:j]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return c, ErrTokenSignature
	}
	if token[:i] != jwtHeaderB64 {
		hdr, err := enc.DecodeString(token[:i])
		if err != nil {
			return c, ErrTokenMalformed
		}
		var h struct{ Alg, Typ string }
		if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != "HS256" {
			return c, ErrTokenMalformed
		}
	}
	payload, err := enc.DecodeString(token[i+1 : j])
	if err != nil {
		return c, ErrTokenMalformed
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Subject == "" {
		return Claims{}, ErrTokenMalformed
	}
	if s.audience != "" && c.Audience != s.audience {
		return Claims{}, ErrTokenAudience
	}
	if now.Unix() >= c.ExpiresAt {
		return Claims{}, ErrTokenExpired
	}
	return c, nil
}

// NewClaims is a helper filling iat/exp from now and ttl.
func NewClaims(subject, session string, now time.Time, ttl time.Duration) Claims {
	return Claims{Subject: subject, Session: session, IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix(), ID: RandomToken("", 9)}
}
