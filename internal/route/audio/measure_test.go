package audio_test

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// rssKB reads a field of /proc/self/status (kB), 0 where there is none.
func rssKB(field string) int64 {
	n, _ := testenv.ProcStatusKB(0, field)
	return n
}

// A 100 MB transcription is streamed: the upstream gets the file's first
// bytes while the client still holds back its last chunk (the client
// sends it only once the upstream has seen bytes, so a gateway that read
// the upload whole first would never answer), and the gateway's memory
// does not grow with the file. Reports the heap and RSS growth.
func TestMeasureTranscriptionStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 100 MB")
	}
	const size = 100 << 20
	const chunk = 1 << 20
	e := newEnv(t)
	f := newFake(t)
	f.firstByte = make(chan struct{})
	e.provider("oa", "openai", f)
	_, key := e.key(map[string]any{"name": "m"})

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	var heldBack atomic.Bool // the last chunk is not sent yet
	var sawEarly atomic.Bool
	go func() {
		err := func() error {
			if err := mw.WriteField("model", "oa/whisper-1"); err != nil {
				return err
			}
			h := make(textproto.MIMEHeader)
			h.Set("Content-Disposition", `form-data; name="file"; filename="long.mp3"`)
			h.Set("Content-Type", "audio/mpeg")
			w, err := mw.CreatePart(h)
			if err != nil {
				return err
			}
			buf := make([]byte, chunk)
			for i := range buf {
				buf[i] = byte(i * 31)
			}
			heldBack.Store(true)
			for range size/chunk - 1 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
			}
			select {
			case <-f.firstByte:
				sawEarly.Store(heldBack.Load())
			case <-time.After(2 * time.Minute):
				return errors.New("the upstream saw no byte of the file while the client held back its last chunk")
			}
			heldBack.Store(false)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			if err := mw.WriteField("response_format", "json"); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rssBefore := rssKB("VmRSS")
	var peakHeap atomic.Uint64
	peakRSS := atomic.Int64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peakHeap.Load() {
				peakHeap.Store(m.HeapInuse)
			}
			if r := rssKB("VmRSS"); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	req, _ := http.NewRequest("POST", e.Srv.URL+"/v1/audio/transcriptions", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for i := 0; i+1 < len(admintest.Bearer(key)); i += 2 {
		req.Header.Set(admintest.Bearer(key)[i], admintest.Bearer(key)[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if res.StatusCode != 200 || !strings.Contains(string(body), "The beach was") {
		t.Fatalf("status %d: %.300s", res.StatusCode, body)
	}
	got := f.last(t)
	if got.fileSize != size {
		t.Fatalf("the upstream got %d bytes, want %d", got.fileSize, size)
	}
	if !sawEarly.Load() {
		t.Fatal("the upstream's first byte did not arrive before the client finished uploading")
	}
	heapGrowth := int64(peakHeap.Load()) - int64(before.HeapInuse)
	rssGrowth := peakRSS.Load() - rssBefore
	t.Logf("100 MiB transcription streamed in %v (%.0f MB/s); first upstream byte before the client's last chunk: %v", took.Round(time.Millisecond),
		float64(size)/1e6/took.Seconds(), sawEarly.Load())
	t.Logf("heap in use: peak growth %.1f MiB; RSS: %d MiB before, peak growth %.1f MiB", float64(heapGrowth)/(1<<20), rssBefore/1024, float64(rssGrowth)/1024)
	if heapGrowth > 64<<20 {
		t.Fatalf("heap grew %d MiB for a 100 MiB upload: it is held in memory", heapGrowth>>20)
	}
}
