package images

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// TypeSDWebUI is AUTOMATIC1111's Stable Diffusion WebUI started with
// --api: POST {base}/sdapi/v1/txt2img and {base}/sdapi/v1/img2img,
// base http://127.0.0.1:7860. A key "user:password" is sent as HTTP
// Basic authentication (--api-auth).
const TypeSDWebUI = "sdwebui"

// DefaultSDWebUIBase is the WebUI's address when a connection names
// none.
const DefaultSDWebUIBase = "http://127.0.0.1:7860"

// Upstreams is the image provider types as a gateway module (it needs
// nothing built, so it comes with the formats at the top of the list).
func Upstreams() feature.Module {
	return feature.Module{Name: "images-upstreams", Package: "route/images", Providers: Register}
}

// Register adds the sdwebui provider type.
func Register(reg *provider.Registry) {
	reg.Register(TypeSDWebUI, func(cfg provider.Config) (router.Adapter, error) { return NewSDWebUI(cfg), nil })
}

// NewSDWebUI returns the client of one SD WebUI connection.
func NewSDWebUI(cfg provider.Config) *SDWebUI {
	return &SDWebUI{adapter.NewSingle(TypeSDWebUI, cfg, DefaultSDWebUIBase, "images only: POST /v1/images/generations and /v1/images/edits")}
}

// SDWebUI calls a Stable Diffusion WebUI. It is a router.Adapter that
// serves images only: chat requests routed to it are a 400. The model
// is the checkpoint (override_settings.sd_model_checkpoint); quality
// and style have no WebUI equivalent and are not sent.
type SDWebUI struct {
	adapter.Single
}

// ModelKind implements provider.Kinded: an SD WebUI checkpoint makes
// images whatever its name.
func (c *SDWebUI) ModelKind() string { return provider.KindImage }

// sdRequest is the body of txt2img and img2img.
type sdRequest struct {
	Prompt           string            `json:"prompt"`
	Width            int               `json:"width,omitempty"`
	Height           int               `json:"height,omitempty"`
	BatchSize        int               `json:"batch_size"`
	NIter            int               `json:"n_iter"`
	DoNotSaveGrid    bool              `json:"do_not_save_grid"`
	SendImages       bool              `json:"send_images"`
	SaveImages       bool              `json:"save_images"`
	OverrideSettings map[string]string `json:"override_settings,omitempty"`
	// img2img only
	InitImages []string `json:"init_images,omitempty"`
	Mask       string   `json:"mask,omitempty"`
}

// sdAnswer is what both answer: the images as base64, the parameters
// and a JSON string of generation info.
type sdAnswer struct {
	Images []string `json:"images"`
}

// GenerateImages implements Generator with txt2img.
func (c *SDWebUI) GenerateImages(ctx context.Context, model string, r *llm.ImageRequest) (*llm.ImageResponse, error) {
	return c.call(ctx, "/sdapi/v1/txt2img", c.body(model, r))
}

// EditImages implements Editor with img2img: the images are its
// init_images, the mask its mask.
func (c *SDWebUI) EditImages(ctx context.Context, model string, r *llm.ImageRequest) (*llm.ImageResponse, error) {
	b := c.body(model, r)
	for _, im := range r.Images {
		b.InitImages = append(b.InitImages, base64.StdEncoding.EncodeToString(im.Data))
	}
	if r.Mask != nil {
		b.Mask = base64.StdEncoding.EncodeToString(r.Mask.Data)
	}
	return c.call(ctx, "/sdapi/v1/img2img", b)
}

func (c *SDWebUI) body(model string, r *llm.ImageRequest) sdRequest {
	b := sdRequest{Prompt: r.Prompt, BatchSize: max(r.N, 1), NIter: 1, DoNotSaveGrid: true, SendImages: true}
	if w, h, ok := parseSize(r.Size); ok {
		b.Width, b.Height = w, h
	}
	if model != "" && model != "default" {
		b.OverrideSettings = map[string]string{"sd_model_checkpoint": model}
	}
	return b
}

func (c *SDWebUI) call(ctx context.Context, path string, body sdRequest) (*llm.ImageResponse, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := adapter.NewRequest(upstreamhttp.LargeAnswer(ctx), c.Provider, http.MethodPost, c.BaseURL+path, b, "application/json")
	if err != nil {
		return nil, err
	}
	adapter.SetHeaders(req.Header, c.Headers)
	req.Header.Del("Authorization")
	if user, pass, ok := strings.Cut(c.APIKey, ":"); ok {
		req.SetBasicAuth(user, pass)
	} else if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	resp, err := upstreamhttp.Send(c.HTTP, req, c.Provider, decodeSDError)
	if err != nil {
		return nil, err
	}
	raw, err := openai.ReadImageAnswer(resp, c.Provider)
	if err != nil {
		return nil, err
	}
	var a sdAnswer
	if err := json.Unmarshal(raw, &a); err != nil || len(a.Images) == 0 {
		return nil, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "not a txt2img or img2img answer"})
	}
	// A WebUI that saves a grid puts it first: the last batch_size
	// images are the ones asked for.
	if n := body.BatchSize; len(a.Images) > n {
		a.Images = a.Images[len(a.Images)-n:]
	}
	out := &llm.ImageResponse{Images: make([]llm.GeneratedImage, len(a.Images))}
	for i, im := range a.Images {
		// Some versions prefix a data: URL's header.
		if _, data, ok := strings.Cut(im, ";base64,"); ok && strings.HasPrefix(im, "data:") {
			im = data
		}
		out.Images[i] = llm.GeneratedImage{B64JSON: im}
	}
	return out, nil
}

// decodeSDError reads the WebUI's error bodies: FastAPI's {"detail"}
// (a string or a list of problems) or {"error", "errors"}.
func decodeSDError(status int, _ http.Header, body []byte) *llm.Error {
	var e struct {
		Detail json.RawMessage `json:"detail"`
		Error  string          `json:"error"`
		Errors string          `json:"errors"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		switch {
		case e.Errors != "":
			msg = e.Errors
		case e.Error != "":
			msg = e.Error
		case len(e.Detail) > 0:
			var s string
			if json.Unmarshal(e.Detail, &s) == nil {
				msg = s
			} else {
				msg = string(e.Detail)
			}
		}
	}
	if msg == "" {
		msg = upstreamhttp.StatusText(status)
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	return &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: msg}
}
