package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Storage holds the files' content, one object per file id; the
// metadata (owner, purpose, size, expiry) is in the module's tables.
// The directory implementation is Dir; an object store shared by
// replicas implements the same three calls.
type Storage interface {
	// Put stores everything r yields as object name and returns its
	// size. When it fails (r's error included), nothing of name is left.
	Put(ctx context.Context, name string, r io.Reader) (int64, error)
	// Open returns object name to read and seek (ranges are served by
	// seeking); ErrNoObject when there is none.
	Open(ctx context.Context, name string) (io.ReadSeekCloser, error)
	// Delete removes object name; a missing one is no error.
	Delete(ctx context.Context, name string) error
}

// ErrNoObject is Storage.Open's error for a name it does not hold.
var ErrNoObject = errors.New("files: no such object")

// Dir is Storage in a local directory: one file per object, written
// under a temporary name and renamed into place once complete, so a
// reader never sees a partial object.
type Dir struct {
	path string
}

// tmpPrefix starts the names of objects being written.
const tmpPrefix = ".upload-"

// NewDir returns the storage in directory path, creating it (mode 0700).
func NewDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("files: storage directory: %w", err)
	}
	return &Dir{path: path}, nil
}

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// object is the path of name, which must be a plain name (the service
// makes them: "file-" and base64url characters).
func (d *Dir) object(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name[0] == '.' {
		return "", fmt.Errorf("files: invalid object name %q", name)
	}
	return filepath.Join(d.path, name), nil
}

// Put implements Storage: the object is written to a temporary file,
// synced and renamed into place; on any failure the temporary file is
// removed.
func (d *Dir) Put(ctx context.Context, name string, r io.Reader) (n int64, err error) {
	dst, err := d.object(name)
	if err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(d.path, tmpPrefix+"*")
	if err != nil {
		return 0, fmt.Errorf("files: create object: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err = io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return n, err
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("files: write object: %w", err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("files: write object: %w", err)
	}
	if err = os.Rename(f.Name(), dst); err != nil {
		return n, fmt.Errorf("files: write object: %w", err)
	}
	return n, nil
}

// Open implements Storage.
func (d *Dir) Open(_ context.Context, name string) (io.ReadSeekCloser, error) {
	p, err := d.object(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoObject
	}
	return f, err
}

// Delete implements Storage.
func (d *Dir) Delete(_ context.Context, name string) error {
	p, err := d.object(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// SweepPartial removes the temporary files of writes that a crash cut
// off, older than age (a write still under way is younger).
func (d *Dir) SweepPartial(now time.Time, age time.Duration) (int, error) {
	n := 0
	err := d.each(now, age, func(name string) error {
		if strings.HasPrefix(name, tmpPrefix) && os.Remove(filepath.Join(d.path, name)) == nil {
			n++
		}
		return nil
	})
	return n, err
}

// Objects calls fn with the name of every stored object older than age
// at now.
func (d *Dir) Objects(now time.Time, age time.Duration, fn func(name string) error) error {
	return d.each(now, age, func(name string) error {
		if strings.HasPrefix(name, ".") {
			return nil
		}
		return fn(name)
	})
}

// each calls fn with the name of every file of the directory older than
// age at now, reading the directory 1,000 entries at a time.
func (d *Dir) each(now time.Time, age time.Duration, fn func(name string) error) error {
	dir, err := os.Open(d.path)
	if err != nil {
		return err
	}
	defer dir.Close()
	for {
		entries, err := dir.ReadDir(1000)
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			info, ierr := e.Info()
			if ierr != nil || now.Sub(info.ModTime()) < age {
				continue
			}
			if ferr := fn(e.Name()); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
