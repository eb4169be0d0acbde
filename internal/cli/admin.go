package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/presence"
	"github.com/omniedge/omni/internal/edge/server/session"
	"github.com/omniedge/omni/internal/edge/server/store"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

// adminCmd is the shared set-up of `omni edge admin …`: the same
// configuration sources as serve (so --data, --database and OMNI_* work),
// plus --json and the command's own flags.
type adminCmd struct {
	fs      *flag.FlagSet
	asJSON  *bool
	env     Env
	svc     *control.Service
	cleanup func()
}

func newAdmin(env Env, name string) *adminCmd {
	fs := flag.NewFlagSet("omni edge admin "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return &adminCmd{fs: fs, asJSON: fs.Bool("json", false, "print JSON"), env: env}
}

func (a *adminCmd) open(ctx context.Context, args []string) error {
	cfg, err := config.Load(a.fs, args, a.env.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if a.fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", a.fs.Arg(0))}
	}
	key, err := cfg.LoadMasterKey()
	if err != nil {
		return err
	}
	db, err := sqldb.Open(ctx, cfg.DatabaseDSN())
	if err != nil {
		return err
	}
	st, err := store.New(ctx, db)
	if err != nil {
		db.Close()
		return err
	}
	clk := clock.Real{}
	log := logging.Discard()
	svc, err := control.New(control.Deps{Store: st, Presence: presence.NewMemory(clk, time.Hour), Sessions: session.NewMemory(clk),
		Clock: clk, Log: log, MasterKey: key}, control.OptionsFrom(cfg))
	if err != nil {
		db.Close()
		return err
	}
	a.svc, a.cleanup = svc, func() { db.Close() }
	return nil
}

func (a *adminCmd) close() {
	if a.cleanup != nil {
		a.cleanup()
	}
}

func (a *adminCmd) print(v any, table func(w io.Writer)) error {
	if *a.asJSON {
		enc := json.NewEncoder(a.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func required(name, v string) error {
	if v == "" {
		return usageError{"--" + name + " is required"}
	}
	return nil
}

func (a *adminCmd) user(ctx context.Context, email string) (control.User, error) {
	if err := required("email", email); err != nil {
		return control.User{}, err
	}
	return a.svc.UserByEmail(ctx, email)
}

type userJSON struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Plan      string    `json:"plan"`
	CreatedAt time.Time `json:"created_at"`
}

func adminUserCreate(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "user create")
	email := a.fs.String("email", "", "email address (required)")
	password := a.fs.String("password", "", "password, at least 8 characters (required)")
	plan := a.fs.String("plan", "free", "plan: free, pro or unlimited")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	if err := required("email", *email); err != nil {
		return err
	}
	if err := required("password", *password); err != nil {
		return err
	}
	u, err := a.svc.CreateUser(ctx, *email, *password, *plan)
	if err != nil {
		return err
	}
	out := userJSON{u.ID, u.Email, u.Plan, u.CreatedAt}
	return a.print(out, func(w io.Writer) { fmt.Fprintf(w, "created user %s (%s, plan %s)\n", u.Email, u.ID, u.Plan) })
}

func adminUserList(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "user list")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	users, err := a.svc.ListUsers(ctx)
	if err != nil {
		return err
	}
	out := make([]userJSON, len(users))
	for i, u := range users {
		out[i] = userJSON{u.ID, u.Email, u.Plan, u.CreatedAt}
	}
	return a.print(out, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tEMAIL\tPLAN\tCREATED")
		for _, u := range out {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.ID, u.Email, u.Plan, u.CreatedAt.Format(time.RFC3339))
		}
	})
}

type keyJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Key       string     `json:"key,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func adminKeyCreate(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "key create")
	email := a.fs.String("email", "", "owner's email (required)")
	name := a.fs.String("name", "default", "key name")
	expires := a.fs.Duration("expires", 0, "lifetime, e.g. 720h (0: never expires)")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	u, err := a.user(ctx, *email)
	if err != nil {
		return err
	}
	raw, k, err := a.svc.CreateSecurityKey(ctx, u.ID, *name, *expires)
	if err != nil {
		return err
	}
	out := keyJSON{ID: k.ID, Name: k.Name, Key: raw, CreatedAt: k.CreatedAt, ExpiresAt: optTime(k.ExpiresAt)}
	return a.print(out, func(w io.Writer) {
		fmt.Fprintf(w, "security key %s (%s) for %s\n", k.ID, k.Name, u.Email)
		if !k.ExpiresAt.IsZero() {
			fmt.Fprintf(w, "expires %s\n", k.ExpiresAt.Format(time.RFC3339))
		}
		fmt.Fprintf(w, "\n%s\n\nStore it now: it is not shown again.\n", raw)
	})
}

func adminKeyList(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "key list")
	email := a.fs.String("email", "", "owner's email (required)")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	u, err := a.user(ctx, *email)
	if err != nil {
		return err
	}
	keys, err := a.svc.ListSecurityKeys(ctx, u.ID)
	if err != nil {
		return err
	}
	out := make([]keyJSON, len(keys))
	for i, k := range keys {
		out[i] = keyJSON{ID: k.ID, Name: k.Name, CreatedAt: k.CreatedAt, ExpiresAt: optTime(k.ExpiresAt), RevokedAt: optTime(k.RevokedAt)}
	}
	return a.print(out, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tNAME\tCREATED\tEXPIRES\tREVOKED")
		for _, k := range keys {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.CreatedAt.Format(time.RFC3339), fmtTime(k.ExpiresAt), fmtTime(k.RevokedAt))
		}
	})
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func adminKeyRevoke(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "key revoke")
	email := a.fs.String("email", "", "owner's email (required)")
	id := a.fs.String("id", "", "key id (required)")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	u, err := a.user(ctx, *email)
	if err != nil {
		return err
	}
	if err := required("id", *id); err != nil {
		return err
	}
	if err := a.svc.RevokeSecurityKey(ctx, u.ID, *id); err != nil {
		return err
	}
	return a.print(map[string]string{"revoked": *id}, func(w io.Writer) { fmt.Fprintf(w, "revoked %s\n", *id) })
}

type networkJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	OwnerID   string    `json:"owner_id"`
	IPRange   string    `json:"ip_range"`
	IPv6Range string    `json:"ipv6_range"`
	Mask      string    `json:"subnet_mask"`
	ServerID  string    `json:"server_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func netJSON(n control.Network) networkJSON {
	return networkJSON{n.ID, n.Name, n.OwnerID, n.Range.String(), n.Range6.String(), ipam.Mask(n.Range), n.ServerID, n.CreatedAt}
}

func adminNetworkCreate(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "network create")
	email := a.fs.String("email", "", "owner's email (required)")
	name := a.fs.String("name", "", "network name (required)")
	ipRange := a.fs.String("ip-range", "", "IPv4 range inside 100.64.0.0/10 (default: a free /24)")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	u, err := a.user(ctx, *email)
	if err != nil {
		return err
	}
	if err := required("name", *name); err != nil {
		return err
	}
	n, err := a.svc.CreateNetwork(ctx, control.Principal{UserID: u.ID}, *name, *ipRange, "")
	if err != nil {
		return err
	}
	return a.print(netJSON(n), func(w io.Writer) {
		fmt.Fprintf(w, "created network %s (%s) %s %s\n", n.Name, n.ID, n.Range, n.Range6)
	})
}

func adminNetworkList(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "network list")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	nets, err := a.svc.ListNetworks(ctx, control.Principal{})
	if err != nil {
		return err
	}
	out := make([]networkJSON, len(nets))
	for i, n := range nets {
		out[i] = netJSON(n)
	}
	return a.print(out, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tNAME\tOWNER\tIPV4\tIPV6")
		for _, n := range out {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n.ID, n.Name, n.OwnerID, n.IPRange, n.IPv6Range)
		}
	})
}

type deviceJSON struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	UserID       string     `json:"user_id"`
	HardwareUUID string     `json:"hardware_uuid"`
	Platform     string     `json:"platform"`
	LastSeen     *time.Time `json:"last_seen"`
	CreatedAt    time.Time  `json:"created_at"`
}

func adminDeviceList(ctx context.Context, env Env, args []string) error {
	a := newAdmin(env, "device list")
	if err := a.open(ctx, args); err != nil {
		return err
	}
	defer a.close()
	devs, err := a.svc.ListDevices(ctx, control.Principal{})
	if err != nil {
		return err
	}
	out := make([]deviceJSON, len(devs))
	for i, d := range devs {
		out[i] = deviceJSON{d.ID, d.Name, d.UserID, d.HardwareUUID, d.Platform, optTime(d.LastSeen), d.CreatedAt}
	}
	return a.print(out, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tNAME\tUSER\tPLATFORM\tLAST SEEN")
		for _, d := range devs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.Name, d.UserID, d.Platform, fmtTime(d.LastSeen))
		}
	})
}
