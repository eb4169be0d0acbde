// Package images is the gateway's image modality: POST
// /v1/images/generations (JSON) and POST /v1/images/edits (multipart)
// in OpenAI's Images shape, GET /v1/images/generations (the image
// models), and POST /v1/providers/{provider}/images/generations, run
// through the pipeline's operation path (pipeline.Engine.Do: key
// policy, limits, budgets priced per image, usage records counting
// images, fallback across an alias's or combo's targets) to an upstream
// that generates or edits images: an OpenAI-format one (formats/openai's
// Client) or AUTOMATIC1111's SD WebUI, the provider type sdwebui this
// package brings. Requests are capped (prompt, n, size, image parts and
// their number, edits buffered at once) before anything is routed.
package images

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// The caps of an image request that are not Limits: a key holder cannot
// make the gateway hold, send or pay for more.
const (
	// MaxN is the most images one request asks for (OpenAI's cap).
	MaxN = 10
	// MaxGenerationBody bounds the JSON body of a generation.
	MaxGenerationBody = 1 << 20
	// MaxSide bounds each side of a size in pixels.
	MaxSide = 8192
	// MaxExtra is the most fields beyond the known ones a request may
	// carry to an OpenAI-format upstream, MaxExtraName the length of
	// each one's name and MaxExtraValue that of its value.
	MaxExtra      = 16
	MaxExtraName  = 64
	MaxExtraValue = 4 << 10
)

// Limits are the caps of image requests that the operator may tune;
// the zero value of a field is its default.
type Limits struct {
	// MaxPromptChars bounds the prompt, in characters (default 32,000,
	// gpt-image's cap).
	MaxPromptChars int
	// MaxImageBytes bounds each image or mask part of an edit (default
	// 50 MiB, OpenAI's cap).
	MaxImageBytes int64
	// MaxEditBody bounds an edit's whole multipart body (default 64 MiB).
	MaxEditBody int64
	// MaxImages is the most images one edit sends (default 16).
	MaxImages int
	// MaxParts is the most parts an edit's body has (default 48).
	MaxParts int
	// MaxFieldBytes bounds each text part of an edit (default 160 KiB:
	// a prompt of MaxPromptChars characters of 4 bytes, and more).
	MaxFieldBytes int64
	// MaxEdits is the most edits whose images are held at once (default
	// 4): with MaxEditBody, it bounds the memory edits take. One more
	// is a 503 with Retry-After.
	MaxEdits int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxPromptChars, 32000)
	def64(&l.MaxImageBytes, 50<<20)
	def64(&l.MaxEditBody, 64<<20)
	def(&l.MaxImages, 16)
	def(&l.MaxParts, 48)
	def64(&l.MaxFieldBytes, 160<<10)
	def(&l.MaxEdits, 4)
	return l
}

// Generator is the capability of a provider adapter that makes images
// from a prompt (formats/openai's Client, this package's SDWebUI).
type Generator interface {
	GenerateImages(ctx context.Context, model string, req *llm.ImageRequest) (*llm.ImageResponse, error)
}

// Editor is the capability of a provider adapter that edits images.
type Editor interface {
	EditImages(ctx context.Context, model string, req *llm.ImageRequest) (*llm.ImageResponse, error)
}

// Catalog is what the service asks of the router: whether a provider is
// configured (its connections).
type Catalog interface {
	Connections(provider string) []router.Connection
}

// Model is one listed image model.
type Model struct {
	ID      string
	OwnedBy string
}

// Deps are what the service is built over.
type Deps struct {
	Ops     feature.Operations // the gateway transport
	Catalog Catalog
	// Models lists the image models (GET /v1/images/generations); it is
	// asked on every listing.
	Models func() []Model
	Clock  clock.Clock
	Limits Limits
}

// Service serves the image endpoints over the gateway's operations.
type Service struct {
	d     Deps
	lim   Limits
	edits chan struct{} // a slot per edit holding its images
}

// New returns the image endpoints.
func New(d Deps) *Service {
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	lim := d.Limits.withDefaults()
	return &Service{d: d, lim: lim, edits: make(chan struct{}, lim.MaxEdits)}
}

// Module is the image endpoints as a gateway feature; the sdwebui
// provider type comes with Upstreams.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "images",
		Package: "route/images",
		Routes:  s.Register,
	}
}

// Register adds the image routes to mux; each takes a gateway key.
func (s *Service) Register(mux feature.Mux) {
	mux.Handle("POST /v1/images/generations", s.d.Ops.JSON(MaxGenerationBody, s.generate))
	mux.Handle("GET /v1/images/generations", s.d.Ops.Body(1, s.list))
	mux.Handle("POST /v1/providers/{provider}/images/generations", s.d.Ops.JSON(MaxGenerationBody, s.generate))
	mux.Handle("POST /v1/images/edits", s.d.Ops.Body(s.lim.MaxEditBody, s.edit))
}

func invalid(code, format string, a ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}

// known are the fields the gateway reads itself; every other field goes
// to an OpenAI-format upstream as it came (Extra).
var known = map[string]bool{"model": true, "prompt": true, "n": true, "size": true, "quality": true, "style": true,
	"response_format": true, "user": true, "image": true, "image[]": true, "mask": true}

