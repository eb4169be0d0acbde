package daemon

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// renewAt is the share of a key's lifetime that may remain when the
// daemon replaces the key: it renews at two thirds of the lifetime, so a
// device that was offline for a while (or a failed attempt, retried at
// every heartbeat) still has a third of the lifetime to succeed.
const renewAt = 3 // renew when at most lifetime/renewAt is left

// keyDue reports whether the device key must be replaced after this
// heartbeat answer, and when it expires first (zero: never). Both the
// lifetime and what is left of it are computed in the control plane's
// time (key_set_at, key_expires_at, last_seen), so the device's clock
// may be wrong by any amount.
func keyDue(resp wire.HeartbeatResponse, local time.Time) (due bool, first time.Time) {
	now, err := time.Parse(time.RFC3339, resp.LastSeen)
	if err != nil {
		now = local
	}
	if resp.KeyExpiredAt != nil {
		return true, *resp.KeyExpiredAt
	}
	for _, exp := range resp.KeyExpiresAt {
		if first.IsZero() || exp.Before(first) {
			first = exp
		}
		var life time.Duration
		if resp.KeySetAt != nil {
			life = exp.Sub(*resp.KeySetAt)
		}
		if exp.Sub(now) <= life/renewAt {
			due = true
		}
	}
	return due, first
}

// followKey replaces the device's key when the heartbeat answer says it
// expires soon (or has expired), and records when it expires for the
// status. Only a failure that needs the user (the owner expired the key
// and the login predates it; revoked credentials) is returned; others
// are logged and retried at the next heartbeat.
func (d *daemon) followKey(ctx context.Context, resp wire.HeartbeatResponse) error {
	due, first := keyDue(resp, d.clock.Now())
	d.mu.Lock()
	d.keyExpires = first
	d.mu.Unlock()
	if !due {
		return nil
	}
	byOwner := resp.KeyExpiredAt != nil
	if byOwner {
		d.log.Warn("the owner expired this device's key; registering a new one", "expired_at", *resp.KeyExpiredAt)
	} else {
		d.log.Info("the device key expires soon; replacing it", "expires_at", first)
	}
	err := d.renewKey(ctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return nil
	case client.StatusOf(err) == http.StatusUnauthorized:
		return fmt.Errorf("%w: %v", errCredentialsBad, err)
	case byOwner && client.StatusOf(err) == http.StatusForbidden:
		return fmt.Errorf("%w: %v", ErrKeyExpired, err)
	}
	d.setErr(err)
	d.log.Warn("replacing the device key failed; trying again at the next heartbeat", "err", err)
	return nil
}

// renewKey generates a new key pair, registers its public key (the
// control plane records it now and tells the nuclei, which drop the old
// key), keeps it in the state directory, and brings every network up
// again with it. The networks are down between the old session's end and
// the new one's registration: a few seconds, once per renewal.
func (d *daemon) renewKey(ctx context.Context) error {
	fresh, err := NewIdentity()
	if err != nil {
		return err
	}
	id := d.st.Identity()
	dev, err := d.api.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: d.cfg.Name, HardwareUUID: id.HardwareUUID,
		Platform: d.cfg.Platform, PublicKey: fresh.PublicKey.String()})
	d.saveTokens()
	if err != nil {
		return err
	}
	// The control plane holds the new key: the state must too, or a
	// restart would register the old one again. A failed write keeps the
	// new key in memory (Update changed it before writing).
	if err := d.st.Update(func(i *Identity) { i.PrivateKey, i.PublicKey = fresh.PrivateKey, fresh.PublicKey }); err != nil {
		d.log.Error("cannot save the new device key; a restart registers the old one again", "err", err)
	}
	d.mu.Lock()
	d.device = dev
	d.mu.Unlock()
	d.log.Info("device key replaced", "public_key", fresh.PublicKey.String(), "old_public_key", id.PublicKey.String())
	d.restartNetworks(ctx)
	return nil
}

// restartNetworks takes every running network down and up again with the
// current identity's key, keeping its interface, addresses and the
// secret in use (no control-plane call).
func (d *daemon) restartNetworks(ctx context.Context) {
	id := d.st.Identity()
	d.mu.Lock()
	nets := slices.Clone(d.nets)
	d.mu.Unlock()
	for _, n := range nets {
		d.mu.Lock()
		if d.phase == "stopping" {
			d.mu.Unlock()
			return
		}
		before := len(d.nets)
		d.nets = slices.DeleteFunc(slices.Clone(d.nets), func(x *network) bool { return x == n })
		present := len(d.nets) != before
		d.mu.Unlock()
		if !present {
			continue // removed meanwhile
		}
		n.stop()
		nc := n.cfg
		nc.PrivateKey, nc.PublicKey = id.PrivateKey, id.PublicKey
		n.mu.Lock()
		nc.SecretKey, nc.SecretVersion = n.secret, n.version
		n.mu.Unlock()
		if err := d.launch(ctx, n.index, nc, n.range4); err != nil {
			n.log.Error("cannot bring the network up again with the new key; it stays down until the daemon restarts", "err", err)
		}
	}
}
