package files

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// S3 is Storage in a bucket of an S3-compatible object store, for
// replicas that share no directory: path-style requests signed with
// AWS Signature Version 4. An object is written as a multipart upload
// of PartSize parts (one part in memory at a time), aborted when the
// write fails; it is read with ranged GETs from where the reader was
// sought.
type S3 struct {
	Endpoint  string // "https://s3.example.com" (no bucket)
	Bucket    string
	Region    string // "us-east-1" when empty
	AccessKey string
	SecretKey string
	Prefix    string       // prepended to every object name ("files/")
	PartSize  int64        // 0: MinPartSize
	HTTP      *http.Client // nil: http.DefaultClient
	// Now is the signing time (nil: time.Now); S3 refuses a request
	// signed more than 15 minutes off its own clock.
	Now func() time.Time
}

// MinPartSize is S3's smallest part but the last.
const MinPartSize = 5 << 20

var _ Storage = (*S3)(nil)

func (s *S3) client() *http.Client {
	if s.HTTP != nil {
		return s.HTTP
	}
	return http.DefaultClient
}

func (s *S3) url(name string, q url.Values) string {
	u := strings.TrimRight(s.Endpoint, "/") + "/" + s.Bucket + "/" + (&url.URL{Path: s.Prefix + name}).EscapedPath()
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// emptyHash is the SHA-256 of no bytes.
const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// do sends a signed request with body (nil: none) and returns the
// answer when its status is 2xx; ok lists other statuses taken as
// success.
func (s *S3) do(ctx context.Context, method, u string, body []byte, hdr http.Header, ok ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	sum := sha256.Sum256(body)
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	s.sign(req, hex.EncodeToString(sum[:]), now())
	res, err := s.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("files: s3 %s: %w", method, err)
	}
	if res.StatusCode/100 == 2 || containsInt(ok, res.StatusCode) {
		return res, nil
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil, ErrNoObject
	}
	return nil, fmt.Errorf("files: s3 %s: status %d: %.200s", method, res.StatusCode, b)
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// sign adds AWS Signature Version 4 headers to req for a payload of
// payloadHash at t.
func (s *S3) sign(req *http.Request, payloadHash string, t time.Time) {
	region := s.Region
	if region == "" {
		region = "us-east-1"
	}
	amzDate := t.UTC().Format("20060102T150405Z")
	day := amzDate[:8]
	req.Header.Set("x-amz-date", amzDate)
	req.Header.Set("x-amz-content-sha256", payloadHash)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	// Canonical headers: host and every x-amz-*, range and content-type.
	names := []string{"host"}
	vals := map[string]string{"host": host}
	for k, v := range req.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") || lk == "range" || lk == "content-type" || lk == "content-md5" {
			names = append(names, lk)
			vals[lk] = strings.TrimSpace(strings.Join(v, ","))
		}
	}
	sort.Strings(names)
	var ch strings.Builder
	for _, n := range names {
		ch.WriteString(n + ":" + vals[n] + "\n")
	}
	signed := strings.Join(names, ";")
	canonical := strings.Join([]string{req.Method, req.URL.EscapedPath(), canonicalQuery(req.URL.Query()), ch.String(), signed, payloadHash}, "\n")
	scope := day + "/" + region + "/s3/aws4_request"
	h := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
	key := hmacSHA256([]byte("AWS4"+s.SecretKey), day)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, "s3")
	key = hmacSHA256(key, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+s.AccessKey+"/"+scope+", SignedHeaders="+signed+", Signature="+sig)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalQuery is q sorted by name, names and values escaped as AWS
// wants (spaces %20, "~" kept).
func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, awsEscape(k)+"="+awsEscape(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

func awsEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// Put implements Storage with a multipart upload; a small object (one
// part) is one PUT.
func (s *S3) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	size := s.PartSize
	if size < MinPartSize {
		size = MinPartSize
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		res, err := s.do(ctx, http.MethodPut, s.url(name, nil), buf[:n], nil)
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return int64(n), nil
	}
	if err != nil {
		return 0, err
	}
	res, err := s.do(ctx, http.MethodPost, s.url(name, url.Values{"uploads": {""}}), []byte{}, nil)
	if err != nil {
		return 0, err
	}
	var init struct {
		UploadID string `xml:"UploadId"`
	}
	err = xml.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&init)
	res.Body.Close()
	if err != nil || init.UploadID == "" {
		return 0, fmt.Errorf("files: s3 multipart upload not started: %v", err)
	}
	total, err := s.parts(ctx, name, init.UploadID, r, buf, n)
	if err != nil {
		// Nothing of a failed write is left: the parts go with the upload.
		if res, aerr := s.do(context.WithoutCancel(ctx), http.MethodDelete, s.url(name, url.Values{"uploadId": {init.UploadID}}), nil, nil); aerr == nil {
			res.Body.Close()
		}
		return 0, err
	}
	return total, nil
}

