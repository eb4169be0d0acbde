//go:build linux

// Command dataplanebench measures what the OmniEdge data plane costs on
// the wire. It owns one run, as root, over one underlay made of network
// namespaces it creates and removes: a router namespace "wan" with the
// control plane and nucleus (`omni serve edge`) on its loopback address
// 198.51.100.1, and two hosts A (198.51.100.10) and B (198.51.100.14),
// each joined to wan by a veth /30, with wan forwarding between them, so
// every A→B packet crosses wan. No NAT and no route leaves the namespaces;
// only documentation and private ranges are used.
//
// Over that underlay it takes, A→B, a single-stream iperf3 TCP throughput
// (8 s) and the ping round trip (200 echoes 10 ms apart) of four paths:
//
//   - raw: underlay address to underlay address;
//   - wireguard-go: a plain wireguard-go device in A and in B configured
//     by hand through its UAPI (this program re-executed inside each
//     namespace), MTU 1420 like omni's;
//   - omni direct: the real omni binary, `omni edge up` in A and B joined
//     to one network, once the status reports the path direct;
//   - omni subnet router: from A to a host on a LAN behind B (10.88.0.2,
//     B advertises 10.88.0.0/24 and the owner approves it), on the direct
//     path: B forwards and masquerades;
//   - omni policy: the direct path without a policy, then under a
//     100-rule access policy (99 rules that match nothing, then the one
//     that admits A), which B enforces on every packet it receives, three
//     times; the verdict is the median of the three ratios;
//   - omni direct again: the direct path once more (the ratios of the
//     steps above are taken against the mean of both direct figures);
//   - omni relayed: the same daemons with direct UDP between A and B
//     dropped in wan, once the status reports the path relayed through
//     the nucleus.
//
// The figures are printed as a table beside the targets (omni direct at
// least as fast as plain wireguard-go, through a subnet router at least
// 0.8× direct, relayed at least half of direct,
// at most 0.3 ms added round trip direct). A missed target is reported,
// not an error; a figure that cannot be taken is (exit 1). Without root
// it prints that it was skipped and exits 0. Namespace names carry a
// random tag, so runs can share a machine.
//
//	go run ./internal/bench/dataplanebench [-bin omni]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/platform/netns"
)

// Targets the figures are judged against.
const (
	targetDirectVsWG      = 1.0
	targetRelayedVsDirect = 0.5
	targetSubnetVsDirect  = 0.8
	targetPolicyVsDirect  = 0.95
	targetAddedRTT        = 0.3 // ms, omni direct over raw
)

// policyRounds is how many pairs (without, then with the policy) the
// policy step measures.
const policyRounds = 3

// policyPairs are the policy step's ratios, with over without, one per
// pair.
var policyPairs []float64

func main() {
	if cfg := os.Getenv(wgHelperEnv); cfg != "" {
		os.Exit(runWGHelper(cfg))
	}
	bin := flag.String("bin", "", "prebuilt omni binary (default: go build ./cmd/omni into a temporary directory)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("dataplanebench: skipped: needs root to create network namespaces")
		return
	}
	os.Exit(run(*bin))
}

type row struct {
	name string
	r    result
}

func run(bin string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rows, err := measureAll(ctx, bin)
	if len(rows) > 0 {
		printTable(rows)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		fmt.Fprintln(os.Stderr, "dataplanebench:", err)
		return 1
	}
	return 0
}

