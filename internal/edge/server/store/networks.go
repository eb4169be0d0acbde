package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

const netCols = `id, owner_id, name, ip_range, ipv6_range, secret_sealed, server_id, created_at, secret_version, dns_name, key_expiry_ms`

func scanNetwork(row interface{ Scan(...any) error }) (control.Network, error) {
	var n control.Network
	var r4, r6 string
	var server sql.NullString
	var created, life int64
	if err := row.Scan(&n.ID, &n.OwnerID, &n.Name, &r4, &r6, &n.SecretSealed, &server, &created, &n.SecretVersion, &n.DNSName, &life); err != nil {
		return n, err
	}
	n.KeyExpiry = time.Duration(life) * time.Millisecond
	var err error
	if n.Range, err = netip.ParsePrefix(r4); err != nil {
		return n, fmt.Errorf("network %s: bad stored range: %w", n.ID, err)
	}
	if n.Range6, err = netip.ParsePrefix(r6); err != nil {
		return n, fmt.Errorf("network %s: bad stored v6 range: %w", n.ID, err)
	}
	n.ServerID, n.CreatedAt = server.String, fromMS(created)
	return n, nil
}

func (s *Store) CreateNetwork(ctx context.Context, n control.Network, maxNetworks int, pick func([]netip.Prefix) (netip.Prefix, error)) (control.Network, error) {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		// Ranges are unique per owner: only the owner's networks are read
		// and locked against.
		if err := tx.LockKey(ctx, "edge.networks."+n.OwnerID); err != nil {
			return err
		}
		if maxNetworks > 0 {
			var c int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM edge_networks WHERE owner_id = ?`, n.OwnerID).Scan(&c); err != nil {
				return err
			}
			if c >= maxNetworks {
				return fmt.Errorf("%d networks: %w", c, control.ErrLimit)
			}
		}
		rows, err := tx.Query(ctx, `SELECT ip_range FROM edge_networks WHERE owner_id = ?`, n.OwnerID)
		if err != nil {
			return err
		}
		var used []netip.Prefix
		for rows.Next() {
			var r string
			if err := rows.Scan(&r); err != nil {
				rows.Close()
				return err
			}
			if p, err := netip.ParsePrefix(r); err == nil {
				used = append(used, p)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if !n.Range.IsValid() {
			if n.Range, err = pick(used); err != nil {
				return err
			}
		}
		for _, u := range used {
			if u.Overlaps(n.Range) {
				return fmt.Errorf("%s overlaps %s: %w", n.Range, u, control.ErrOverlap)
			}
		}
		if n.SecretVersion <= 0 {
			n.SecretVersion = 1
		}
		_, err = tx.Exec(ctx, `INSERT INTO edge_networks (`+netCols+`, owner_range) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, n.OwnerID, n.Name, n.Range.String(), n.Range6.String(), n.SecretSealed, nullStr(n.ServerID), ms(n.CreatedAt), n.SecretVersion, n.DNSName,
			n.KeyExpiry.Milliseconds(), n.OwnerID+" "+n.Range.String())
		return conflict(err, "network")
	})
	return n, err
}

func (s *Store) NetworkByID(ctx context.Context, id string) (control.Network, error) {
	n, err := scanNetwork(s.db.QueryRow(ctx, `SELECT `+netCols+` FROM edge_networks WHERE id = ?`, id))
	return n, notFound(err, "network")
}

func (s *Store) ListNetworks(ctx context.Context, ownerID string) ([]control.Network, error) {
	q, args := `SELECT `+netCols+` FROM edge_networks ORDER BY created_at, id`, []any{}
	if ownerID != "" {
		q, args = `SELECT `+netCols+` FROM edge_networks WHERE owner_id = ? ORDER BY created_at, id`, []any{ownerID}
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanNetwork)
}

