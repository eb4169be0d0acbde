// Package webui serves a product's dashboard from files embedded in the
// binary: every file is read, typed, hashed and (when it helps) gzipped
// once at start, then answered with strict security headers (a
// Content-Security-Policy without inline scripts, no framing, no MIME
// sniffing, no referrer), an ETag, and index.html for the dashboard's own
// client-side routes. Nothing a client sends is stored: the set of
// answers is fixed when the handler is built. It also owns the look both
// dashboards share (Static: base.css, ui.js and the vendored chart
// library), which each product serves under its own prefix.
package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// CSP is the default Content-Security-Policy: scripts, styles, images,
// fonts and API calls from the dashboard's own origin only; no inline
// script, no plugins, no framing, forms post only back to the origin.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// Options tune a Handler.
type Options struct {
	// Prefix is the URL path the files are served under ("/" by default;
	// "/dashboard/" serves dashboard/app.js for fsys's app.js).
	Prefix string
	// Index is the page for Prefix itself and for every path under it
	// without a file extension (client-side routes): "index.html" by
	// default.
	Index string
	// NoIndex serves the files only (a directory of shared assets such as
	// Static): every other path, with or without an extension, is a 404.
	NoIndex bool
	// CSP replaces the default Content-Security-Policy.
	CSP string
}

type file struct {
	body, gz []byte
	ctype    string
	etag     string
}

// Handler answers GET and HEAD for the embedded files.
type Handler struct {
	prefix string
	index  *file
	files  map[string]*file // path relative to the root, without a leading slash
	csp    string
}

// New reads every regular file of fsys. It fails when Index is missing
// (unless NoIndex is set).
func New(fsys fs.FS, o Options) (*Handler, error) {
	if o.Prefix == "" {
		o.Prefix = "/"
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Index == "" {
		o.Index = "index.html"
	}
	if o.CSP == "" {
		o.CSP = CSP
	}
	h := &Handler{prefix: o.Prefix, files: map[string]*file{}, csp: o.CSP}
	// One compressor for every file: a deflate compressor at the best
	// level allocates about a megabyte of tables, which a fresh one per
	// file would allocate again for each at start.
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestCompression)
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		h.files[p] = newFile(p, b, zw)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	if o.NoIndex {
		return h, nil
	}
	if h.index = h.files[o.Index]; h.index == nil {
		return nil, fmt.Errorf("webui: no %s", o.Index)
	}
	return h, nil
}

func newFile(name string, b []byte, zw *gzip.Writer) *file {
	sum := sha256.Sum256(b)
	f := &file{body: b, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
	f.ctype = mime.TypeByExtension(path.Ext(name))
	if f.ctype == "" {
		f.ctype = http.DetectContentType(b)
	}
	if compressible(f.ctype) && len(b) > 512 {
		var buf bytes.Buffer
		zw.Reset(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		if buf.Len() < len(b) {
			f.gz = buf.Bytes()
		}
	}
	return f
}

func compressible(ctype string) bool {
	for _, p := range []string{"text/", "application/javascript", "application/json", "image/svg+xml", "application/manifest+json"} {
		if strings.HasPrefix(ctype, p) {
			return true
		}
	}
	return false
}

// Files lists the served files' paths (relative to Prefix).
func (h *Handler) Files() []string {
	out := make([]string, 0, len(h.files))
	for p := range h.files {
		out = append(out, p)
	}
	return out
}

// SetHeaders sets the security headers every dashboard answer carries
// (also for pages other handlers render in the dashboard's look).
func (h *Handler) SetHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// ServeHTTP answers a file, index.html for a client-side route, or a
// plain 404 for a missing asset (a path with an extension).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rel, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok && r.URL.Path+"/" == h.prefix {
		rel, ok = "", true
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	f := h.files[rel]
	isIndex := false
	if f == nil {
		if path.Ext(rel) != "" || h.index == nil {
			h.SetHeaders(w)
			http.NotFound(w, r)
			return
		}
		f, isIndex = h.index, true
	}
	if h.index != nil && f == h.index {
		isIndex = true
	}
	h.SetHeaders(w)
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	hd.Set("ETag", f.etag)
	hd.Set("Vary", "Accept-Encoding")
	if isIndex {
		// The page names the assets; it is always revalidated so a new
		// binary's assets are picked up at once.
		hd.Set("Cache-Control", "no-cache")
	} else {
		hd.Set("Cache-Control", "public, max-age=300, must-revalidate")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	if f.gz != nil && acceptsGzip(r) {
		hd.Set("Content-Encoding", "gzip")
		body = f.gz
	}
	hd.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}