// measureAll builds what it needs, measures the four paths in order and
// tears everything down before it returns.
func measureAll(ctx context.Context, bin string) (rows []row, err error) {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return nil, fmt.Errorf("no /dev/net/tun: %w", err)
	}
	if err := ensureTools(ctx); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "omni-dataplanebench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		fmt.Fprintln(os.Stderr, "dataplanebench: building omni")
		if bin, err = buildOmni(ctx, dir); err != nil {
			return nil, err
		}
	}

	tp, err := newTopology(ctx)
	if err != nil {
		return nil, err
	}
	defer tp.close()
	defer stopAll() // before the namespaces go
	fmt.Fprintf(os.Stderr, "dataplanebench: namespaces omnibench-%s-{wan,a,b}\n", tp.tag)

	step := func(name string, f func() (result, error)) error {
		fmt.Fprintf(os.Stderr, "dataplanebench: measuring %s\n", name)
		r, err := f()
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err()) // not the killed command's output
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, row{name, r})
		return nil
	}

	if err := step("raw veth", func() (result, error) { return measure(ctx, tp.a, tp.b, underB) }); err != nil {
		return rows, err
	}

	if err := step("wireguard-go", func() (result, error) {
		ps, err := startWireGuard(ctx, tp, self)
		defer func() {
			for _, p := range ps {
				p.stop()
			}
		}()
		if err != nil {
			return result{}, err
		}
		return measure(ctx, tp.a, tp.b, wgB)
	}); err != nil {
		return rows, err
	}

	fmt.Fprintln(os.Stderr, "dataplanebench: starting omni serve edge and two edges")
	o, err := startOmni(ctx, tp, bin, dir)
	if err != nil {
		return rows, err
	}
	vipB, pubB, err := o.identity(ctx, o.b)
	if err != nil {
		return rows, err
	}
	wantPath := func(p daemon.Path, d time.Duration) error {
		return waitFor(ctx, d, "path A→B "+string(p), func() (bool, error) {
			_ = pingOK(ctx, tp.a, vipB, 1) // traffic drives the path probes
			return o.path(ctx, o.a, pubB) == p, nil
		})
	}
	checkPath := func(p daemon.Path) error {
		if got := o.path(ctx, o.a, pubB); got != p {
			return fmt.Errorf("path A→B became %q during the measurement", got)
		}
		return nil
	}
	// measureOn measures A→dst in dstNS and checks the path stayed p.
	measureOn := func(dstNS, dst string, p daemon.Path) (result, error) {
		r, err := measure(ctx, tp.a, dstNS, dst)
		if err == nil {
			err = checkPath(p)
		}
		return r, err
	}

	if err := step("omni direct", func() (result, error) {
		if err := wantPath(daemon.PathDirect, 30*time.Second); err != nil {
			return result{}, err
		}
		return measureOn(tp.b, vipB, daemon.PathDirect)
	}); err != nil {
		return rows, err
	}

	if err := step("omni subnet router", func() (result, error) {
		if err := o.approveRoutes(ctx, o.b, lanPrefix); err != nil {
			return result{}, err
		}
		if err := waitFor(ctx, 20*time.Second, "the LAN behind B reachable from A", func() (bool, error) {
			return pingOK(ctx, tp.a, lanHost, 1), nil
		}); err != nil {
			return result{}, err
		}
		return measureOn(tp.lan, lanHost, daemon.PathDirect)
	}); err != nil {
		return rows, err
	}

	// The policy's cost is taken in pairs: the direct path without a
	// policy, then at once with the 100-rule policy, policyRounds times.
	// Each pair's ratio compares two measurements seconds apart, so the
	// drift of a loaded machine over the run cancels out; the verdict is
	// the median pair.
	if err := step("omni policy", func() (result, error) {
		var sum result
		for i := range policyRounds {
			off, err := measureOn(tp.b, vipB, daemon.PathDirect)
			if err != nil {
				return result{}, err
			}
			// 99 rules that match nothing here, then the one that lets A
			// in: the receiving device walks its compiled policy for
			// every packet.
			if err := o.setPolicy(ctx, policyWith100Rules()); err != nil {
				return result{}, err
			}
			if err := waitFor(ctx, 20*time.Second, "B reachable under the policy", func() (bool, error) {
				return pingOK(ctx, tp.a, vipB, 1), nil
			}); err != nil {
				return result{}, err
			}
			on, err := measureOn(tp.b, vipB, daemon.PathDirect)
			if perr := o.setPolicy(ctx, "null"); err == nil {
				err = perr
			}
			if err != nil {
				return result{}, err
			}
			fmt.Fprintf(os.Stderr, "dataplanebench: policy pair %d: %.2f Gbit/s without, %.2f with (%.2f×)\n",
				i+1, off.gbps, on.gbps, on.gbps/off.gbps)
			policyPairs = append(policyPairs, on.gbps/off.gbps)
			sum.gbps += on.gbps / policyRounds
			sum.rttAvg += on.rttAvg / policyRounds
			sum.rttP50 += on.rttP50 / policyRounds
			sum.received += on.received
		}
		return sum, nil
	}); err != nil {
		return rows, err
	}

	// The direct path once more, after the others: the first measurement
	// of a run tends to be the slowest, so the ratios are taken against
	// the mean of both direct measurements.
	if err := step("omni direct again", func() (result, error) {
		return measureOn(tp.b, vipB, daemon.PathDirect)
	}); err != nil {
		return rows, err
	}

	if err := step("omni relayed", func() (result, error) {
		if err := netns.NFT(ctx, tp.wan, fmt.Sprintf(`table inet omnibench_block {
	chain blockfwd {
		type filter hook forward priority filter; policy accept;
		ip saddr %[1]s ip daddr %[2]s meta l4proto udp drop
		ip saddr %[2]s ip daddr %[1]s meta l4proto udp drop
	}
}
`, underA, underB)); err != nil {
			return result{}, err
		}
		if !pingOK(ctx, tp.a, vipB, 60) {
			return result{}, errors.New("no reply from B with direct UDP blocked")
		}
		if err := wantPath(daemon.PathRelayed, 60*time.Second); err != nil {
			return result{}, err
		}
		return measureOn(tp.b, vipB, daemon.PathRelayed)
	}); err != nil {
		return rows, err
	}
	return rows, nil
}