// UpdateNetwork stores a network's name, server, DNS label and key
// lifetime; heartbeats answer the lifetime, so the epoch advances.
func (s *Store) UpdateNetwork(ctx context.Context, n control.Network) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE edge_networks SET name = ?, server_id = ?, dns_name = ?, key_expiry_ms = ? WHERE id = ?`,
			n.Name, nullStr(n.ServerID), n.DNSName, n.KeyExpiry.Milliseconds(), n.ID)
		if err := mustAffect(res, err, "network"); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

func (s *Store) DeleteNetwork(ctx context.Context, id string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM edge_memberships WHERE network_id = ?`, id); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM edge_networks WHERE id = ?`, id)
		if err := mustAffect(res, err, "network"); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

// ---- memberships ----

const memCols = `network_id, device_id, host, is_exit_node, exit_node_id, joined_at`

func scanMember(row interface{ Scan(...any) error }) (control.Membership, error) {
	var m control.Membership
	var host, joined int64
	var exit sql.NullString
	err := row.Scan(&m.NetworkID, &m.DeviceID, &host, &m.IsExitNode, &exit, &joined)
	m.Host, m.ExitNodeID, m.JoinedAt = uint32(host), exit.String, fromMS(joined)
	return m, err
}

func (s *Store) Join(ctx context.Context, networkID, deviceID string, at time.Time, alloc func([]uint32) (uint32, error)) (control.Membership, bool, error) {
	var m control.Membership
	var created bool
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "edge.network."+networkID); err != nil {
			return err
		}
		var err error
		m, err = scanMember(tx.QueryRow(ctx, `SELECT `+memCols+` FROM edge_memberships WHERE network_id = ? AND device_id = ?`, networkID, deviceID))
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT host FROM edge_memberships WHERE network_id = ? ORDER BY host`, networkID)
		if err != nil {
			return err
		}
		var used []uint32
		for rows.Next() {
			var h int64
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			used = append(used, uint32(h))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		host, err := alloc(used)
		if err != nil {
			return err
		}
		m = control.Membership{NetworkID: networkID, DeviceID: deviceID, Host: host, JoinedAt: at}
		if _, err := tx.Exec(ctx, `INSERT INTO edge_memberships (`+memCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
			networkID, deviceID, int64(host), false, nil, ms(at)); err != nil {
			return conflict(err, "membership")
		}
		created = true
		return bumpEpoch(ctx, tx)
	})
	return m, created, err
}

// Leave removes the membership, clears selections of it as an exit node
// in that network and replaces the network's secret.
func (s *Store) Leave(ctx context.Context, networkID, deviceID, sealed string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM edge_memberships WHERE network_id = ? AND device_id = ?`, networkID, deviceID)
		if err := mustAffect(res, err, "membership"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE edge_memberships SET exit_node_id = NULL WHERE network_id = ? AND exit_node_id = ?`, networkID, deviceID); err != nil {
			return err
		}
		if err := rotateSecret(ctx, tx, networkID, sealed); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

