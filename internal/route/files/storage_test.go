package files_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/files"
)

// newS3 is the S3 storage on an in-process S3 fake (gofakes3: it checks
// no signatures, which TestS3SignatureMatchesAWSExample covers).
func newS3(t *testing.T) *files.S3 {
	t.Helper()
	fake := gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true))
	srv := httptest.NewServer(fake.Server())
	t.Cleanup(srv.Close)
	return &files.S3{Endpoint: srv.URL, Bucket: "omni", Prefix: "files/", AccessKey: "AKIDEXAMPLE", SecretKey: "secret"}
}

func storages(t *testing.T) map[string]func(t *testing.T) files.Storage {
	return map[string]func(t *testing.T) files.Storage{
		"dir": func(t *testing.T) files.Storage {
			d, err := files.NewDir(filepath.Join(t.TempDir(), "files"))
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		"s3": func(t *testing.T) files.Storage { return newS3(t) },
	}
}

// failing yields n bytes of pattern, then fails.
type failing struct {
	r io.Reader
}

func (f failing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("client went away")
	}
	return n, err
}

// Every storage stores a stream (small, and of several S3 parts), reads
// it back whole and from an offset, deletes it, and keeps nothing of a
// write that failed.
func TestStorageConformance(t *testing.T) {
	for name, open := range storages(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			n, err := s.Put(ctx, "file-small", strings.NewReader("hello world"))
			if err != nil || n != 11 {
				t.Fatalf("put small: %d, %v", n, err)
			}
			rc, err := s.Open(ctx, "file-small")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rc.Seek(6, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(b) != "world" {
				t.Fatalf("read from 6: %q, %v", b, err)
			}

			const big = 2*files.MinPartSize + 12345
			want := sha256.New()
			io.Copy(want, &pattern{n: big, x: 3})
			if n, err := s.Put(ctx, "file-big", &pattern{n: big, x: 3}); err != nil || n != big {
				t.Fatalf("put big: %d, %v", n, err)
			}
			rc, err = s.Open(ctx, "file-big")
			if err != nil {
				t.Fatal(err)
			}
			if end, err := rc.Seek(0, io.SeekEnd); err != nil || end != big {
				t.Fatalf("size %d, %v", end, err)
			}
			rc.Seek(0, io.SeekStart)
			got := sha256.New()
			if _, err := io.Copy(got, rc); err != nil || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Fatalf("big object differs: %v", err)
			}
			rc.Close()

			if _, err := s.Put(ctx, "file-broken", failing{&pattern{n: files.MinPartSize + 10, x: 5}}); err == nil {
				t.Fatal("a failing write succeeded")
			}
			if _, err := s.Open(ctx, "file-broken"); !errors.Is(err, files.ErrNoObject) {
				t.Fatalf("a failed write left an object: %v", err)
			}
			for _, id := range []string{"file-small", "file-big"} {
				if err := s.Delete(ctx, id); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Open(ctx, id); !errors.Is(err, files.ErrNoObject) {
					t.Fatalf("deleted %s opens: %v", id, err)
				}
			}
			if err := s.Delete(ctx, "file-none"); err != nil {
				t.Fatalf("deleting a missing object: %v", err)
			}
		})
	}
}

// The Files API over S3: the official client uploads, reads a range and
// deletes, another key gets a 404.
func TestFilesOverS3(t *testing.T) {
	e := newEnv(t)
	s, err := files.New(files.Options{Ops: e.App.API, DB: e.DB, Storage: newS3(t)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey(e.key()), option.WithMaxRetries(0))
	f := upload(t, c, "0123456789abcdef", "user_data")
	res, err := c.Files.Content(ctx, f.ID, option.WithHeader("Range", "bytes=10-"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusPartialContent || string(b) != "abcdef" {
		t.Fatalf("range over s3: %d %q", res.StatusCode, b)
	}
	other := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey(e.key()), option.WithMaxRetries(0))
	if _, err := other.Files.Content(ctx, f.ID); apiStatus(t, err) != http.StatusNotFound {
		t.Fatalf("another key: %v", err)
	}
	if _, err := c.Files.Delete(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Files.Content(ctx, f.ID); apiStatus(t, err) != http.StatusNotFound {
		t.Fatalf("after delete: %v", err)
	}
}

// Configured with route.files_s3, the gateway keeps the content in the
// bucket and none under its data directory.
func TestConfiguredS3(t *testing.T) {
	backend := s3mem.New()
	fake := httptest.NewServer(gofakes3.New(backend, gofakes3.WithAutoBucket(true)).Server())
	t.Cleanup(fake.Close)
	var data string
	ae := admintest.NewEnv(t, func(c *config.Config) {
		data = c.DataDir
		c.Route.FilesS3 = &config.RouteFilesS3{Endpoint: fake.URL, Bucket: "omni", Prefix: "gw/", AccessKey: "AKIDEXAMPLE", SecretKey: "secret"}
	})
	ae.Login()
	e := &env{Env: ae, data: data}
	c := e.client(e.key())
	f := upload(t, c, "stored in the bucket", "user_data")
	objs, err := backend.ListBucket("omni", &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil || len(objs.Contents) != 1 || !strings.HasPrefix(objs.Contents[0].Key, "gw/") {
		t.Fatalf("bucket holds %+v (%v)", objs, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "files")); len(entries) != 0 {
		t.Fatalf("the data directory holds %d files", len(entries))
	}
	res, err := c.Files.Content(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "stored in the bucket" {
		t.Fatalf("content %q", b)
	}
}
