package images_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/route/formats/formattest"
)

// An edit holds its images once: the bytes allocated per edit of a
// 16 MiB image, in the gateway and this process's fake upstream (which
// discards what it reads) together, and the time it takes, are reported.
func TestMeasureEdit(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	answer := formattest.Testdata(t, "openai_edit_answer.json")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	}))
	defer up.Close()
	e := newEnv(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "oa", "type": "openai", "base_url": up.URL + "/v1", "api_key": "sk-oa"})
	_, key := createKey(e, map[string]any{"name": "m"})
	const size, runs = 16 << 20, 4
	edit := func() {
		ct, body := streamedForm(t, [][2]any{{"image", size}})
		if status, b := post(t, e, "/v1/images/edits", key, ct, body); status != http.StatusOK {
			t.Fatalf("edit %d %s", status, b)
		}
	}
	edit() // warm up
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range runs {
		edit()
	}
	el := time.Since(start)
	runtime.ReadMemStats(&after)
	per := float64(after.TotalAlloc-before.TotalAlloc) / runs
	t.Logf("edit of a %d MiB image: %.1f MiB allocated per edit (%.2f× the image), %v per edit", size>>20, per/(1<<20), per/size, el/runs)
}