// rotateSecret stores a network's new sealed secret and bumps its secret
// version (a no-op for an empty sealed value).
func rotateSecret(ctx context.Context, tx *sqldb.Tx, networkID, sealed string) error {
	if sealed == "" {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE edge_networks SET secret_sealed = ?, secret_version = secret_version + 1 WHERE id = ?`, sealed, networkID)
	return err
}

// MemberKeys lists a network's members with their devices' public keys.
func (s *Store) MemberKeys(ctx context.Context, networkID string) ([]control.MemberKey, error) {
	rows, err := s.db.Query(ctx, `SELECT m.device_id, m.host, d.public_key, d.key_set_at, d.key_expired_at FROM edge_memberships m
		JOIN edge_devices d ON d.id = m.device_id WHERE m.network_id = ? ORDER BY m.host`, networkID)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(row interface{ Scan(...any) error }) (control.MemberKey, error) {
		var k control.MemberKey
		var host int64
		var key sql.NullString
		var set, expired sql.NullInt64
		err := row.Scan(&k.DeviceID, &host, &key, &set, &expired)
		k.Host, k.PublicKey, k.KeySetAt, k.KeyExpiredAt = uint32(host), key.String, fromNull(set), fromNull(expired)
		return k, err
	})
}

// SecretVersions lists the secret versions of a device's networks.
func (s *Store) SecretVersions(ctx context.Context, deviceID string) ([]control.SecretVersion, error) {
	rows, err := s.db.Query(ctx, `SELECT n.id, n.secret_version, n.key_expiry_ms FROM edge_memberships m
		JOIN edge_networks n ON n.id = m.network_id WHERE m.device_id = ? ORDER BY n.id`, deviceID)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(row interface{ Scan(...any) error }) (control.SecretVersion, error) {
		var v control.SecretVersion
		var life int64
		err := row.Scan(&v.NetworkID, &v.Version, &life)
		v.KeyExpiry = time.Duration(life) * time.Millisecond
		return v, err
	})
}

func (s *Store) Membership(ctx context.Context, networkID, deviceID string) (control.Membership, error) {
	m, err := scanMember(s.db.QueryRow(ctx, `SELECT `+memCols+` FROM edge_memberships WHERE network_id = ? AND device_id = ?`, networkID, deviceID))
	return m, notFound(err, "membership")
}

func (s *Store) Members(ctx context.Context, networkID string) ([]control.Membership, error) {
	rows, err := s.db.Query(ctx, `SELECT `+memCols+` FROM edge_memberships WHERE network_id = ? ORDER BY host`, networkID)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanMember)
}

// MemberDevices returns a network's memberships, ordered by host, with
// their devices, in one query.
func (s *Store) MemberDevices(ctx context.Context, networkID string) ([]control.Membership, []control.Device, error) {
	rows, err := s.db.Query(ctx, `SELECT d.id, d.user_id, d.hardware_uuid, d.name, d.platform, d.created_at, d.last_seen,
		d.exit_consent, d.public_key, d.dns_name, d.key_set_at, d.key_expired_at, d.tags, m.host, m.is_exit_node, m.exit_node_id, m.joined_at
		FROM edge_memberships m JOIN edge_devices d ON d.id = m.device_id
		WHERE m.network_id = ? ORDER BY m.host`, networkID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var ms []control.Membership
	var ds []control.Device
	for rows.Next() {
		var host, joined int64
		var exit sql.NullString
		m := control.Membership{NetworkID: networkID}
		d, err := scanDevice(withExtra{rows, []any{&host, &m.IsExitNode, &exit, &joined}})
		if err != nil {
			return nil, nil, err
		}
		m.DeviceID, m.Host, m.ExitNodeID, m.JoinedAt = d.ID, uint32(host), exit.String, fromMS(joined)
		ms, ds = append(ms, m), append(ds, d)
	}
	return ms, ds, rows.Err()
}

func (s *Store) DeviceMemberships(ctx context.Context, deviceID string) ([]control.Membership, error) {
	rows, err := s.db.Query(ctx, `SELECT `+memCols+` FROM edge_memberships WHERE device_id = ? ORDER BY joined_at, network_id`, deviceID)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanMember)
}

// UserMemberships returns the memberships in a user's networks ("" lists
// all), in one query over the networks' primary-key ranges, ordered by
// device, join time and network.
func (s *Store) UserMemberships(ctx context.Context, userID string) ([]control.Membership, error) {
	q, args := `SELECT m.network_id, m.device_id, m.host, m.is_exit_node, m.exit_node_id, m.joined_at
		FROM edge_memberships m ORDER BY m.device_id, m.joined_at, m.network_id`, []any{}
	if userID != "" {
		q, args = `SELECT m.network_id, m.device_id, m.host, m.is_exit_node, m.exit_node_id, m.joined_at
		FROM edge_networks n JOIN edge_memberships m ON m.network_id = n.id
		WHERE n.owner_id = ? ORDER BY m.device_id, m.joined_at, m.network_id`, []any{userID}
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanMember)
}

func (s *Store) SetExitEnabled(ctx context.Context, networkID, deviceID string, enabled bool) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE edge_memberships SET is_exit_node = ? WHERE network_id = ? AND device_id = ?`, enabled, networkID, deviceID)
		if err := mustAffect(res, err, "membership"); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

// SelectExitNode sets (or, with exitDeviceID "", clears) the exit node of a
// member. The exit device must be another member of the same network.
func (s *Store) SelectExitNode(ctx context.Context, networkID, deviceID, exitDeviceID string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if exitDeviceID != "" {
			// FOR SHARE holds the exit's membership until commit, so a
			// concurrent Leave or DeleteDevice either waits and then clears
			// this selection, or wins and makes this check fail. SQLite
			// write transactions are exclusive already.
			q := `SELECT 1 FROM edge_memberships WHERE network_id = ? AND device_id = ?`
			if tx.Dialect() == sqldb.Postgres {
				q += ` FOR SHARE`
			}
			var one int
			err := tx.QueryRow(ctx, q, networkID, exitDeviceID).Scan(&one)
			if err != nil {
				return notFound(err, "exit node membership")
			}
		}
		res, err := tx.Exec(ctx, `UPDATE edge_memberships SET exit_node_id = ? WHERE network_id = ? AND device_id = ?`, nullStr(exitDeviceID), networkID, deviceID)
		if err := mustAffect(res, err, "membership"); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

func (s *Store) ExitRoutes(ctx context.Context, deviceID string) ([]control.ExitRoute, error) {
	rows, err := s.db.Query(ctx, `SELECT m.network_id, e.device_id, e.host, e.is_exit_node, n.ip_range
		FROM edge_memberships m
		JOIN edge_memberships e ON e.network_id = m.network_id AND e.device_id = m.exit_node_id
		JOIN edge_networks n ON n.id = m.network_id
		WHERE m.device_id = ?
		ORDER BY m.network_id`, deviceID)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(row interface{ Scan(...any) error }) (control.ExitRoute, error) {
		var r control.ExitRoute
		var host int64
		var rng string
		if err := row.Scan(&r.NetworkID, &r.ExitDeviceID, &host, &r.ExitEnabled, &rng); err != nil {
			return r, err
		}
		r.ExitHost = uint32(host)
		var err error
		r.Range, err = netip.ParsePrefix(rng)
		return r, err
	})
}

// Memberships returns, in one query, a device's exit routes (as
// ExitRoutes) and its networks' secret versions (as SecretVersions): what
// a heartbeat's cache entry holds.
func (s *Store) Memberships(ctx context.Context, deviceID string) ([]control.ExitRoute, []control.SecretVersion, error) {
	rows, err := s.db.Query(ctx, `SELECT m.network_id, n.secret_version, n.key_expiry_ms, e.device_id, e.host, e.is_exit_node, n.ip_range
		FROM edge_memberships m
		JOIN edge_networks n ON n.id = m.network_id
		LEFT JOIN edge_memberships e ON e.network_id = m.network_id AND e.device_id = m.exit_node_id
		WHERE m.device_id = ?
		ORDER BY m.network_id`, deviceID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var routes []control.ExitRoute
	var versions []control.SecretVersion
	for rows.Next() {
		var v control.SecretVersion
		var exit sql.NullString
		var host sql.NullInt64
		var enabled sql.NullBool
		var rng string
		var life int64
		if err := rows.Scan(&v.NetworkID, &v.Version, &life, &exit, &host, &enabled, &rng); err != nil {
			return nil, nil, err
		}
		v.KeyExpiry = time.Duration(life) * time.Millisecond
		versions = append(versions, v)
		if !exit.Valid {
			continue
		}
		p, err := netip.ParsePrefix(rng)
		if err != nil {
			return nil, nil, err
		}
		routes = append(routes, control.ExitRoute{NetworkID: v.NetworkID, ExitDeviceID: exit.String, ExitHost: uint32(host.Int64), ExitEnabled: enabled.Bool, Range: p})
	}
	return routes, versions, rows.Err()
}

// ---- user servers ----

const srvCols = `id, user_id, name, host, country, public_key, created_at, updated_at`

func scanServer(row interface{ Scan(...any) error }) (control.UserServer, error) {
	var v control.UserServer
	var c, u int64
	err := row.Scan(&v.ID, &v.UserID, &v.Name, &v.Host, &v.Country, &v.PublicKey, &c, &u)
	v.CreatedAt, v.UpdatedAt = fromMS(c), fromMS(u)
	return v, err
}

func (s *Store) CreateUserServer(ctx context.Context, v control.UserServer) error {
	_, err := s.db.Exec(ctx, `INSERT INTO edge_user_servers (`+srvCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		v.ID, v.UserID, v.Name, v.Host, v.Country, v.PublicKey, ms(v.CreatedAt), ms(v.UpdatedAt))
	return conflict(err, "user server")
}

func (s *Store) UserServer(ctx context.Context, id string) (control.UserServer, error) {
	v, err := scanServer(s.db.QueryRow(ctx, `SELECT `+srvCols+` FROM edge_user_servers WHERE id = ?`, id))
	return v, notFound(err, "user server")
}

func (s *Store) ListUserServers(ctx context.Context, userID string) ([]control.UserServer, error) {
	rows, err := s.db.Query(ctx, `SELECT `+srvCols+` FROM edge_user_servers WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanServer)
}

func (s *Store) UpdateUserServer(ctx context.Context, v control.UserServer) error {
	res, err := s.db.Exec(ctx, `UPDATE edge_user_servers SET name = ?, host = ?, country = ?, public_key = ?, updated_at = ? WHERE id = ?`,
		v.Name, v.Host, v.Country, v.PublicKey, ms(v.UpdatedAt), v.ID)
	return mustAffect(res, err, "user server")
}

func (s *Store) DeleteUserServer(ctx context.Context, id string) error {
	res, err := s.db.Exec(ctx, `DELETE FROM edge_user_servers WHERE id = ?`, id)
	return mustAffect(res, err, "user server")
}

// ---- subnet routes ----

// SetAdvertisedRoutes records the prefixes a device offers to route to
// (comma-separated, canonical).
func (s *Store) SetAdvertisedRoutes(ctx context.Context, deviceID, routes string) error {
	res, err := s.db.Exec(ctx, `UPDATE edge_devices SET advertised_routes = ? WHERE id = ?`, routes, deviceID)
	return mustAffect(res, err, "device")
}

// SetApprovedRoutes records the prefixes the network's owner approved for
// a member.
func (s *Store) SetApprovedRoutes(ctx context.Context, networkID, deviceID, routes string) error {
	res, err := s.db.Exec(ctx, `UPDATE edge_memberships SET approved_routes = ? WHERE network_id = ? AND device_id = ?`, routes, networkID, deviceID)
	return mustAffect(res, err, "membership")
}

// NetworkRoutes returns, for every member of a network that advertises or
// was approved routes, both lists as stored.
func (s *Store) NetworkRoutes(ctx context.Context, networkID string) (map[string]control.StoredRoutes, error) {
	rows, err := s.db.Query(ctx, `SELECT m.device_id, d.advertised_routes, m.approved_routes
		FROM edge_memberships m JOIN edge_devices d ON d.id = m.device_id
		WHERE m.network_id = ? AND (d.advertised_routes <> '' OR m.approved_routes <> '')`, networkID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]control.StoredRoutes{}
	for rows.Next() {
		var id string
		var r control.StoredRoutes
		if err := rows.Scan(&id, &r.Advertised, &r.Approved); err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, rows.Err()
}

// AdvertisedRoutes returns what a device advertises.
func (s *Store) AdvertisedRoutes(ctx context.Context, deviceID string) (string, error) {
	var r string
	err := s.db.QueryRow(ctx, `SELECT advertised_routes FROM edge_devices WHERE id = ?`, deviceID).Scan(&r)
	return r, notFound(err, "device")
}

// ---- access policies ----

// Policy returns a network's policy (version 0 and "" when it has none).
func (s *Store) Policy(ctx context.Context, networkID string) (control.StoredPolicy, error) {
	var p control.StoredPolicy
	var at int64
	err := s.db.QueryRow(ctx, `SELECT version, document, updated_at FROM edge_policies WHERE network_id = ?`, networkID).Scan(&p.Version, &p.Document, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return control.StoredPolicy{}, nil
	}
	p.UpdatedAt = fromMS(at)
	return p, err
}

// SetPolicy stores a network's policy as the next version, provided the
// current one is ifVersion (-1: whatever it is); ErrConflict otherwise.
func (s *Store) SetPolicy(ctx context.Context, networkID, document string, ifVersion int64, at time.Time) (int64, error) {
	var next int64
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "edge.policy."+networkID); err != nil {
			return err
		}
		var cur int64
		err := tx.QueryRow(ctx, `SELECT version FROM edge_policies WHERE network_id = ?`, networkID).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if ifVersion >= 0 && cur != ifVersion {
			return fmt.Errorf("policy version %d, not %d: %w", cur, ifVersion, control.ErrConflict)
		}
		next = cur + 1
		if errors.Is(err, sql.ErrNoRows) {
			_, err = tx.Exec(ctx, `INSERT INTO edge_policies (network_id, version, document, updated_at) VALUES (?, ?, ?, ?)`,
				networkID, next, document, ms(at))
			return conflict(err, "policy")
		}
		_, err = tx.Exec(ctx, `UPDATE edge_policies SET version = ?, document = ?, updated_at = ? WHERE network_id = ?`,
			next, document, ms(at), networkID)
		return err
	})
	return next, err
}
