package files_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/files"
)

// pattern yields n bytes of a fixed non-repeating-looking sequence (a
// 64-bit LCG), never held whole.
type pattern struct {
	n, x uint64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	k := min(uint64(len(b)), p.n)
	for i := range k {
		p.x = p.x*6364136223846793005 + 1442695040888963407
		b[i] = byte(p.x >> 56)
	}
	p.n -= k
	return int(k), nil
}

// rssKB reads a field (VmRSS, VmHWM) of /proc/pid/status, in KiB.
func rssKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	n, err := testenv.ProcStatusKB(pid, field)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("no /proc: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// streamUpload posts n bytes of src as a file through a pipe: the client
// holds no more of it than a buffer.
func streamUpload(t *testing.T, url, key string, src io.Reader) (int, []byte) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := mw.WriteField("purpose", "user_data")
		if err == nil {
			var w io.Writer
			if w, err = mw.CreateFormFile("file", "big.bin"); err == nil {
				_, err = io.Copy(w, src)
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequest("POST", url+"/v1/files", pr)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestMeasureLargeFileMemory uploads and downloads a 512 MiB file through
// a real `omni serve route` process and reports how far its resident set
// grew above idle (the Files API streams: the figure must stay under 64
// MB), then checks that one byte more is a 413 leaving nothing on disk.
// It writes 1 GiB to disk: run it with OMNI_MEASURE=1.
//
//	OMNI_MEASURE=1 go test ./internal/route/files -run TestMeasureLargeFileMemory -v
func TestMeasureLargeFileMemory(t *testing.T) {
	if testing.Short() || os.Getenv("OMNI_MEASURE") != "1" {
		t.Skip("measurement: set OMNI_MEASURE=1 (builds and runs the binary, moves 1 GiB)")
	}
	const key = "sk-measure-files-key"
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	config := filepath.Join(dir, "omni.yaml")
	if err := os.WriteFile(config, []byte("route:\n  require_api_key: true\n  api_keys: ["+key+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeTCP(t)
	cmd := exec.Command(testenv.OmniBinary(t), "serve", "route", "--route-listen", addr, "--metrics-listen", "off",
		"--data", data, "--config", config, "--log-level", "warn")
	testenv.Start(t, "gateway", cmd)
	url := "http://" + addr
	if !testenv.WaitOK(url+"/readyz", 60*time.Second) {
		t.Fatal("the gateway never became ready")
	}
	pid := cmd.Process.Pid

	// Warm up every path once with a small file, then take idle.
	if code, b := streamUpload(t, url, key, &pattern{n: 1 << 20, x: 1}); code != http.StatusOK {
		t.Fatalf("warm-up upload: %d %s", code, b)
	}
	idle := rssKB(t, pid, "VmRSS")

	// Sample the resident set while the file moves.
	var (
		mu   sync.Mutex
		peak int64
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				v := rssKB(t, pid, "VmRSS")
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	}()

	const size = files.MaxFileBytes
	start := time.Now()
	code, b := streamUpload(t, url, key, &pattern{n: size, x: 7})
	upload := time.Since(start)
	var obj struct {
		ID    string `json:"id"`
		Bytes int64  `json:"bytes"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &obj) != nil || obj.Bytes != size {
		t.Fatalf("upload: %d %s", code, b)
	}
	want := sha256.New()
	io.Copy(want, &pattern{n: size, x: 7})

	start = time.Now()
	req, _ := http.NewRequest("GET", url+"/v1/files/"+obj.ID+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, res.Body)
	res.Body.Close()
	download := time.Since(start)
	if err != nil || res.StatusCode != http.StatusOK || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("download: %d, %d bytes, %v; content differs: %v", res.StatusCode, n, err, !bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	close(stop)
	<-sampled
	hwm := rssKB(t, pid, "VmHWM")
	growth := peak - idle
	t.Logf("512 MiB upload %.1fs (%.0f MB/s), download %.1fs (%.0f MB/s)", upload.Seconds(), float64(size)/1e6/upload.Seconds(),
		download.Seconds(), float64(size)/1e6/download.Seconds())
	t.Logf("gateway RSS: idle %d KiB, peak sampled %d KiB, growth %.1f MB above idle (VmHWM %d KiB, %.1f MB above idle)",
		idle, peak, float64(growth)*1024/1e6, hwm, float64(hwm-idle)*1024/1e6)
	if growth*1024 >= 64e6 {
		t.Errorf("the gateway's RSS grew %.1f MB above idle moving a 512 MiB file; want < 64 MB", float64(growth)*1024/1e6)
	}

	// One byte past the cap: 413 in OpenAI's shape, nothing left on disk.
	code, b = streamUpload(t, url, key, &pattern{n: size + 1, x: 9})
	wantOpenAIError(t, "512 MiB and one byte", code, http.StatusRequestEntityTooLarge, b)
	entries, err := os.ReadDir(filepath.Join(data, "files"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 { // the warm-up file and the 512 MiB one
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the files directory holds %v after the refused upload; want the two stored files", names)
	}
}
