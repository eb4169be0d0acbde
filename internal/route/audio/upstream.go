package audio

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// The transcription provider types and their default base URLs.
const (
	TypeDeepgram   = "deepgram"   // POST {base}/v1/listen, base https://api.deepgram.com
	TypeAssemblyAI = "assemblyai" // POST {base}/v2/upload, {base}/v2/transcript, base https://api.assemblyai.com
)

var defaultBase = map[string]string{
	TypeDeepgram:   "https://api.deepgram.com",
	TypeAssemblyAI: "https://api.assemblyai.com",
}

// Upstreams is the transcription provider types as a gateway module (it
// needs nothing built, so it comes with the formats at the top of the
// list).
func Upstreams() feature.Module {
	return feature.Module{Name: "audio-upstreams", Package: "route/audio", Providers: Register}
}

// Register adds the deepgram and assemblyai provider types.
func Register(reg *provider.Registry) {
	for _, typ := range []string{TypeDeepgram, TypeAssemblyAI} {
		reg.Register(typ, func(cfg provider.Config) (router.Adapter, error) { return NewClient(typ, cfg), nil })
	}
}

// NewClient returns the client of one connection of a transcription
// provider type.
func NewClient(typ string, cfg provider.Config) *Client {
	return &Client{adapter.NewSingle(typ, cfg, defaultBase[typ], "audio transcriptions only: POST /v1/audio/transcriptions")}
}

// Client calls a transcription upstream: Deepgram or AssemblyAI (Type).
// It is a router.Adapter that transcribes only: chat requests routed to
// it are a 400.
type Client struct {
	adapter.Single
}

// ModelKind implements provider.Kinded: every model of a transcription
// upstream is an audio model ("best", "universal" …).
func (c *Client) ModelKind() string { return provider.KindAudio }

// Transcribe implements Transcriber.
func (c *Client) Transcribe(ctx context.Context, model string, req *Transcription, audio io.Reader) (*Transcript, error) {
	if c.Type == TypeAssemblyAI {
		return c.assembly(ctx, model, req, audio)
	}
	return c.deepgram(ctx, model, req, audio)
}

// request builds a request with the connection's headers and key.
func (c *Client) request(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Request, error) {
	req, err := upstreamhttp.NewRequest(ctx, method, c.BaseURL+path, body, c.Provider)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	adapter.SetHeaders(req.Header, c.Headers)
	if c.Type == TypeAssemblyAI {
		adapter.SetKey(req.Header, "Authorization", "", c.APIKey)
	} else {
		adapter.SetKey(req.Header, "Authorization", "Token ", c.APIKey)
	}
	return req, nil
}

// sized gives an upload of the audio its length when it is known (the
// file was read whole before the call); else it goes chunked.
func sized(hr *http.Request, req *Transcription) {
	if req.Size > 0 {
		hr.ContentLength = req.Size
	}
}

func (c *Client) do(req *http.Request, out any) error {
	raw, err := adapter.Do(adapter.Conn{HTTP: c.HTTP, Provider: c.Provider, DecodeError: decodeError}, req)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return c.unreadable("not the JSON answer expected")
	}
	return nil
}

func (c *Client) unreadable(what string) error {
	return upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: what})
}

// deepgramAnswer is Deepgram's pre-recorded answer.
type deepgramAnswer struct {
	Metadata struct {
		RequestID string  `json:"request_id"`
		Duration  float64 `json:"duration"`
	} `json:"metadata"`
	Results struct {
		Channels []struct {
			DetectedLanguage string `json:"detected_language"`
			Alternatives     []struct {
				Transcript string `json:"transcript"`
				Words      []struct {
					Word           string  `json:"word"`
					PunctuatedWord string  `json:"punctuated_word"`
					Start          float64 `json:"start"`
					End            float64 `json:"end"`
				} `json:"words"`
			} `json:"alternatives"`
		} `json:"channels"`
	} `json:"results"`
}

// deepgram sends the audio as the body of POST /v1/listen. The language
// is the one the form gave before the file; without one Deepgram detects it.
func (c *Client) deepgram(ctx context.Context, model string, req *Transcription, audio io.Reader) (*Transcript, error) {
	q := url.Values{"model": {model}, "smart_format": {"true"}}
	if lang := req.Form.Values().Language; lang != "" {
		q.Set("language", lang)
	} else {
		q.Set("detect_language", "true")
	}
	ct := req.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	hr, err := c.request(ctx, http.MethodPost, "/v1/listen?"+q.Encode(), audio, ct)
	if err != nil {
		return nil, err
	}
	sized(hr, req)
	var a deepgramAnswer
	if err := c.do(hr, &a); err != nil {
		return nil, err
	}
	if len(a.Results.Channels) == 0 || len(a.Results.Channels[0].Alternatives) == 0 {
		return nil, c.unreadable("a transcription without channels or alternatives")
	}
	ch := a.Results.Channels[0]
	alt := ch.Alternatives[0]
	out := &Transcript{Text: alt.Transcript, Language: ch.DetectedLanguage, Duration: a.Metadata.Duration}
	for _, w := range alt.Words {
		word := w.PunctuatedWord
		if word == "" {
			word = w.Word
		}
		out.Words = append(out.Words, Word{Word: word, Start: w.Start, End: w.End})
	}
	return out, nil
}

