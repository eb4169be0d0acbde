package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// Register adds the backup endpoints through add (the management API's
// guarded registration), and the one route that takes a file, the
// import, through upload (the same, also accepting the file's types).
func (s *Service) Register(add, upload func(pattern string, h httpx.HandlerFunc)) {
	add("GET /api/db-backups", s.handleList)
	add("PUT /api/db-backups", s.handleCreate)
	add("POST /api/db-backups", s.handleRestore)
	add("DELETE /api/db-backups/{id}", s.handleDelete)
	add("GET /api/db-backups/settings", s.handleGetConfig)
	add("PUT /api/db-backups/settings", s.handlePutConfig)
	add("PATCH /api/db-backups/settings", s.handlePutConfig)
	add("GET /api/db-backups/export", s.handleExport)
	upload("POST /api/db-backups/import", s.handleImport)
	add("GET /api/db-backups/exportAll", s.handleExportAll)
}

// httpError maps service errors to HTTP errors; anything else is a 500.
func httpError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalid):
		return httpx.BadRequest("%s", err.Error())
	case errors.Is(err, ErrNotFound):
		return httpx.NotFound("%s", err.Error())
	case errors.Is(err, ErrTooLarge):
		return httpx.Errorf(http.StatusRequestEntityTooLarge, "too_large", "%s", err.Error())
	}
	return err
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) error {
	list, err := s.List(r.Context())
	if err != nil {
		return err
	}
	cfg, err := s.Config(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"backups": list, "max_backups": cfg.MaxBackups, "auto_backup": cfg.Auto})
	return nil
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) error {
	e, err := s.Create(r.Context(), KindManual)
	if err != nil {
		return httpError(err)
	}
	httpx.WriteJSON(w, http.StatusCreated, e)
	return nil
}

func (s *Service) handleRestore(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		ID       string `json:"id"`
		Filename string `json:"filename"`
	}
	if err := httpx.DecodeJSON(w, r, &b, 1<<16); err != nil {
		return err
	}
	id := b.ID
	if id == "" {
		id = b.Filename
	}
	if id == "" {
		return httpx.BadRequest(`"id" (or "filename") of the backup to restore is required`)
	}
	if b.ID != "" && b.Filename != "" && b.ID != b.Filename {
		return httpx.BadRequest(`"id" and "filename" name different backups`)
	}
	e, err := s.Get(r.Context(), id)
	if err != nil {
		return httpError(err)
	}
	counts, err := s.Restore(r.Context(), id)
	if err != nil {
		return httpError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"restored": e, "tables": counts})
	return nil
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) error {
	if err := s.Delete(r.Context(), r.PathValue("id")); err != nil {
		return httpError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleGetConfig(w http.ResponseWriter, r *http.Request) error {
	cfg, err := s.Config(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, cfg)
	return nil
}

func (s *Service) handlePutConfig(w http.ResponseWriter, r *http.Request) error {
	cur, err := s.Config(r.Context())
	if err != nil {
		return err
	}
	var b struct {
		MaxBackups *int  `json:"max_backups"`
		Auto       *bool `json:"auto_backup"`
	}
	if err := httpx.DecodeJSON(w, r, &b, 1<<16); err != nil {
		return err
	}
	if b.MaxBackups != nil {
		cur.MaxBackups = *b.MaxBackups
	}
	if b.Auto != nil {
		cur.Auto = *b.Auto
	}
	if err := s.SetConfig(r.Context(), cur); err != nil {
		return httpError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, cur)
	return nil
}

// withSnapshot takes a temporary snapshot, hands it to fn and removes it.
func (s *Service) withSnapshot(ctx context.Context, fn func(path string) error) error {
	if err := s.ensureDir(); err != nil {
		return err
	}
	tmp, err := s.tempPath(".export-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := s.snapshot(ctx, tmp); err != nil {
		return err
	}
	return fn(tmp)
}

func (s *Service) exportName(ext string) string {
	return "omni-route-" + s.opt.Clock.Now().UTC().Format("20060102T150405Z") + ext
}

func attachment(w http.ResponseWriter, name, contentType string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
}

func (s *Service) handleExport(w http.ResponseWriter, r *http.Request) error {
	return s.withSnapshot(r.Context(), func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		attachment(w, s.exportName(".sqlite"), "application/vnd.sqlite3")
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size(), 10))
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, f) // the client may leave; nothing to undo
		return nil
	})
}

// Manifest describes the database file inside an exportAll archive.
type Manifest struct {
	Format        string       `json:"format"`         // "omniroute-backup"
	FormatVersion int          `json:"format_version"` // 1
	SchemaVersion string       `json:"schema_version"` // latest gateway migration in the file
	Source        string       `json:"source"`         // dialect of the exported database
	CreatedAt     time.Time    `json:"created_at"`
	Database      string       `json:"database"` // file name inside the archive
	Size          int64        `json:"size"`
	Tables        []tableCount `json:"tables"`
}

// ArchiveDatabase and ArchiveManifest are the names inside an exportAll archive.
const (
	ArchiveDatabase = "omni-route.sqlite"
	ArchiveManifest = "manifest.json"
)

func (s *Service) handleExportAll(w http.ResponseWriter, r *http.Request) error {
	return s.withSnapshot(r.Context(), func(path string) error {
		version, counts, err := fileInfo(r.Context(), path)
		if err != nil {
			return err
		}
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		now := s.opt.Clock.Now().UTC()
		man, err := json.MarshalIndent(Manifest{Format: "omniroute-backup", FormatVersion: 1, SchemaVersion: version,
			Source: string(s.opt.DB.Dialect), CreatedAt: now, Database: ArchiveDatabase, Size: info.Size(), Tables: counts}, "", "  ")
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		attachment(w, s.exportName(".tar.gz"), "application/gzip")
		w.WriteHeader(http.StatusOK)
		gz := gzip.NewWriter(w)
		tw := tar.NewWriter(gz)
		if err := tw.WriteHeader(&tar.Header{Name: ArchiveManifest, Mode: 0o600, Size: int64(len(man)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return nil // headers are sent: the client sees a truncated archive
		}
		if _, err := tw.Write(man); err != nil {
			return nil
		}
		if err := tw.WriteHeader(&tar.Header{Name: ArchiveDatabase, Mode: 0o600, Size: info.Size(), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return nil
		}
		if _, err := io.Copy(tw, f); err != nil {
			return nil
		}
		if err := tw.Close(); err != nil {
			return nil
		}
		_ = gz.Close()
		return nil
	})
}

// handleImport accepts the file as the raw body or as the first file part
// of a multipart/form-data body (field "file" preferred).
func (s *Service) handleImport(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, s.opt.MaxUpload+1<<20)
	var src io.Reader = body
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		if params["boundary"] == "" {
			return httpx.BadRequest("multipart body without a boundary")
		}
		part, err := firstFilePart(multipart.NewReader(body, params["boundary"]))
		if err != nil {
			return err
		}
		defer part.Close()
		src = part
	}
	counts, err := s.Import(r.Context(), src)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return httpx.Errorf(http.StatusRequestEntityTooLarge, "too_large", "the file is larger than %d bytes", s.opt.MaxUpload)
		}
		return httpError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"imported": true, "tables": counts})
	return nil
}

func firstFilePart(mr *multipart.Reader) (*multipart.Part, error) {
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, httpx.BadRequest(`the multipart body has no file part (send the .sqlite file as field "file")`)
		}
		if err != nil {
			return nil, httpx.BadRequest("malformed multipart body")
		}
		if p.FormName() == "file" || p.FileName() != "" {
			return p, nil
		}
		p.Close()
	}
}
