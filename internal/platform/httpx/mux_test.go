package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/omniedge/omni/internal/platform/httpx"
)

func TestMuxListsWhatItServes(t *testing.T) {
	const self = "github.com/omniedge/omni/internal/platform/httpx_test"
	sub := httpx.NewMux("key")
	sub.HandleFunc("POST /v1/chat/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(201) })
	sub.Handle("/v1/", httpx.WithAuth("public", http.NotFoundHandler()))

	m := httpx.NewMux("")
	m.Handle("GET  /api/things", httpx.WithAuth("session", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })))
	m.Handle("/", sub) // a mounted mux stands for its own routes

	want := []httpx.Route{
		{Method: "GET", Path: "/api/things", Auth: "session", Owner: self},
		{Method: "POST", Path: "/v1/chat/{id}", Auth: "key", Owner: self},
		{Method: "", Path: "/v1/", Auth: "public", Owner: self},
	}
	if got := m.Routes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("routes:\n got %+v\nwant %+v", got, want)
	}

	// Serving is the ServeMux's, through labelled and mounted handlers.
	for _, c := range []struct {
		method, path string
		status       int
	}{{"GET", "/api/things", 204}, {"POST", "/v1/chat/7", 201}, {"GET", "/v1/other", 404}} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, rec.Code, c.status)
		}
	}

	// A conflicting pattern is refused as by http.ServeMux.
	defer func() {
		if recover() == nil {
			t.Error("a duplicate pattern was accepted")
		}
	}()
	m.Handle("GET /api/things", http.NotFoundHandler())
}