// assemblyTranscript is AssemblyAI's transcript resource.
type assemblyTranscript struct {
	ID            string   `json:"id"`
	Status        string   `json:"status"` // queued, processing, completed, error
	Text          string   `json:"text"`
	Error         string   `json:"error"`
	LanguageCode  string   `json:"language_code"`
	AudioDuration *float64 `json:"audio_duration"`
	Words         []struct {
		Text  string `json:"text"`
		Start int64  `json:"start"` // milliseconds
		End   int64  `json:"end"`
	} `json:"words"`
}

// The polling of an AssemblyAI transcript: the first wait, doubled up to
// the longest.
const (
	pollFirst = 100 * time.Millisecond
	pollMax   = 3 * time.Second
)

// assembly uploads the audio (POST /v2/upload), asks for its transcript
// (POST /v2/transcript) and polls it (GET /v2/transcript/{id}) until it
// is completed or failed, for at most req.MaxWait.
func (c *Client) assembly(ctx context.Context, model string, req *Transcription, audio io.Reader) (*Transcript, error) {
	hr, err := c.request(ctx, http.MethodPost, "/v2/upload", audio, "application/octet-stream")
	if err != nil {
		return nil, err
	}
	sized(hr, req)
	var up struct {
		UploadURL string `json:"upload_url"`
	}
	if err := c.do(hr, &up); err != nil {
		return nil, err
	}
	if up.UploadURL == "" {
		return nil, c.unreadable("an upload without upload_url")
	}
	f := req.Form.Values()
	body := map[string]any{"audio_url": up.UploadURL, "speech_model": model}
	if f.Language != "" {
		body["language_code"] = f.Language
	} else {
		body["language_detection"] = true
	}
	b, _ := json.Marshal(body)
	if hr, err = c.request(ctx, http.MethodPost, "/v2/transcript", bytes.NewReader(b), "application/json"); err != nil {
		return nil, err
	}
	var tr assemblyTranscript
	if err := c.do(hr, &tr); err != nil {
		return nil, err
	}
	if tr.ID == "" || strings.ContainsAny(tr.ID, "/?#") {
		return nil, c.unreadable("a transcript without a usable id")
	}
	wait := req.MaxWait
	if wait <= 0 {
		wait = MaxPoll
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	every := pollFirst
	for tr.Status != "completed" {
		if tr.Status == "error" {
			msg := tr.Error
			if len(msg) > 1000 {
				msg = msg[:1000]
			}
			return nil, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: c.Provider,
				Message: c.Provider + ": transcription failed: " + msg}
		}
		t := time.NewTimer(every)
		select {
		case <-pctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &llm.Error{Status: http.StatusGatewayTimeout, Type: llm.ErrTimeout, Provider: c.Provider,
				Message: c.Provider + ": the transcript was not completed within " + wait.String()}
		case <-t.C:
		}
		every = min(every*2, pollMax)
		if hr, err = c.request(pctx, http.MethodGet, "/v2/transcript/"+url.PathEscape(tr.ID), nil, ""); err != nil {
			return nil, err
		}
		var next assemblyTranscript
		if err := c.do(hr, &next); err != nil {
			if pctx.Err() != nil && ctx.Err() == nil {
				continue // the deadline: said above
			}
			return nil, err
		}
		next.ID = tr.ID
		tr = next
	}
	out := &Transcript{Text: tr.Text, Language: tr.LanguageCode}
	if tr.AudioDuration != nil {
		out.Duration = *tr.AudioDuration
	}
	for _, w := range tr.Words {
		out.Words = append(out.Words, Word{Word: w.Text, Start: float64(w.Start) / 1000, End: float64(w.End) / 1000})
	}
	return out, nil
}

// decodeError reads the error bodies of the two upstreams: Deepgram's
// {"err_code","err_msg"}, AssemblyAI's {"error"}, and OpenAI-style
// {"error":{"message"}}.
func decodeError(status int, _ http.Header, body []byte) *llm.Error {
	var e struct {
		ErrMsg string          `json:"err_msg"`
		Error  json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		switch {
		case e.ErrMsg != "":
			msg = e.ErrMsg
		case len(e.Error) > 0:
			var s string
			var o struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(e.Error, &s) == nil {
				msg = s
			} else if json.Unmarshal(e.Error, &o) == nil {
				msg = o.Message
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
