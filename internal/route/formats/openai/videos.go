package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// VideoRequest is what the Videos API's POST {base}/videos takes (Sora):
// sent as multipart/form-data, as OpenAI's clients send it. Seconds and
// Size are left out when empty (the upstream's defaults).
type VideoRequest struct {
	Model   string
	Prompt  string
	Seconds int
	Size    string
}

// Video is the Videos API's video job object (POST {base}/videos, GET
// {base}/videos/{id}): status queued, in_progress, completed or failed.
type Video struct {
	ID        string      `json:"id"`
	Object    string      `json:"object"`
	Model     string      `json:"model"`
	Status    string      `json:"status"`
	Progress  *float64    `json:"progress"`
	CreatedAt int64       `json:"created_at"`
	Seconds   string      `json:"seconds"`
	Size      string      `json:"size"`
	Error     *VideoError `json:"error"`
}

// VideoError is why a video job failed.
type VideoError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Videos is OpenAI's Videos API (Sora) at the connection of a Client:
// start a job, read it, open its MP4.
type Videos struct{ c *Client }

// VideosOf returns the Videos API at c's connection (base URL, key,
// headers, HTTP client).
func VideosOf(c *Client) *Videos { return &Videos{c: c} }

// Create starts a video job with POST {base}/videos.
func (v *Videos) Create(ctx context.Context, r VideoRequest) (*Video, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields := [][2]string{{"model", r.Model}, {"prompt", r.Prompt}}
	if r.Seconds > 0 {
		fields = append(fields, [2]string{"seconds", strconv.Itoa(r.Seconds)})
	}
	if r.Size != "" {
		fields = append(fields, [2]string{"size", r.Size})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	req, err := v.request(ctx, http.MethodPost, "/videos", buf.Bytes())
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return v.video(req)
}

// Get reads a video job with GET {base}/videos/{id}.
func (v *Videos) Get(ctx context.Context, id string) (*Video, error) {
	req, err := v.request(ctx, http.MethodGet, "/videos/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	return v.video(req)
}

// Content opens the finished MP4 of a job with GET
// {base}/videos/{id}/content; the caller reads and closes the body.
func (v *Videos) Content(ctx context.Context, id string) (*http.Response, error) {
	req, err := v.request(upstreamhttp.LargeAnswer(ctx), http.MethodGet, "/videos/"+url.PathEscape(id)+"/content", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "*/*")
	return upstreamhttp.Send(v.c.HTTP, req, v.c.Provider, DecodeError)
}

func (v *Videos) request(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	c := v.c
	req, err := adapter.NewRequest(ctx, c.Provider, method, strings.TrimRight(c.BaseURL, "/")+path, body, "")
	if err != nil {
		return nil, err
	}
	adapter.SetKey(req.Header, "Authorization", "Bearer ", c.APIKey)
	adapter.SetHeaders(req.Header, c.Headers)
	return req, nil
}

func (v *Videos) video(req *http.Request) (*Video, error) {
	raw, err := adapter.Do(v.c.Conn(), req)
	if err != nil {
		return nil, err
	}
	var out Video
	if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" || out.Status == "" {
		return nil, upstreamhttp.Unreadable(v.c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "not a video job"})
	}
	return &out, nil
}