// refused are fields whose answers the gateway cannot relay: a stream of
// partial images.
var refused = map[string]bool{"stream": true, "partial_images": true}

var (
	sizeRE  = regexp.MustCompile(`^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$`)
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
)

// fields is a request's fields before validation, from JSON or a form.
type fields struct {
	model, prompt, size, quality, style, format, user string
	n                                                 *int
	extra                                             map[string][]byte
}

// validate checks f against the caps and returns the routed model and
// the canonical request.
func (s *Service) validate(f fields) (string, *llm.ImageRequest, error) {
	if f.model == "" {
		return "", nil, invalid("missing_model", `"model" is required (provider/model, an alias or a combo)`)
	}
	if len(f.model) > 256 {
		return "", nil, invalid("invalid_model", `"model" is longer than 256 bytes`)
	}
	if f.prompt == "" {
		return "", nil, invalid("missing_prompt", `"prompt" is required and may not be empty`)
	}
	if !utf8.ValidString(f.prompt) || utf8.RuneCountInString(f.prompt) > s.lim.MaxPromptChars {
		return "", nil, invalid("prompt_too_long", `"prompt" must be UTF-8 text of at most %d characters`, s.lim.MaxPromptChars)
	}
	req := &llm.ImageRequest{Prompt: f.prompt, Size: f.size, Quality: f.quality, Style: f.style, ResponseFormat: f.format, User: f.user, Extra: f.extra}
	if f.n != nil {
		if *f.n < 1 || *f.n > MaxN {
			return "", nil, invalid("invalid_n", `"n" must be 1 to %d`, MaxN)
		}
		req.N = *f.n
	}
	if f.size != "" && f.size != "auto" {
		if _, _, ok := parseSize(f.size); !ok {
			return "", nil, invalid("invalid_size", `"size" must be "auto" or WIDTHxHEIGHT with sides of 1 to %d pixels`, MaxSide)
		}
	}
	for name, v := range map[string]string{"quality": f.quality, "style": f.style} {
		if v != "" && !tokenRE.MatchString(v) {
			return "", nil, invalid("invalid_"+name, `%q must be a word of at most 32 letters, digits, "_", "." or "-"`, name)
		}
	}
	if f.format != "" && f.format != "b64_json" && f.format != "url" {
		return "", nil, invalid("invalid_response_format", `"response_format" must be "b64_json" or "url"`)
	}
	if len(f.user) > 256 {
		return "", nil, invalid("invalid_user", `"user" is longer than 256 bytes`)
	}
	return f.model, req, nil
}

// parseSize reads WIDTHxHEIGHT.
func parseSize(s string) (w, h int, ok bool) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	w, _ = strconv.Atoi(m[1])
	h, _ = strconv.Atoi(m[2])
	return w, h, w <= MaxSide && h <= MaxSide
}

// addExtra keeps a field the gateway does not read, within the caps.
func addExtra(f *fields, name string, value []byte) error {
	if refused[name] {
		return invalid("unsupported_parameter", `%q is not supported by the gateway: it answers whole images only`, name)
	}
	if f.extra == nil {
		f.extra = map[string][]byte{}
	}
	if len(f.extra) >= MaxExtra || len(name) > MaxExtraName || len(value) > MaxExtraValue {
		return invalid("too_many_parameters", "at most %d further parameters of names up to %d bytes and values up to %d bytes are passed on", MaxExtra, MaxExtraName, MaxExtraValue)
	}
	f.extra[name] = value
	return nil
}

// decodeJSON reads a generation's JSON body.
func (s *Service) decodeJSON(body []byte, contentType string) (string, *llm.ImageRequest, error) {
	var raw map[string]json.RawMessage
	if err := httpx.DecodeJSONBytes(body, &raw, contentType); err != nil {
		return "", nil, err
	}
	if raw == nil {
		return "", nil, invalid("invalid_body", "the body must be a JSON object")
	}
	var f fields
	for k, v := range raw {
		var err error
		switch k {
		case "model":
			err = json.Unmarshal(v, &f.model)
		case "prompt":
			err = json.Unmarshal(v, &f.prompt)
		case "size":
			err = json.Unmarshal(v, &f.size)
		case "quality":
			err = json.Unmarshal(v, &f.quality)
		case "style":
			err = json.Unmarshal(v, &f.style)
		case "response_format":
			err = json.Unmarshal(v, &f.format)
		case "user":
			err = json.Unmarshal(v, &f.user)
		case "n":
			if string(v) != "null" {
				var n int
				if err = json.Unmarshal(v, &n); err == nil {
					f.n = &n
				}
			}
		default:
			if known[k] {
				return "", nil, invalid("invalid_parameter", "%q is a part of an edit (POST /v1/images/edits)", k)
			}
			if string(v) == "null" {
				continue
			}
			if err := addExtra(&f, k, v); err != nil {
				return "", nil, err
			}
		}
		if err != nil {
			return "", nil, invalid("invalid_"+k, "%q has the wrong type", k)
		}
	}
	return s.validate(f)
}

