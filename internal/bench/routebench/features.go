package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The features comparison (-features): what keys with limits and a
// budget, usage logging, resilience, the cache and idempotency add
// together. The same upstream is reached through the gateway built from
// -baseline (a revision without those features) and through this
// revision's gateway with every feature on: requests carry a managed key
// with RPM/TPM limits and a budget, every request is logged, the breaker
// and cooldowns watch every attempt, and the cache and idempotency stages
// run (the requests use temperature 0.2 and no idempotency key, so they
// pass through them as a client's ordinary traffic does).
const (
	targetFeatureOverhead = 1.20 // feature overhead ≤ 1.2× the baseline's at concurrency 1
	targetFeatureRPS      = 0.80 // feature max RPS ≥ 0.8× the baseline's
	featurePassword       = "bench-dashboard-password"
)

// buildRevision builds cmd/omni as of rev in a temporary worktree.
func buildRevision(ctx context.Context, rev, out string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	wt, err := os.MkdirTemp("", "routebench-base-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(wt)
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir, cmd.Stderr = root, os.Stderr
		return cmd.Run()
	}
	if err := git("worktree", "add", "--detach", "--force", wt, rev); err != nil {
		return fmt.Errorf("git worktree add %s: %w", rev, err)
	}
	defer func() { _ = git("worktree", "remove", "--force", wt) }()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/omni")
	cmd.Dir, cmd.Stdout, cmd.Stderr = wt, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build at %s: %w", rev, err)
	}
	return nil
}

// enableFeatures logs in to the management API of the gateway at base,
// creates a gateway key with generous limits and a budget, and returns
// the raw key.
func enableFeatures(base string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	call := func(method, path string, body any, out any) error {
		b, _ := json.Marshal(body)
		req, err := http.NewRequest(method, base+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
		}
		if out != nil {
			return json.Unmarshal(raw, out)
		}
		return nil
	}
	if err := call("POST", "/api/auth/login", map[string]string{"password": featurePassword}, nil); err != nil {
		return "", err
	}
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := call("POST", "/api/keys", map[string]any{"name": "bench", "rpm": 10_000_000, "tpm": 1_000_000_000,
		"rpd": 1_000_000_000, "tpd": 1_000_000_000_000}, &key); err != nil {
		return "", err
	}
	if err := call("POST", "/api/usage/budget", map[string]any{"apiKeyId": key.ID, "monthlyLimitUsd": 1_000_000,
		"dailyLimitUsd": 1_000_000, "warningThreshold": 0.8, "resetInterval": "monthly"}, nil); err != nil {
		return "", err
	}
	return key.Key, nil
}

