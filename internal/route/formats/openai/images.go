package openai

import (
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// generateImages makes images with POST {base}/images/generations (the
// OpenAI Images API, which xAI, Together, Fireworks and Nebius also
// serve): the client's fields as it sent them, response_format only when
// it asked for one (gpt-image models take none).
func generateImages(ctx context.Context, c *Client, model string, r *llm.ImageRequest) (*llm.ImageResponse, error) {
	body := map[string]json.RawMessage{}
	for k, v := range r.Extra {
		body[k] = v
	}
	str := func(k, v string) {
		if v != "" {
			body[k], _ = json.Marshal(v)
		}
	}
	str("model", model)
	str("prompt", r.Prompt)
	str("size", r.Size)
	str("quality", r.Quality)
	str("style", r.Style)
	str("response_format", r.ResponseFormat)
	str("user", r.User)
	if r.N > 0 {
		body["n"] = json.RawMessage(strconv.Itoa(r.N))
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := c.post(upstreamhttp.LargeAnswer(ctx), "/images/generations", b)
	if err != nil {
		return nil, err
	}
	return sendImages(c, req)
}

// editImages edits images with POST {base}/images/edits, a multipart
// body streamed as it is written: the fields, then the image ("image",
// or "image[]" for each of several, as OpenAI's SDKs send them) and the
// mask.
func editImages(ctx context.Context, c *Client, model string, r *llm.ImageRequest) (*llm.ImageResponse, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() { pw.CloseWithError(writeEdit(mw, model, r)) }()
	req, err := upstreamhttp.NewRequest(upstreamhttp.LargeAnswer(ctx), http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/images/edits", pr, c.Provider)
	if err != nil {
		pr.Close()
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	adapter.SetKey(req.Header, "Authorization", "Bearer ", c.APIKey)
	adapter.SetHeaders(req.Header, c.Headers)
	return sendImages(c, req)
}

// writeEdit writes an edit's multipart body and closes mw.
func writeEdit(mw *multipart.Writer, model string, r *llm.ImageRequest) error {
	fields := map[string]string{}
	for k, v := range r.Extra {
		var s string
		if json.Unmarshal(v, &s) == nil {
			fields[k] = s
		} else {
			fields[k] = string(v)
		}
	}
	set := func(k, v string) {
		if v != "" {
			fields[k] = v
		}
	}
	set("model", model)
	set("prompt", r.Prompt)
	set("size", r.Size)
	set("quality", r.Quality)
	set("style", r.Style)
	set("response_format", r.ResponseFormat)
	set("user", r.User)
	if r.N > 0 {
		fields["n"] = strconv.Itoa(r.N)
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := mw.WriteField(k, fields[k]); err != nil {
			return err
		}
	}
	name := "image"
	if len(r.Images) > 1 {
		name = "image[]"
	}
	for _, img := range r.Images {
		if err := writeFile(mw, name, img); err != nil {
			return err
		}
	}
	if r.Mask != nil {
		if err := writeFile(mw, "mask", *r.Mask); err != nil {
			return err
		}
	}
	return mw.Close()
}

func writeFile(mw *multipart.Writer, field string, f llm.ImageFile) error {
	h := textproto.MIMEHeader{}
	name := f.Name
	if name == "" {
		name = "image.png"
	}
	h.Set("Content-Disposition", `form-data; name="`+field+`"; filename="`+quoteEscaper.Replace(name)+`"`)
	ct := f.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	w, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	_, err = w.Write(f.Data)
	return err
}

var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"", "\r", "", "\n", "")

// imagesAnswer is OpenAI's ImagesResponse.
type imagesAnswer struct {
	Created int64 `json:"created"`
	Data    []struct {
		B64JSON       string `json:"b64_json"`
		URL           string `json:"url"`
		RevisedPrompt string `json:"revised_prompt"`
	} `json:"data"`
	Usage        json.RawMessage `json:"usage"`
	Background   json.RawMessage `json:"background"`
	OutputFormat json.RawMessage `json:"output_format"`
	Quality      json.RawMessage `json:"quality"`
	Size         json.RawMessage `json:"size"`
}

// sendImages sends req and reads an ImagesResponse of at most
// llm.MaxImageAnswer bytes.
func sendImages(c *Client, req *http.Request) (*llm.ImageResponse, error) {
	resp, err := upstreamhttp.Send(c.HTTP, req, c.Provider, DecodeError)
	if err != nil {
		return nil, err
	}
	raw, err := ReadImageAnswer(resp, c.Provider)
	if err != nil {
		return nil, err
	}
	var a imagesAnswer
	if err := json.Unmarshal(raw, &a); err != nil || len(a.Data) == 0 {
		return nil, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "not an images answer"})
	}
	out := &llm.ImageResponse{Created: a.Created, Images: make([]llm.GeneratedImage, len(a.Data)), Meta: map[string][]byte{}}
	for i, d := range a.Data {
		if d.B64JSON == "" && d.URL == "" {
			return nil, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "an image without b64_json or url"})
		}
		out.Images[i] = llm.GeneratedImage{B64JSON: d.B64JSON, URL: d.URL, RevisedPrompt: d.RevisedPrompt}
	}
	if len(a.Usage) > 0 && string(a.Usage) != "null" {
		var u struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		}
		if json.Unmarshal(a.Usage, &u) == nil {
			out.Usage, out.Tokens = a.Usage, llm.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens}
		}
	}
	for k, v := range map[string]json.RawMessage{"background": a.Background, "output_format": a.OutputFormat, "quality": a.Quality, "size": a.Size} {
		if len(v) > 0 && string(v) != "null" {
			out.Meta[k] = v
		}
	}
	return out, nil
}

// ReadImageAnswer reads the body of resp, an image upstream's 2xx
// answer, failing as unreadable past llm.MaxImageAnswer bytes.
func ReadImageAnswer(resp *http.Response, provider string) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, llm.MaxImageAnswer+1))
	if err != nil {
		return nil, upstreamhttp.Unreadable(provider, &llm.Error{Message: upstreamhttp.DescribeRead(err)})
	}
	if len(b) > llm.MaxImageAnswer {
		return nil, upstreamhttp.Unreadable(provider, &llm.Error{Message: "the image answer is larger than " + strconv.Itoa(llm.MaxImageAnswer) + " bytes"})
	}
	return b, nil
}
