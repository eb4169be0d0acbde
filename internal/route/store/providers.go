package store

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// Provider is one managed upstream with its credentials.
type Provider struct {
	ID          string
	Type        string
	BaseURL     string
	Headers     map[string]string
	Models      []string
	Enabled     bool
	Credentials []Credential // ordered by priority, then creation
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// PlainSecretHeaders is set when a secret header (SensitiveHeader)
	// was read in plaintext: written before such values were sealed.
	// SealHeaders seals them.
	PlainSecretHeaders bool
	// SecretHeadersUnreadable is set when the sealed headers cannot be
	// opened (the master key changed); they are left out of Headers.
	SecretHeadersUnreadable bool
}

// SensitiveHeader reports headers whose values are credentials: they are
// sealed at rest and masked when shown. Any name containing auth, key,
// token, secret, cookie, password, credential, session or signature.
func SensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"auth", "key", "token", "secret", "cookie", "password", "passwd", "credential", "session", "signature"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// Credential is one connection of a provider. APIKey is the plaintext,
// which only ever exists in memory; the database holds it sealed.
type Credential struct {
	ID       string
	Label    string
	APIKey   string
	Priority int
	Enabled  bool
	// Unreadable is set when the sealed key cannot be opened (the master
	// key changed); APIKey is then empty.
	Unreadable bool
	CreatedAt  time.Time
}

const providerCols = `id, type, base_url, headers, models, enabled, created_at, updated_at, secret_headers`

// providerRow is a provider as read, its secret headers still sealed,
// with the stored header columns and update time as they were.
type providerRow struct {
	Provider
	sealed     string
	rawHeaders string
	updated    int64
}

func scanProvider(row scanner) (providerRow, error) {
	var p providerRow
	var models string
	var created int64
	if err := row.Scan(&p.ID, &p.Type, &p.BaseURL, &p.rawHeaders, &models, &p.Enabled, &created, &p.updated, &p.sealed); err != nil {
		return p, err
	}
	p.CreatedAt, p.UpdatedAt = fromMS(created), fromMS(p.updated)
	if err := fromJSON(p.rawHeaders, &p.Headers); err != nil {
		return p, err
	}
	return p, fromJSON(models, &p.Models)
}

// headersAAD binds sealed headers to their provider (and keeps them
// apart from its credentials).
func headersAAD(providerID string) []byte { return []byte("headers:" + providerID) }

// openProvider merges the provider's sealed headers into Headers.
func (s *Store) openProvider(r providerRow) Provider {
	p := r.Provider
	for k := range p.Headers {
		if SensitiveHeader(k) {
			p.PlainSecretHeaders = true
		}
	}
	if r.sealed == "" {
		return p
	}
	pt, err := s.sealer.Open(r.sealed, headersAAD(p.ID))
	var secret map[string]string
	if err != nil || fromJSON(string(pt), &secret) != nil {
		p.SecretHeadersUnreadable = true
		return p
	}
	if p.Headers == nil {
		p.Headers = map[string]string{}
	}
	for k, v := range secret {
		p.Headers[k] = v
	}
	return p
}

// splitHeaders returns the JSON of a provider's ordinary headers and the
// sealed JSON of its secret ones ("" when there are none).
func (s *Store) splitHeaders(providerID string, headers map[string]string) (plain, sealed string) {
	open, secret := map[string]string{}, map[string]string{}
	for k, v := range headers {
		if SensitiveHeader(k) {
			secret[k] = v
		} else {
			open[k] = v
		}
	}
	if len(secret) > 0 {
		sealed = s.sealer.Seal([]byte(toJSON(secret)), headersAAD(providerID))
	}
	return toJSON(open), sealed
}

