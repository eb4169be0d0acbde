package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/omniedge/omni/internal/edge/device/daemon"
)

// edgeStatus prints the running daemon's status: a table per network, or
// daemon.Status as JSON.
func edgeStatus(ctx context.Context, env Env, args []string) error {
	fs, state := edgeFlags(env, "status")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseEdge(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := daemon.Query(ctx, *state)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, st)
	}
	renderStatus(env.Stdout, st)
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// renderStatus writes the human form of a status: the device, then per
// network a header and one row per peer.
func renderStatus(w io.Writer, st daemon.Status) {
	fmt.Fprintf(w, "state:      %s\n", st.State)
	fmt.Fprintf(w, "server:     %s\n", st.Server)
	consent := "no"
	if st.ExitNode {
		consent = "yes"
	}
	fmt.Fprintf(w, "device:     %s %s (exit node consent: %s)\n", st.DeviceName, st.DeviceID, consent)
	fmt.Fprintf(w, "public key: %s\n", st.PublicKey)
	if st.LastHeartbeat != nil {
		fmt.Fprintf(w, "heartbeat:  %s\n", st.LastHeartbeat.UTC().Format(time.RFC3339))
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", st.LastError)
	}
	for _, n := range st.Networks {
		fmt.Fprintf(w, "\nnetwork %s (%s) on %s\n", n.Name, n.ID, n.Interface)
		addrs := n.VirtualIP
		if n.VirtualIPv6 != "" {
			addrs += ", " + n.VirtualIPv6
		}
		reg := "registering"
		if n.Registered {
			reg = "registered"
		}
		fmt.Fprintf(w, "  address:  %s\n", addrs)
		fmt.Fprintf(w, "  nucleus:  %s (%s)\n", n.Nucleus, reg)
		if n.DNSZone != "" {
			fmt.Fprintf(w, "  names:    %s (%d names)\n", n.DNSZone, n.DNSNames)
		}
		if n.Exit != "" {
			fmt.Fprintf(w, "  exit via: %s\n", n.Exit)
		}
		if len(n.Peers) == 0 {
			fmt.Fprintln(w, "  no peers")
			continue
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PEER\tADDRESS\tIPv6\tPATH\tENDPOINT\tHANDSHAKE\tRX\tTX")
		for _, p := range n.Peers {
			hs := "never"
			if p.HandshakeAge != nil {
				hs = age(time.Duration(*p.HandshakeAge * float64(time.Second)))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(p.Name), p.VirtualIP, dash(p.VirtualIPv6), p.Path,
				dash(p.Endpoint), hs, bytesHuman(p.RxBytes), bytesHuman(p.TxBytes))
		}
		tw.Flush()
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is a duration in the past as "12s ago", "3m12s ago", "2h5m ago" or
// "3d ago".
func age(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds ago", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// bytesHuman is a byte count in binary units: "512 B", "1.2 KiB", "3.4 MiB".
func bytesHuman(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		if v /= 1024; v < 1024 {
			unit = u
			break
		}
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// parseTarget parses flags, one positional target, then flags again (so
// both `ping --count 2 robot` and `ping robot --count 2` work).
func parseTarget(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return "", usageError{"give the peer to ping: a name (robot, robot.home.omni.internal) or a virtual IP"}
	}
	target := fs.Arg(0)
	if err := parseEdge(fs, fs.Args()[1:]); err != nil {
		return "", err
	}
	return target, nil
}

// edgePing measures the round trip to a peer through the tunnel, asking
// the running daemon for one echo at a time.
func edgePing(ctx context.Context, env Env, args []string) error {
	fs, state := edgeFlags(env, "ping")
	count := fs.Int("count", 4, fmt.Sprintf("echo requests to send (1..%d)", daemon.MaxPingCount))
	timeout := fs.Duration("timeout", daemon.DefaultPingTimeout, fmt.Sprintf("how long to wait for each reply (at most %v)", daemon.MaxPingTimeout))
	interval := fs.Duration("interval", time.Second, "pause between requests (at least 100ms)")
	target, err := parseTarget(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *count < 1 || *count > daemon.MaxPingCount:
		return usageError{fmt.Sprintf("--count %d: want 1..%d", *count, daemon.MaxPingCount)}
	case *timeout <= 0 || *timeout > daemon.MaxPingTimeout:
		return usageError{fmt.Sprintf("--timeout %v: want more than 0 and at most %v", *timeout, daemon.MaxPingTimeout)}
	case *interval < 100*time.Millisecond || *interval > time.Minute:
		return usageError{fmt.Sprintf("--interval %v: want 100ms..1m", *interval)}
	}
	w := env.Stdout
	var (
		sent, got     int
		lo, hi, total float64
		who           string
	)
	for seq := 1; seq <= *count; seq++ {
		if seq > 1 {
			t := time.NewTimer(*interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		cctx, cancel := context.WithTimeout(ctx, *timeout+5*time.Second)
		rep, err := daemon.Ping(cctx, *state, daemon.PingRequest{Target: target, Seq: seq, TimeoutMS: int(timeout.Milliseconds())})
		cancel()
		if err != nil {
			if seq == 1 || errors.Is(err, daemon.ErrNotRunning) {
				return err
			}
			sent++
			fmt.Fprintf(w, "seq %d: %v\n", seq, err)
			continue
		}
		sent++
		peer := rep.VirtualIP
		if rep.Name != "" {
			peer = fmt.Sprintf("%s (%s)", rep.Name, rep.VirtualIP)
		}
		who = cmpOr(rep.DNSName, rep.VirtualIP)
		if !rep.Replied {
			fmt.Fprintf(w, "no reply from %s: %s; path %s\n", peer, rep.Error, via(rep))
			continue
		}
		got++
		total += rep.LatencyMS
		if got == 1 || rep.LatencyMS < lo {
			lo = rep.LatencyMS
		}
		hi = math.Max(hi, rep.LatencyMS)
		fmt.Fprintf(w, "pong from %s via %s in %s\n", peer, via(rep), ms(rep.LatencyMS))
	}
	fmt.Fprintf(w, "--- %s: %d sent, %d received, %d%% loss", who, sent, got, (sent-got)*100/max(sent, 1))
	if got > 0 {
		fmt.Fprintf(w, ", round trip min/avg/max %s/%s/%s", ms(lo), ms(total/float64(got)), ms(hi))
	}
	fmt.Fprintln(w)
	if got == 0 {
		return fmt.Errorf("no reply from %s", who)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// via names the path of a ping reply.
func via(rep daemon.PingReply) string {
	switch rep.Path {
	case daemon.PathDirect:
		return rep.Endpoint + " (direct)"
	case daemon.PathRelayed:
		return "relay " + cmpOr(rep.Nucleus, rep.Endpoint)
	}
	return "not established yet (no handshake)"
}

// ms formats milliseconds with a precision that suits their size.
func ms(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// edgeNetcheck asks the running daemon to probe each network's nucleus
// and prints what it found.
func edgeNetcheck(ctx context.Context, env Env, args []string) error {
	fs, state := edgeFlags(env, "netcheck")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseEdge(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := daemon.Netcheck(ctx, *state)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, rep)
	}
	renderNetcheck(env.Stdout, rep)
	return nil
}

func renderNetcheck(w io.Writer, rep daemon.NetcheckReport) {
	if len(rep.Networks) == 0 {
		fmt.Fprintln(w, "no network is up")
	}
	for i, n := range rep.Networks {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "network %s (%s) on %s\n", n.Name, n.ID, n.Interface)
		reg := "not registered"
		if n.Registered {
			reg = "registered"
		}
		nuc := n.Nucleus
		if n.NucleusAddr != "" && n.NucleusAddr != n.Nucleus {
			nuc += " at " + n.NucleusAddr
		}
		fmt.Fprintf(w, "  nucleus:  %s (%s)\n", nuc, reg)
		if n.UDP {
			lat := make([]string, len(n.RTTMS))
			for i, v := range n.RTTMS {
				lat[i] = ms(v)
			}
			fmt.Fprintf(w, "  UDP:      yes, %d of %d probes answered; latency %s (%s)\n", len(n.RTTMS), n.Probes, ms(n.LatencyMS), strings.Join(lat, ", "))
		} else {
			fmt.Fprintf(w, "  UDP:      no answer (%d probes)\n", n.Probes)
		}
		if n.Observed != "" {
			fmt.Fprintf(w, "  seen as:  %s (local port %d)\n", n.Observed, n.LocalPort)
		}
		if len(n.LocalEndpoints) > 0 {
			fmt.Fprintf(w, "  local:    %s\n", strings.Join(n.LocalEndpoints, ", "))
		}
		fmt.Fprintf(w, "  NAT:      %s\n", n.NAT)
		for _, line := range wrap(n.NATNote, 80) {
			fmt.Fprintf(w, "            %s\n", line)
		}
		if n.Error != "" {
			fmt.Fprintf(w, "  error:    %s\n", n.Error)
		}
	}
}

// wrap splits text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