// Op describes an image request of model to the pipeline (an edit when
// req has images); the answer of the attempt that succeeded is stored
// in *out, at most the images asked for.
func Op(model string, req *llm.ImageRequest, out **llm.ImageResponse) *pipeline.Op {
	n := max(req.N, 1)
	return &pipeline.Op{
		Modality:    llm.ModalityImage,
		Model:       model,
		Units:       []llm.Quantity{{Unit: llm.UnitImage, N: int64(n)}},
		InputTokens: llm.EstimateTokens(req.Prompt),
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			var res *llm.ImageResponse
			var err error
			if len(req.Images) > 0 {
				e, ok := c.Adapter.(Editor)
				if !ok {
					return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "image edits"}
				}
				res, err = e.EditImages(ctx, t.Model, req)
			} else {
				g, ok := c.Adapter.(Generator)
				if !ok {
					return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "image generation"}
				}
				res, err = g.GenerateImages(ctx, t.Model, req)
			}
			if err != nil {
				return pipeline.OpUsage{}, err
			}
			if len(res.Images) == 0 {
				return pipeline.OpUsage{}, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: t.Provider,
					Message: t.Provider + ": upstream answer unreadable: no images"}
			}
			if len(res.Images) > n {
				res.Images = res.Images[:n] // no more than asked for, and paid for
			}
			*out = res
			return pipeline.OpUsage{Usage: res.Tokens, Billed: []llm.Quantity{{Unit: llm.UnitImage, N: int64(len(res.Images))}}}, nil
		},
	}
}

// image is one image of the answer in OpenAI's shape.
type image struct {
	B64JSON       string `json:"b64_json,omitempty"`
	URL           string `json:"url,omitempty"`
	RevisedPrompt string `json:"revised_prompt,omitempty"`
}

// encode writes res in OpenAI's ImagesResponse shape: base64 as a data:
// URL when the client asked for url and the upstream gave base64.
func (s *Service) encode(w http.ResponseWriter, req *llm.ImageRequest, res *llm.ImageResponse) {
	out := map[string]any{}
	for k, v := range res.Meta {
		out[k] = json.RawMessage(v)
	}
	created := res.Created
	if created == 0 {
		created = s.d.Clock.Now().Unix()
	}
	out["created"] = created
	data := make([]image, len(res.Images))
	for i, im := range res.Images {
		data[i] = image{B64JSON: im.B64JSON, URL: im.URL, RevisedPrompt: im.RevisedPrompt}
		if req.ResponseFormat == "url" && im.URL == "" {
			data[i] = image{URL: DataURL(im.B64JSON), RevisedPrompt: im.RevisedPrompt}
		}
	}
	out["data"] = data
	if len(res.Usage) > 0 {
		out["usage"] = json.RawMessage(res.Usage)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// DataURL is base64 image data as a data: URL (RFC 2397), its media
// type read from the image's first bytes.
func DataURL(b64 string) string {
	head := b64[:min(len(b64), 64)]
	head = head[:len(head)/4*4]
	raw, _ := base64.StdEncoding.DecodeString(head)
	mt := http.DetectContentType(raw)
	if !strings.HasPrefix(mt, "image/") {
		mt = "image/png"
	}
	return "data:" + mt + ";base64," + b64
}

func (s *Service) generate(w http.ResponseWriter, r *http.Request, body []byte, run feature.RunOp) error {
	model, req, err := s.decodeJSON(body, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	if p := r.PathValue("provider"); p != "" {
		if model, err = s.pin(p, model); err != nil {
			return err
		}
	}
	var res *llm.ImageResponse
	if _, err := run(Op(model, req, &res)); err != nil {
		return err
	}
	s.encode(w, req, res)
	return nil
}

// pin names model at provider (POST /v1/providers/{provider}/…): the
// prefix is added when missing; a model of another configured provider
// is a 400, an unknown provider a 404.
func (s *Service) pin(provider, model string) (string, error) {
	if len(s.d.Catalog.Connections(provider)) == 0 {
		return "", &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Code: "provider_not_found", Message: "provider " + provider + " is not configured"}
	}
	if p, _, ok := router.SplitModel(model); ok {
		if p == provider {
			return model, nil
		}
		if len(s.d.Catalog.Connections(p)) > 0 {
			return "", invalid("model_provider_mismatch", "model %s belongs to provider %s, not %s", model, p, provider)
		}
	}
	return provider + "/" + model, nil
}

// list answers GET /v1/images/generations: the image models in OpenAI's
// list shape.
func (s *Service) list(w http.ResponseWriter, _ *http.Request, _ feature.RunOp) error {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
		Type    string `json:"type"`
	}
	var ms []Model
	if s.d.Models != nil {
		ms = s.d.Models()
	}
	slices.SortFunc(ms, func(a, b Model) int { return strings.Compare(a.ID, b.ID) })
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: make([]model, 0, len(ms))}
	for _, m := range ms {
		out.Data = append(out.Data, model{ID: m.ID, Object: "model", OwnedBy: m.OwnedBy, Type: "image"})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