func printTable(rows []row) {
	by := map[string]result{}
	for _, r := range rows {
		by[r.name] = r.r
	}
	if d, ok := by["omni direct"]; ok {
		if again, ok := by["omni direct again"]; ok {
			d.gbps = (d.gbps + again.gbps) / 2
			by["omni direct"] = d // the ratios' baseline: the mean of both
		}
	}
	raw, haveRaw := by["raw veth"]
	fmt.Printf("\n%-18s %-14s %-26s %-10s %-10s %s\n", "path", "throughput", "ratio", "rtt avg", "rtt p50", "added rtt (avg)")
	for _, r := range rows {
		ratio := "-"
		switch r.name {
		case "wireguard-go":
			ratio = "1.00 (baseline)"
		case "omni direct":
			if wg, ok := by["wireguard-go"]; ok {
				ratio = fmt.Sprintf("%.2f (vs wireguard-go)", r.r.gbps/wg.gbps)
			}
		case "omni policy":
			ratio = "see targets (paired)"
		case "omni relayed", "omni subnet router":
			if d, ok := by["omni direct"]; ok {
				ratio = fmt.Sprintf("%.2f (vs direct, mean)", r.r.gbps/d.gbps)
			}
		}
		added := "-"
		if haveRaw && r.name != "raw veth" {
			added = fmt.Sprintf("%+.3f ms", r.r.rttAvg-raw.rttAvg)
		}
		fmt.Printf("%-18s %-14s %-26s %-10s %-10s %s\n", r.name, fmt.Sprintf("%.2f Gbit/s", r.r.gbps), ratio,
			fmt.Sprintf("%.3f ms", r.r.rttAvg), fmt.Sprintf("%.3f ms", r.r.rttP50), added)
	}

	fmt.Println()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	wg, okWG := by["wireguard-go"]
	direct, okD := by["omni direct"]
	relayed, okR := by["omni relayed"]
	var lines []string
	if okWG && okD {
		v := direct.gbps / wg.gbps
		lines = append(lines, fmt.Sprintf("omni direct ≥ %.1f× wireguard-go throughput   %.2f×      %s", targetDirectVsWG, v, verdict(v >= targetDirectVsWG)))
	}
	if okD && okR {
		v := relayed.gbps / direct.gbps
		lines = append(lines, fmt.Sprintf("omni relayed ≥ %.1f× omni direct throughput   %.2f×      %s", targetRelayedVsDirect, v, verdict(v >= targetRelayedVsDirect)))
	}
	if len(policyPairs) > 0 {
		ps := slices.Sorted(slices.Values(policyPairs))
		v := ps[len(ps)/2]
		lines = append(lines, fmt.Sprintf("omni with a 100-rule policy ≥ %.2f× without    %.2f×      %s (median of %d pairs: %s)",
			targetPolicyVsDirect, v, verdict(v >= targetPolicyVsDirect), len(ps), fmtRatios(policyPairs)))
	}
	if sub, okS := by["omni subnet router"]; okD && okS {
		v := sub.gbps / direct.gbps
		lines = append(lines, fmt.Sprintf("omni subnet router ≥ %.1f× omni direct         %.2f×      %s", targetSubnetVsDirect, v, verdict(v >= targetSubnetVsDirect)))
	}
	if haveRaw && okD {
		v := direct.rttAvg - raw.rttAvg
		lines = append(lines, fmt.Sprintf("omni direct added rtt ≤ %.1f ms               %.3f ms  %s", targetAddedRTT, v, verdict(v <= targetAddedRTT)))
	}
	if len(lines) > 0 {
		fmt.Println("targets")
		fmt.Println("  " + strings.Join(lines, "\n  "))
	}
}

func fmtRatios(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%.2f×", r)
	}
	return strings.Join(out, ", ")
}

// policyWith100Rules is an access policy of 100 rules of which only the
// last admits A's traffic to B.
func policyWith100Rules() string {
	var rules []string
	for i := range 99 {
		rules = append(rules, fmt.Sprintf(`{"action": "accept", "src": ["10.99.%d.0/24"], "dst": ["*:%d"], "proto": "tcp"}`, i, 1000+i))
	}
	rules = append(rules, `{"action": "accept", "src": ["a"], "dst": ["b:*"]}`)
	return `{"rules": [` + strings.Join(rules, ", ") + `]}`
}
