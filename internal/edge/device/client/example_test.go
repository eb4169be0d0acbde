package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/edge/server/app"
	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

// controlPlane runs an OmniEdge control plane in this process, on SQLite
// in a temporary directory and behind httptest, with one user who holds a
// security key. It returns the API's URL, the key and a stop function.
func controlPlane() (url, securityKey string, stop func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "omni-example")
	if err != nil {
		panic(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	db, err := sqldb.Open(ctx, "sqlite://"+filepath.Join(dir, "omni.db"))
	if err != nil {
		panic(err)
	}
	a, err := app.New(ctx, &cfg, app.Deps{DB: db, Clock: clock.Real{}, Log: logging.Discard(), MasterKey: auth.RandomBytes(32)})
	if err != nil {
		panic(err)
	}
	u, err := a.Service.CreateUser(ctx, "ada@example.com", "correct horse battery", "")
	if err != nil {
		panic(err)
	}
	key, _, err := a.Service.CreateSecurityKey(ctx, u.ID, "laptop", 0)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(a.Handler())
	return srv.URL, key, func() { srv.Close(); db.Close(); os.RemoveAll(dir) }
}

// A device logs in with its security key, registers itself, joins a
// network and reports itself alive: what `omni edge up` does before it
// brings the tunnel up.
func Example() {
	url, key, stop := controlPlane()
	defer stop()
	ctx := context.Background()

	c := client.New(url, nil)
	if _, err := c.LoginSecurityKey(ctx, key); err != nil {
		fmt.Println("login:", err)
		return
	}
	dev, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "laptop", HardwareUUID: "hw-1", Platform: "linux"})
	if err != nil {
		fmt.Println("register:", err)
		return
	}
	n, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "home", IPRange: "100.100.10.0/24"})
	if err != nil {
		fmt.Println("create network:", err)
		return
	}
	j, err := c.Join(ctx, n.ID, dev.ID)
	if err != nil {
		fmt.Println("join:", err)
		return
	}
	if _, err := c.Heartbeat(ctx, "hw-1", false); err != nil {
		fmt.Println("heartbeat:", err)
		return
	}
	members, err := c.Members(ctx, n.ID)
	if err != nil {
		fmt.Println("members:", err)
		return
	}
	fmt.Println("device:", dev.Name, dev.Platform)
	fmt.Println("network:", n.Name, n.IPRange)
	fmt.Println("joined at:", j.VirtualIP, j.SubnetMask)
	fmt.Println("members:", len(members), members[0].Name, "online:", members[0].Online)
	// Output:
	// device: laptop linux
	// network: home 100.100.10.0/24
	// joined at: 100.100.10.1 255.255.255.0
	// members: 1 laptop online: true
}

// Me answers who the logged-in caller is, with the plan's limits and
// what the account uses of them.
func ExampleClient_Me() {
	url, key, stop := controlPlane()
	defer stop()
	ctx := context.Background()

	c := client.New(url, nil)
	if _, err := c.LoginSecurityKey(ctx, key); err != nil {
		fmt.Println("login:", err)
		return
	}
	me, err := c.Me(ctx)
	if err != nil {
		fmt.Println("me:", err)
		return
	}
	fmt.Println(me.Email, "devices:", me.Usage.Devices, "networks:", me.Usage.Networks)
	// Output:
	// ada@example.com devices: 0 networks: 0
}

// A refused call is an *APIError; StatusOf reads its HTTP status.
func ExampleStatusOf() {
	url, _, stop := controlPlane()
	defer stop()

	c := client.New(url, nil)
	_, err := c.LoginSecurityKey(context.Background(), "not-a-key")
	fmt.Println(client.StatusOf(err))
	// Output:
	// 401
}

// An owner gives a network a key lifetime and expires one device's key at
// once: the member list marks it expired, and the nucleus no longer
// admits it until the device registers a new key after a new login.
func ExampleClient_ExpireDeviceKey() {
	url, key, stop := controlPlane()
	defer stop()
	ctx := context.Background()

	c := client.New(url, nil)
	if _, err := c.LoginSecurityKey(ctx, key); err != nil {
		fmt.Println("login:", err)
		return
	}
	dev, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-1",
		PublicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="})
	if err != nil {
		fmt.Println("register:", err)
		return
	}
	n, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "home"})
	if err != nil {
		fmt.Println("create network:", err)
		return
	}
	life := "90d"
	if n, err = c.UpdateNetwork(ctx, n.ID, wire.UpdateNetworkRequest{KeyExpiry: &life}); err != nil {
		fmt.Println("key lifetime:", err)
		return
	}
	if _, err := c.Join(ctx, n.ID, dev.ID); err != nil {
		fmt.Println("join:", err)
		return
	}
	expired, err := c.ExpireDeviceKey(ctx, dev.ID)
	if err != nil {
		fmt.Println("expire:", err)
		return
	}
	members, err := c.Members(ctx, n.ID)
	if err != nil {
		fmt.Println("members:", err)
		return
	}
	fmt.Println("key lifetime:", n.KeyExpiry)
	fmt.Println("expired by the owner:", expired.KeyExpiredAt != nil)
	fmt.Println("member expired:", members[0].KeyExpired)
	// Output:
	// key lifetime: 2160h
	// expired by the owner: true
	// member expired: true
}
