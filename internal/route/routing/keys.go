package routing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/route/store"
)

// KeySet answers whether a raw gateway key is one of the stored keys,
// from memory (hashes only), and notes which keys are used.
type KeySet struct {
	hashes atomic.Pointer[map[string]string]       // token hash -> key id (revoked keys left out)
	byID   atomic.Pointer[map[string]store.APIKey] // key id -> key, with policy and budget
	now    func() time.Time
	used   sync.Map   // key id -> struct{}
	mu     sync.Mutex // serialises set and prune
}

// Lookup returns the id of the stored gateway key raw is; revoked and
// expired keys are not found.
func (k *KeySet) Lookup(_ context.Context, raw string) (string, bool) {
	mp := k.hashes.Load()
	if mp == nil || raw == "" {
		return "", false
	}
	// auth.TokenHash(raw), built on the stack: indexing the map with
	// string(bytes) does not allocate.
	sum := sha256.Sum256([]byte(raw))
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	id, ok := (*mp)[string(h[:])]
	if !ok {
		return "", false
	}
	if key, found := k.Key(id); found && !key.ExpiresAt.IsZero() && k.now != nil && !k.now().Before(key.ExpiresAt) {
		return "", false
	}
	if _, seen := k.used.Load(id); !seen { // a store on every request would write the shared map each time
		k.used.Store(id, struct{}{})
	}
	return id, true
}

// Key returns a stored key (policy and budget included) by id.
func (k *KeySet) Key(id string) (store.APIKey, bool) {
	mp := k.byID.Load()
	if mp == nil {
		return store.APIKey{}, false
	}
	key, ok := (*mp)[id]
	return key, ok
}

// set replaces the keys. Registered keys are kept only while live:
// revoked and expired ones, which may be issued by the thousand, would
// otherwise stay in memory for good. Other keys are kept revoked too, so
// that the keys they issued learn their issuer is revoked.
func (k *KeySet) set(keys []store.APIKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.store(keys)
}

func (k *KeySet) store(keys []store.APIKey) {
	var now time.Time
	if k.now != nil {
		now = k.now()
	}
	mp := make(map[string]string, len(keys))
	byID := make(map[string]store.APIKey, len(keys))
	for _, key := range keys {
		if key.Kind == store.KindRegistered && !live(key, now) {
			continue
		}
		byID[key.ID] = key
		if key.RevokedAt.IsZero() {
			mp[key.Hash] = key.ID
		}
	}
	k.byID.Store(&byID)
	k.hashes.Store(&mp)
}

// live reports a key neither revoked nor expired at now.
func live(key store.APIKey, now time.Time) bool {
	return key.RevokedAt.IsZero() && (key.ExpiresAt.IsZero() || now.IsZero() || now.Before(key.ExpiresAt))
}

// prune drops the registered keys that expired since the keys were set.
func (k *KeySet) prune() {
	k.mu.Lock()
	defer k.mu.Unlock()
	mp := k.byID.Load()
	if mp == nil || k.now == nil {
		return
	}
	now := k.now()
	expired := false
	for _, key := range *mp {
		if key.Kind == store.KindRegistered && !live(key, now) {
			expired = true
			break
		}
	}
	if !expired {
		return
	}
	keys := make([]store.APIKey, 0, len(*mp))
	for _, key := range *mp {
		keys = append(keys, key)
	}
	k.store(keys)
}

func (k *KeySet) takeUsed() []string {
	var ids []string
	k.used.Range(func(id, _ any) bool {
		ids = append(ids, id.(string))
		k.used.Delete(id)
		return true
	})
	sort.Strings(ids)
	return ids
}
