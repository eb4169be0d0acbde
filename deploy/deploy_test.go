package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
)

// need returns the path of a tool the test runs; without it the test
// skips (fails under OMNI_TEST_STRICT).
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		testenv.Unavailable(t, "%s is not installed", tool)
	}
	return p
}

func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// buildOmni builds the binary into dir.
func buildOmni(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "omni")
	if out, err := run(t, ".", nil, "go", "build", "-o", bin, "github.com/omniedge/omni/cmd/omni"); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestSystemdUnits checks the units with systemd's own reader: every
// directive known, the binary they start executable.
func TestSystemdUnits(t *testing.T) {
	sa := need(t, "systemd-analyze")
	dir := t.TempDir()
	bin := buildOmni(t, dir)
	var units []string
	for _, name := range []string{"omni-serve.service", "omni-edge.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(dir, name)
		// The unit as installed, with the binary where this test built it.
		if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/omni"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, unit)
	}
	out, err := run(t, dir, nil, sa, append([]string{"verify"}, units...)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// A unit with a mistake is refused: the check can fail.
	bad := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(bad, []byte("[Service]\nExecStart="+bin+" serve\nNoSuchDirective=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, dir, nil, sa, "verify", bad); !strings.Contains(out, "NoSuchDirective") {
		t.Fatalf("verify did not report an unknown directive: %s", out)
	}
	serve, _ := os.ReadFile(filepath.Join("systemd", "omni-serve.service"))
	for _, want := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n"} {
		if !bytes.Contains(serve, []byte(want)) {
			t.Errorf("omni-serve.service lacks %q", want)
		}
	}
	edge, _ := os.ReadFile(filepath.Join("systemd", "omni-edge.service"))
	if !bytes.Contains(edge, []byte("CAP_NET_ADMIN")) || !bytes.Contains(edge, []byte("DeviceAllow=/dev/net/tun")) {
		t.Error("omni-edge.service must grant CAP_NET_ADMIN and /dev/net/tun")
	}
}

// TestCompose reads the compose file with docker-compose: valid, two
// gateway replicas on the same PostgreSQL and Redis, and no start without
// the shared master key.
func TestCompose(t *testing.T) {
	dc := need(t, "docker-compose")
	env := []string{"OMNI_MASTER_KEY=" + strings.Repeat("A", 43) + "=", "OMNI_INITIAL_PASSWORD=a long dashboard password"}
	out, err := run(t, ".", env, dc, "-f", "compose.yaml", "config")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for _, want := range []string{"gateway-a", "gateway-b", "postgres://omni:omni@postgres:5432/omni", "redis://redis:6379/0", "service_healthy", "serve", "route"} {
		if !strings.Contains(out, want) {
			t.Errorf("compose config lacks %q:\n%s", want, out)
		}
	}
	if out, err := run(t, ".", []string{"OMNI_MASTER_KEY=", "OMNI_INITIAL_PASSWORD=x"}, dc, "-f", "compose.yaml", "config", "-q"); err == nil || !strings.Contains(out, "OMNI_MASTER_KEY") {
		t.Fatalf("compose accepted no master key: %v %s", err, out)
	}
}

// TestDockerImage builds the Dockerfile and runs the image: the binary
// runs as a non-root user, serves, and its health check turns healthy.
// This machine reaches no image registry, so the build stage's image
// (GO_IMAGE) is made here from the local Go toolchain and a shell, and
// the context carries the modules (vendor/); the final stage is
// FROM scratch. Runs when a Docker daemon answers (always under
// OMNI_TEST_STRICT, where .ci/run starts one).
func TestDockerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image")
	}
	docker := need(t, "docker")
	if out, err := run(t, ".", nil, docker, "info"); err != nil {
		testenv.Unavailable(t, "no Docker daemon: %s", strings.TrimSpace(out))
	}
	tag := fmt.Sprintf("omni-test-%d", time.Now().UnixNano())
	goImage := tag + "-go"
	t.Cleanup(func() { _, _ = run(t, ".", nil, docker, "rmi", "-f", tag, goImage) })

	// The build stage's image: Go, sh and the few tools the RUN uses.
	root := t.TempDir()
	goroot := strings.TrimSpace(must(run(t, ".", nil, "go", "env", "GOROOT")))
	files := []string{goroot, "/etc/ssl/certs/ca-certificates.crt", "/bin/sh"}
	for _, tool := range []string{"sh", "mkdir", "chmod", "chown", "echo"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
		libs, _ := run(t, ".", nil, "ldd", p)
		for _, f := range strings.Fields(libs) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	slices.Sort(files)
	files = slices.Compact(files)
	tarball := filepath.Join(root, "go.tar")
	stage := filepath.Join(root, "stage")
	if err := os.MkdirAll(filepath.Join(stage, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-chf", tarball, "--absolute-names", "--transform", "s,^/,,"}, files...)
	if out, err := run(t, "/", nil, "tar", append(args, "-C", stage, "tmp")...); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	if out, err := run(t, ".", nil, docker, "import",
		"--change", "ENV PATH="+goroot+"/bin:/usr/bin:/bin", "--change", "ENV HOME=/root",
		"--change", "ENV GOTOOLCHAIN=local", "--change", "ENV GOFLAGS=-mod=vendor", tarball, goImage); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}

	// The context: the repository's files and its modules.
	ctxDir := filepath.Join(root, "ctx")
	list, err := run(t, "..", nil, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		t.Fatalf("git ls-files: %v\n%s", err, list)
	}
	for _, f := range strings.Split(list, "\x00") {
		b, err := os.ReadFile(filepath.Join("..", f))
		if f == "" || err != nil {
			continue // a file deleted from the work tree
		}
		dst := filepath.Join(ctxDir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(t, ctxDir, []string{"GOFLAGS=-mod=mod"}, "go", "mod", "vendor"); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	if out, err := run(t, ctxDir, nil, docker, "build", "-q", "--build-arg", "GO_IMAGE="+goImage,
		"--build-arg", "VERSION=v0.0.0-imagetest", "-t", tag, "."); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}

	var img []struct {
		Config struct {
			User         string
			Healthcheck  struct{ Test []string }
			ExposedPorts map[string]any
		}
	}
	out := must(run(t, ".", nil, docker, "image", "inspect", tag))
	if err := json.Unmarshal([]byte(out), &img); err != nil || len(img) != 1 {
		t.Fatalf("inspect: %v %s", err, out)
	}
	if u := img[0].Config.User; u == "" || strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
		t.Errorf("the image runs as %q, want a non-root user", u)
	}
	if len(img[0].Config.Healthcheck.Test) == 0 {
		t.Error("the image has no health check")
	}
	for _, p := range []string{"8080/tcp", "20128/tcp", "51820/udp"} {
		if _, ok := img[0].Config.ExposedPorts[p]; !ok {
			t.Errorf("the image does not expose %s", p)
		}
	}
	if v := must(run(t, ".", nil, docker, "run", "--rm", tag, "version")); !strings.Contains(v, "v0.0.0-imagetest") {
		t.Errorf("version in the image: %q", v)
	}

	name := tag + "-run"
	if out, err := run(t, ".", nil, docker, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
		"--health-interval", "1s", "-p", "127.0.0.1::8080", "-e", "OMNI_INITIAL_PASSWORD=a long dashboard password", tag); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = run(t, ".", nil, docker, "rm", "-f", name) })
	testenv.EventuallyWithin(t, "the container's health check turning healthy", 60*time.Second, func() bool {
		return strings.TrimSpace(must(run(t, ".", nil, docker, "inspect", "-f", "{{.State.Health.Status}}", name))) == "healthy"
	})
	port := strings.TrimSpace(must(run(t, ".", nil, docker, "port", name, "8080/tcp")))
	resp, err := http.Get("http://" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz through the published port: %d", resp.StatusCode)
	}
	// Its state went into /data, written as its own user on a read-only
	// root file system.
	if out, err := run(t, ".", nil, docker, "cp", name+":/data/master.key", filepath.Join(root, "master.key")); err != nil {
		t.Errorf("no master key in /data: %v %s", err, out)
	}
}

func must(out string, err error) string {
	if err != nil {
		panic(fmt.Sprintf("%v: %s", err, out))
	}
	return out
}
