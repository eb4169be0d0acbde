// Package testenv owns how tests reach the real things they need:
// PostgreSQL (a fresh schema per test) and Redis (a unique key prefix per
// test), root, the omni binary and free loopback ports. When a service is
// unreachable the test is skipped, unless OMNI_TEST_STRICT=1 (set by CI),
// in which case it fails.
package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/auth"
)

// Strict reports whether missing services must fail tests instead of
// skipping them.
func Strict() bool { return os.Getenv("OMNI_TEST_STRICT") == "1" }

// Unavailable skips t, or fails it in strict mode.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("%s (OMNI_TEST_STRICT=1)", msg)
	}
	t.Skip(msg)
}

// PostgresBaseDSN is the server tests use: $OMNI_TEST_POSTGRES or the local
// default.
func PostgresBaseDSN() string {
	if v := os.Getenv("OMNI_TEST_POSTGRES"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Postgres returns a DSN whose search_path is a new, empty schema that is
// dropped when t ends.
func Postgres(t testing.TB) string {
	t.Helper()
	base := PostgresBaseDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		Unavailable(t, "postgres unavailable at %s: %v", redact(base), err)
		return ""
	}
	schema := "t_" + strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(auth.RandomToken("", 9)))
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		db.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse postgres dsn: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// RedisURL is the server tests use: $OMNI_TEST_REDIS or the local default.
func RedisURL() string {
	if v := os.Getenv("OMNI_TEST_REDIS"); v != "" {
		return v
	}
	return "redis://127.0.0.1:6379/0"
}

// Redis returns a connected client and a key prefix unique to t; keys under
// the prefix are deleted when t ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		Unavailable(t, "redis unavailable at %s: %v", opt.Addr, err)
		return nil, ""
	}
	prefix := "omnitest:" + auth.RandomToken("", 9) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c, prefix
}

// NamedRedis returns a second client of the test Redis whose connections
// carry a name unique to prefix and role, so that KillRedisClients can cut
// them without touching other tests' connections on the same server.
func NamedRedis(t testing.TB, prefix, role string) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	opt.ClientName = strings.NewReplacer(":", "-").Replace(prefix) + role
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c, opt.ClientName
}

// KillRedisClients closes, on the server, every connection named name
// (as a Redis outage would) and fails t when there was none.
func KillRedisClients(t testing.TB, c *redis.Client, name string) {
	t.Helper()
	ctx := context.Background()
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				if err := c.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
					t.Fatal(err)
				}
				killed++
			}
		}
	}
	if killed == 0 {
		t.Fatalf("no Redis connection named %s", name)
	}
}

// DefaultWait bounds Eventually: long enough for a loaded CI machine, short
// enough that a condition that never holds fails the test quickly.
const DefaultWait = 10 * time.Second

// Eventually polls cond until it holds and fails t when it does not within
// DefaultWait. what names the condition in the failure message.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, what, DefaultWait, cond)
}

// EventuallyWithin polls cond until it holds and fails t when it does not
// within d; it returns how long the condition took to hold.
func EventuallyWithin(t testing.TB, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	took, ok := Poll(d, cond)
	if !ok {
		t.Fatalf("%s: not within %v", what, d)
	}
	return took
}

// Poll calls cond until it holds or d has passed, starting with a short
// interval that doubles up to 100 ms (cheap conditions are seen quickly,
// expensive ones are not hammered). It reports the time taken and whether
// cond held; callers that must add context to a failure use it directly.
func Poll(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	interval := time.Millisecond
	for !cond() {
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(interval)
		if interval < 100*time.Millisecond {
			interval *= 2
		}
	}
	return time.Since(start), true
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable dsn)"
	}
	return u.Redacted()
}

// Root skips t unless the test runs as root (needed for network namespaces,
// TUN devices and firewall rules), or fails it in strict mode.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (uid %d)", os.Geteuid())
	}
}