// SealHeaders seals the secret headers of providers written before such
// values were sealed (PlainSecretHeaders), and reports how many it
// rewrote. Nothing else changes, so the routing epoch is left alone.
// Each row is rewritten only if it is still as read — same header
// columns, same update time — so an edit committed meanwhile (another
// replica's, an administrator's) is kept, not overwritten with the
// headers read before it; such a row is sealed by whoever wrote it.
func (s *Store) SealHeaders(ctx context.Context) (int, error) {
	n := 0
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+providerCols+` FROM route_providers`)
		if err != nil {
			return err
		}
		ps, err := sqldb.Collect(rows, scanProvider)
		if err != nil {
			return err
		}
		for _, r := range ps {
			p := s.openProvider(r)
			if !p.PlainSecretHeaders || p.SecretHeadersUnreadable {
				continue
			}
			plain, sealed := s.splitHeaders(p.ID, p.Headers)
			res, err := tx.Exec(ctx, `UPDATE route_providers SET headers = ?, secret_headers = ?
				WHERE id = ? AND headers = ? AND secret_headers = ? AND updated_at = ?`,
				plain, sealed, p.ID, r.rawHeaders, r.sealed, r.updated)
			if err != nil {
				return err
			}
			if k, err := res.RowsAffected(); err != nil {
				return err
			} else if k == 1 {
				n++
			}
		}
		return nil
	})
	return n, err
}

type credRow struct {
	provider string
	cred     Credential
	sealed   string
}

func scanCred(row scanner) (credRow, error) {
	var c credRow
	var created int64
	err := row.Scan(&c.cred.ID, &c.provider, &c.cred.Label, &c.sealed, &c.cred.Priority, &c.cred.Enabled, &created)
	c.cred.CreatedAt = fromMS(created)
	return c, err
}

func (s *Store) open(c credRow) Credential {
	cred := c.cred
	pt, err := s.sealer.Open(c.sealed, []byte(c.provider))
	if err != nil {
		cred.Unreadable = true
		return cred
	}
	cred.APIKey = string(pt)
	return cred
}

func sortCreds(cs []Credential) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Priority != cs[j].Priority {
			return cs[i].Priority < cs[j].Priority
		}
		if !cs[i].CreatedAt.Equal(cs[j].CreatedAt) {
			return cs[i].CreatedAt.Before(cs[j].CreatedAt)
		}
		return cs[i].ID < cs[j].ID
	})
}

// Providers returns every stored provider with its credentials, by id.
func (s *Store) Providers(ctx context.Context) ([]Provider, error) {
	rows, err := s.db.Query(ctx, `SELECT `+providerCols+` FROM route_providers ORDER BY id`)
	if err != nil {
		return nil, err
	}
	rs, err := sqldb.Collect(rows, scanProvider)
	if err != nil {
		return nil, err
	}
	ps := make([]Provider, len(rs))
	for i, r := range rs {
		ps[i] = s.openProvider(r)
	}
	rows, err = s.db.Query(ctx, `SELECT id, provider_id, label, api_key, priority, enabled, created_at FROM route_credentials`)
	if err != nil {
		return nil, err
	}
	creds, err := sqldb.Collect(rows, scanCred)
	if err != nil {
		return nil, err
	}
	byID := map[string]*Provider{}
	for i := range ps {
		byID[ps[i].ID] = &ps[i]
	}
	for _, c := range creds {
		if p := byID[c.provider]; p != nil {
			p.Credentials = append(p.Credentials, s.open(c))
		}
	}
	for i := range ps {
		sortCreds(ps[i].Credentials)
	}
	return ps, nil
}

// Provider returns one stored provider with its credentials.
func (s *Store) Provider(ctx context.Context, id string) (Provider, error) {
	r, err := scanProvider(s.db.QueryRow(ctx, `SELECT `+providerCols+` FROM route_providers WHERE id = ?`, id))
	if err != nil {
		return Provider{}, notFound(err, "provider "+id)
	}
	p := s.openProvider(r)
	rows, err := s.db.Query(ctx, `SELECT id, provider_id, label, api_key, priority, enabled, created_at FROM route_credentials WHERE provider_id = ?`, id)
	if err != nil {
		return p, err
	}
	creds, err := sqldb.Collect(rows, scanCred)
	if err != nil {
		return p, err
	}
	for _, c := range creds {
		p.Credentials = append(p.Credentials, s.open(c))
	}
	sortCreds(p.Credentials)
	return p, nil
}

