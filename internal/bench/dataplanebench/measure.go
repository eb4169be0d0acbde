//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	iperfPort    = "5201"
	iperfSeconds = 8
	pingCount    = 200
)

// result is one path's figures.
type result struct {
	gbps           float64
	rttAvg, rttP50 float64 // milliseconds
	received       int
}

// ensureTools installs what is missing with apt-get (iperf3, and ping
// and nft where the machine lacks them).
func ensureTools(ctx context.Context) error {
	var missing []string
	for _, t := range []struct{ bin, pkg string }{{"iperf3", "iperf3"}, {"ping", "iputils-ping"}, {"nft", "nftables"}, {"ip", "iproute2"}, {"ss", "iproute2"}} {
		if _, err := exec.LookPath(t.bin); err != nil && !slices.Contains(missing, t.pkg) {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "dataplanebench: installing %s\n", strings.Join(missing, " "))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	aptGet := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	install := append([]string{"install", "-y", "-qq"}, missing...)
	if _, err := aptGet(install...); err != nil {
		// Perhaps no package lists yet: fetch them once and try again.
		_, _ = aptGet("update", "-qq")
		if out, err := aptGet(install...); err != nil {
			return fmt.Errorf("apt-get install -y -qq %s failed (install them by hand): %v\n%s", strings.Join(missing, " "), err, out)
		}
	}
	for _, bin := range []string{"iperf3", "ping", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s still missing after apt-get install", bin)
		}
	}
	return nil
}

// measure takes both figures from src to dst.
func measure(ctx context.Context, srcNS, dstNS, dst string) (result, error) {
	var r result
	if !pingOK(ctx, srcNS, dst, 20) {
		return r, fmt.Errorf("%s cannot ping %s", srcNS, dst)
	}
	var err error
	if r.gbps, err = iperf(ctx, srcNS, dstNS, dst); err != nil {
		return r, err
	}
	r.rttAvg, r.rttP50, r.received, err = pingRTT(ctx, srcNS, dst)
	return r, err
}

// iperf runs a one-off iperf3 server in dstNS on dst and one 8-second
// single-stream TCP client from srcNS, and returns the received Gbit/s.
func iperf(ctx context.Context, srcNS, dstNS, dst string) (float64, error) {
	sctx, cancel := context.WithTimeout(ctx, (iperfSeconds+30)*time.Second)
	defer cancel()
	srv := exec.CommandContext(sctx, "ip", "netns", "exec", dstNS, "iperf3", "-s", "-1", "-B", dst, "-p", iperfPort)
	var slog syncBuffer
	srv.Stdout, srv.Stderr = &slog, &slog
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("iperf3 server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Wait(); close(done) }()
	defer func() {
		_ = srv.Process.Kill()
		<-done
	}()
	if err := waitFor(ctx, 10*time.Second, "iperf3 server listening", func() (bool, error) {
		select {
		case <-done:
			return false, fmt.Errorf("iperf3 server exited:\n%s", slog.String())
		default:
		}
		out, err := runCmd(ctx, "ip", "netns", "exec", dstNS, "ss", "-H", "-ltn", "sport = :"+iperfPort)
		return err == nil && strings.TrimSpace(out) != "", nil
	}); err != nil {
		return 0, err
	}

	cctx, ccancel := context.WithTimeout(ctx, (iperfSeconds+20)*time.Second)
	defer ccancel()
	out, err := exec.CommandContext(cctx, "ip", "netns", "exec", srcNS, "iperf3", "-c", dst, "-p", iperfPort,
		"-t", strconv.Itoa(iperfSeconds), "-J").Output()
	var rep struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return 0, fmt.Errorf("iperf3 -c %s from %s: %v (%v)\n%s", dst, srcNS, err, jerr, out)
	}
	if rep.Error != "" || rep.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 -c %s from %s: %q, %v bit/s (%v)", dst, srcNS, rep.Error, rep.End.SumReceived.BitsPerSecond, err)
	}
	return rep.End.SumReceived.BitsPerSecond / 1e9, nil
}

var (
	pingTime    = regexp.MustCompile(`time=([0-9.]+) ms`)
	pingSummary = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/[0-9.]+/[0-9.]+ ms`)
)

// pingRTT sends 200 echo requests 10 ms apart and returns the average
// and median round trip in milliseconds and the number of replies.
func pingRTT(ctx context.Context, srcNS, dst string) (avg, p50 float64, n int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", srcNS, "ping", "-n", "-c", strconv.Itoa(pingCount), "-i", "0.01", "-W", "1", dst).CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("ping %s from %s: %v\n%s", dst, srcNS, err, out)
	}
	var rtts []float64
	for _, m := range pingTime.FindAllStringSubmatch(string(out), -1) {
		if v, err := strconv.ParseFloat(m[1], 64); err == nil {
			rtts = append(rtts, v)
		}
	}
	m := pingSummary.FindStringSubmatch(string(out))
	if m == nil || len(rtts) == 0 {
		return 0, 0, 0, fmt.Errorf("ping %s from %s: no summary\n%s", dst, srcNS, out)
	}
	avg, _ = strconv.ParseFloat(m[1], 64)
	slices.Sort(rtts)
	return avg, rtts[len(rtts)/2], len(rtts), nil
}

// pingOK pings dst from ns until one reply, at most tries times (about one
// second each).
func pingOK(ctx context.Context, ns, dst string, tries int) bool {
	for range tries {
		if ctx.Err() != nil {
			return false
		}
		if _, err := runCmd(ctx, "ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst); err == nil {
			return true
		}
	}
	return false
}