// runFeatures measures the baseline gateway against this revision's with
// every feature on, interleaved, and prints the comparison.
func runFeatures(ctx context.Context, cfg options) (missed int, err error) {
	tmp, err := os.MkdirTemp("", "routebench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	up, err := startChild(ctx, "-serve-upstream")
	if err != nil {
		return 0, err
	}
	defer up.Stop()

	bin := cfg.bin
	if bin == "" {
		bin = filepath.Join(tmp, "omni")
		fmt.Fprintln(os.Stderr, "building omni…")
		if err := buildOmni(ctx, bin); err != nil {
			return 0, err
		}
	}
	baseBin := filepath.Join(tmp, "omni-baseline")
	fmt.Fprintf(os.Stderr, "building omni at %s…\n", cfg.baseline)
	if err := buildRevision(ctx, cfg.baseline, baseBin); err != nil {
		return 0, err
	}
	baseDir, featDir := filepath.Join(tmp, "base"), filepath.Join(tmp, "feat")
	for _, d := range []string{baseDir, featDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, err
		}
	}
	base, err := startGateway(ctx, baseBin, baseDir, up.URL+"/v1")
	if err != nil {
		return 0, err
	}
	defer base.Stop()
	feat, err := startGatewayWith(ctx, bin, featDir, up.URL+"/v1", "  initial_password: "+featurePassword+"\n")
	if err != nil {
		return 0, err
	}
	defer feat.Stop()
	key, err := enableFeatures(feat.URL)
	if err != nil {
		return 0, fmt.Errorf("enabling the features: %w", err)
	}

	c := newClient()
	defer c.CloseIdleConnections()
	direct := path{name: "direct   client → upstream", url: up.URL + "/v1/chat/completions", kind: kindOpenAI,
		body: openAIRequest(upstreamModel, false), streamBody: openAIRequest(upstreamModel, true)}
	baseline := path{name: "gateway at " + cfg.baseline, url: base.URL + "/v1/chat/completions", kind: kindOpenAI,
		body: openAIRequest(gatewayModel, false), streamBody: openAIRequest(gatewayModel, true)}
	features := path{name: "gateway, all features on", url: feat.URL + "/v1/chat/completions", kind: kindOpenAI,
		body: baseline.body, streamBody: baseline.streamBody, key: key}
	paths := []path{direct, baseline, features}
	for _, p := range paths {
		if err := p.check(c); err != nil {
			return 0, err
		}
	}
	fmt.Fprintln(os.Stderr, "measuring latency at concurrency 1…")
	lat, err := interleave(ctx, paths, cfg.samples, func(p path) (time.Duration, error) { return p.call(c) })
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(os.Stderr, "searching the highest rate…")
	var bestBase, bestFeat stepResult
	var cBase, cFeat int
	type row struct {
		conc       int
		base, feat stepResult
	}
	var rows []row
	for _, n := range cfg.levels {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		b := loadStep(ctx, c, baseline, n, cfg.step)
		f := loadStep(ctx, c, features, n, cfg.step)
		rows = append(rows, row{n, b, f})
		fmt.Fprintf(os.Stderr, "  c=%d baseline %.0f rps, features %.0f rps\n", n, b.rps, f.rps)
		if b.ok() && b.rps > bestBase.rps {
			bestBase, cBase = b, n
		}
		if f.ok() && f.rps > bestFeat.rps {
			bestFeat, cFeat = f, n
		}
		if !b.ok() && !f.ok() {
			break
		}
	}

	w := os.Stdout
	fmt.Fprintf(w, "\nOmniRoute features overhead — %s against this build, instant upstream on loopback\n", cfg.baseline)
	d50, d99 := quantile(lat[0], 0.5), quantile(lat[0], 0.99)
	fmt.Fprintf(w, "%-32s %8s %8s %8s %10s %10s\n", "path", "n", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms")
	var over [3][2]time.Duration
	for i, p := range paths {
		p50, p99 := quantile(lat[i], 0.5), quantile(lat[i], 0.99)
		over[i] = [2]time.Duration{p50 - d50, p99 - d99}
		fmt.Fprintf(w, "%-32s %8d %8s %8s %10s %10s\n", p.name, len(lat[i]), ms(p50), ms(p99), added(p50-d50), added(p99-d99))
	}
	r50 := float64(over[2][0]) / float64(max(over[1][0], 1))
	r99 := float64(over[2][1]) / float64(max(over[1][1], 1))
	fmt.Fprintf(w, "feature overhead / baseline overhead: p50 %.2f (target ≤ %.2f %s), p99 %.2f\n",
		r50, targetFeatureOverhead, verdict(r50 <= targetFeatureOverhead, &missed), r99)
	fmt.Fprintf(w, "\n%6s | %-27s | %-27s\n", "", "baseline", "all features")
	for _, r := range rows {
		cell := func(x stepResult) string {
			mark := " "
			if !x.ok() {
				mark = "*"
			}
			return fmt.Sprintf("%8.0f %8s%s %8d", x.rps, ms(x.p99), mark, x.errs)
		}
		fmt.Fprintf(w, "%6d | %s | %s\n", r.conc, cell(r.base), cell(r.feat))
		if r.feat.firstErr != nil {
			fmt.Fprintf(w, "         first error with features at c=%d: %v\n", r.conc, r.feat.firstErr)
		}
	}
	rr := bestFeat.rps / max(bestBase.rps, 1)
	fmt.Fprintf(w, "max RPS: baseline %.0f (c=%d), features %.0f (c=%d): ratio %.2f (target ≥ %.2f %s)\n",
		bestBase.rps, cBase, bestFeat.rps, cFeat, rr, targetFeatureRPS, verdict(rr >= targetFeatureRPS, &missed))
	return missed, nil
}