func (s *Store) insertCreds(ctx context.Context, tx *sqldb.Tx, providerID string, creds []Credential, now time.Time) error {
	for i, c := range creds {
		if c.ID == "" {
			c.ID = NewID("cred_")
		}
		created := c.CreatedAt
		if created.IsZero() {
			created = now
		}
		sealed := s.sealer.Seal([]byte(c.APIKey), []byte(providerID))
		if _, err := tx.Exec(ctx, `INSERT INTO route_credentials (id, provider_id, label, api_key, priority, enabled, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, c.ID, providerID, c.Label, sealed, c.Priority, c.Enabled, ms(created)+int64(i)); err != nil {
			return conflict(err, "credential "+c.ID)
		}
	}
	return nil
}

func normalize(p *Provider) {
	if p.Headers == nil {
		p.Headers = map[string]string{}
	}
	if p.Models == nil {
		p.Models = []string{}
	}
}

// CreateProvider stores p and its credentials (their ids are filled when
// empty). A provider with the same id is ErrConflict.
func (s *Store) CreateProvider(ctx context.Context, p Provider) error {
	normalize(&p)
	now := s.now()
	plain, sealed := s.splitHeaders(p.ID, p.Headers)
	return s.write(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO route_providers (`+providerCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Type, p.BaseURL, plain, toJSON(p.Models), p.Enabled, ms(now), ms(now), sealed); err != nil {
			return conflict(err, "provider "+p.ID)
		}
		return s.insertCreds(ctx, tx, p.ID, p.Credentials, now)
	})
}

// UpdateProvider replaces the fields of a stored provider; with
// replaceCredentials its credentials are replaced by p.Credentials too.
func (s *Store) UpdateProvider(ctx context.Context, p Provider, replaceCredentials bool) error {
	normalize(&p)
	now := s.now()
	plain, sealed := s.splitHeaders(p.ID, p.Headers)
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_providers SET type = ?, base_url = ?, headers = ?, secret_headers = ?, models = ?, enabled = ?, updated_at = ? WHERE id = ?`,
			p.Type, p.BaseURL, plain, sealed, toJSON(p.Models), p.Enabled, ms(now), p.ID)
		if err := mustAffect(res, err, "provider "+p.ID); err != nil {
			return err
		}
		if !replaceCredentials {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM route_credentials WHERE provider_id = ?`, p.ID); err != nil {
			return err
		}
		return s.insertCreds(ctx, tx, p.ID, p.Credentials, now)
	})
}

// DeleteProvider removes a provider, its credentials and its custom
// models.
func (s *Store) DeleteProvider(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM route_credentials WHERE provider_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM route_provider_models WHERE provider = ?`, id); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM route_providers WHERE id = ?`, id)
		return mustAffect(res, err, "provider "+id)
	})
}

// AddCredential adds one credential to a stored provider and returns it
// with its id.
func (s *Store) AddCredential(ctx context.Context, providerID string, c Credential) (Credential, error) {
	if c.ID == "" {
		c.ID = NewID("cred_")
	}
	now := s.now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = fromMS(ms(now))
	}
	err := s.write(ctx, func(tx *sqldb.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM route_providers WHERE id = ?`, providerID).Scan(&one); err != nil {
			return notFound(err, "provider "+providerID)
		}
		if _, err := tx.Exec(ctx, `UPDATE route_providers SET updated_at = ? WHERE id = ?`, ms(now), providerID); err != nil {
			return err
		}
		return s.insertCreds(ctx, tx, providerID, []Credential{c}, now)
	})
	return c, err
}

// DeleteCredential removes one credential of a provider.
func (s *Store) DeleteCredential(ctx context.Context, providerID, id string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM route_credentials WHERE provider_id = ? AND id = ?`, providerID, id)
		return mustAffect(res, err, "credential "+id)
	})
}

// SealedCredential returns the stored (sealed) form of a credential's key,
// for checks that the plaintext never reaches the database.
func (s *Store) SealedCredential(ctx context.Context, id string) (string, error) {
	var v string
	err := s.db.QueryRow(ctx, `SELECT api_key FROM route_credentials WHERE id = ?`, id).Scan(&v)
	return v, notFound(err, "credential "+id)
}