type completedPart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
}

// parts uploads buf[:n] and the rest of r as the parts of upload id,
// and completes it.
func (s *S3) parts(ctx context.Context, name, id string, r io.Reader, buf []byte, n int) (int64, error) {
	var done []completedPart
	var total int64
	for num := 1; ; num++ {
		if num > 10000 {
			return 0, errors.New("files: s3 object exceeds 10,000 parts")
		}
		q := url.Values{"partNumber": {strconv.Itoa(num)}, "uploadId": {id}}
		res, err := s.do(ctx, http.MethodPut, s.url(name, q), buf[:n], nil)
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		done = append(done, completedPart{PartNumber: num, ETag: res.Header.Get("ETag")})
		total += int64(n)
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr == io.EOF {
			break
		}
		if rerr != nil && rerr != io.ErrUnexpectedEOF {
			return 0, rerr
		}
		if rerr == io.ErrUnexpectedEOF {
			q := url.Values{"partNumber": {strconv.Itoa(num + 1)}, "uploadId": {id}}
			res, err := s.do(ctx, http.MethodPut, s.url(name, q), buf[:n], nil)
			if err != nil {
				return 0, err
			}
			res.Body.Close()
			done = append(done, completedPart{PartNumber: num + 1, ETag: res.Header.Get("ETag")})
			total += int64(n)
			break
		}
	}
	body, err := xml.Marshal(struct {
		XMLName xml.Name        `xml:"CompleteMultipartUpload"`
		Parts   []completedPart `xml:"Part"`
	}{Parts: done})
	if err != nil {
		return 0, err
	}
	res, err := s.do(ctx, http.MethodPost, s.url(name, url.Values{"uploadId": {id}}), body, http.Header{"Content-Type": {"application/xml"}})
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	// S3 may answer 200 with an error inside.
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if bytes.Contains(b, []byte("<Error>")) {
		return 0, fmt.Errorf("files: s3 complete: %.200s", b)
	}
	return total, nil
}

// Open implements Storage: the size from a HEAD, the bytes from a GET
// of the range from the reader's offset, opened at the first read
// after a seek.
func (s *S3) Open(ctx context.Context, name string) (io.ReadSeekCloser, error) {
	res, err := s.do(ctx, http.MethodHead, s.url(name, nil), nil, nil)
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	if res.ContentLength < 0 {
		return nil, errors.New("files: s3 HEAD without a length")
	}
	return &s3Reader{s: s, ctx: ctx, name: name, size: res.ContentLength}, nil
}

// Delete implements Storage.
func (s *S3) Delete(ctx context.Context, name string) error {
	res, err := s.do(ctx, http.MethodDelete, s.url(name, nil), nil, nil)
	if errors.Is(err, ErrNoObject) {
		return nil
	}
	if err != nil {
		return err
	}
	res.Body.Close()
	return nil
}

type s3Reader struct {
	s    *S3
	ctx  context.Context
	name string
	size int64
	off  int64
	body io.ReadCloser // the GET from off, nil until read
}

func (r *s3Reader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.body == nil {
		res, err := r.s.do(r.ctx, http.MethodGet, r.s.url(r.name, nil), nil,
			http.Header{"Range": {fmt.Sprintf("bytes=%d-", r.off)}})
		if err != nil {
			return 0, err
		}
		r.body = res.Body
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	if err == io.EOF && r.off < r.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (r *s3Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	}
	if offset < 0 {
		return 0, errors.New("files: seek before the start")
	}
	if offset != r.off && r.body != nil {
		r.body.Close()
		r.body = nil
	}
	r.off = offset
	return offset, nil
}

func (r *s3Reader) Close() error {
	if r.body != nil {
		return r.body.Close()
	}
	return nil
}
