package audio

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// speechRequest is OpenAI's speech request, as the client sends it and
// as it goes upstream (with the upstream's model name).
type speechRequest struct {
	Model          string          `json:"model"`
	Input          *string         `json:"input,omitempty"`
	Voice          json.RawMessage `json:"voice,omitempty"`
	ResponseFormat string          `json:"response_format,omitempty"`
	Speed          *float64        `json:"speed,omitempty"`
	Instructions   string          `json:"instructions,omitempty"`
	StreamFormat   string          `json:"stream_format,omitempty"`
}

var speechFormats = map[string]bool{"mp3": true, "opus": true, "aac": true, "flac": true, "wav": true, "pcm": true}

// maxVoice bounds the voice (a name, or an object naming a custom voice).
const maxVoice = 256

// decodeSpeech validates a client's speech request against the caps.
func decodeSpeech(body []byte, contentType string) (*speechRequest, int, error) {
	var in speechRequest
	if err := httpx.DecodeJSONBytes(body, &in, contentType); err != nil {
		return nil, 0, err
	}
	if in.Model == "" {
		return nil, 0, invalid("missing_model", `"model" is required`)
	}
	if in.Input == nil || *in.Input == "" {
		return nil, 0, invalid("missing_input", `"input" is required and may not be empty`)
	}
	n := utf8.RuneCountInString(*in.Input)
	if n > MaxSpeechChars || !utf8.ValidString(*in.Input) {
		return nil, 0, invalid("input_too_long", `"input" must be UTF-8 text of at most %d characters`, MaxSpeechChars)
	}
	if len(in.Voice) == 0 || string(in.Voice) == "null" {
		return nil, 0, invalid("missing_voice", `"voice" is required`)
	}
	if len(in.Voice) > maxVoice {
		return nil, 0, invalid("invalid_voice", `"voice" is longer than %d bytes`, maxVoice)
	}
	if in.ResponseFormat != "" && !speechFormats[in.ResponseFormat] {
		return nil, 0, invalid("invalid_response_format", "response_format must be one of mp3, opus, aac, flac, wav, pcm")
	}
	if in.Speed != nil && (*in.Speed < 0.25 || *in.Speed > 4) {
		return nil, 0, invalid("invalid_speed", "speed must be from 0.25 to 4.0")
	}
	if utf8.RuneCountInString(in.Instructions) > MaxSpeechChars {
		return nil, 0, invalid("instructions_too_long", `"instructions" may have at most %d characters`, MaxSpeechChars)
	}
	if in.StreamFormat != "" && in.StreamFormat != "audio" && in.StreamFormat != "sse" {
		return nil, 0, invalid("invalid_stream_format", `stream_format must be "audio" or "sse"`)
	}
	return &in, n, nil
}

// speechChunk is the most read from the upstream before it is written on.
const speechChunk = 32 << 10

// speech serves POST /v1/audio/speech: the audio is streamed through as
// the upstream sends it. A target is tried until one has sent the first
// bytes of its answer; from then on the answer is the client's, and an
// upstream that breaks off cuts the client's connection.
func (s *Service) speech(w http.ResponseWriter, r *http.Request, body []byte, run feature.RunOp) error {
	in, chars, err := decodeSpeech(body, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	st := &speechState{w: w}
	_, err = run(&pipeline.Op{
		Modality: llm.ModalityAudio,
		Model:    in.Model,
		Units:    []llm.Quantity{{Unit: llm.UnitCharacter, N: int64(chars)}},
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			return pipeline.OpUsage{}, st.attempt(ctx, c, t, in)
		},
	})
	if err != nil && st.committed {
		// The answer began: the client is told by a cut connection.
		panic(http.ErrAbortHandler)
	}
	return err
}

// speechState is one speech request's answer across its attempts.
type speechState struct {
	w         http.ResponseWriter
	committed bool // the answer's status and first bytes were written
}

func (st *speechState) attempt(ctx context.Context, c router.Connection, t router.Target, in *speechRequest) error {
	if st.committed {
		// An earlier target's answer began: it is the client's, cut.
		return &router.UnsupportedError{Provider: t.Provider, What: "audio speech once another target's answer began"}
	}
	oc, ok := c.Adapter.(*openai.Client)
	if !ok {
		return &router.UnsupportedError{Provider: t.Provider, What: "audio speech"}
	}
	up := *in
	up.Model = t.Model
	body, err := json.Marshal(up)
	if err != nil {
		return err
	}
	resp, err := openai.Speech(ctx, oc, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf := make([]byte, speechChunk)
	n, err := readSome(resp.Body, buf)
	if err != nil && err != io.EOF {
		return upstreamhttp.Unreadable(t.Provider, &llm.Error{Message: upstreamhttp.DescribeRead(err)})
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "audio/mpeg"
	}
	h := st.w.Header()
	h.Set("Content-Type", ct)
	h.Set("X-OmniRoute-Model", t.String())
	st.w.WriteHeader(http.StatusOK)
	st.committed = true
	rc := http.NewResponseController(st.w)
	for {
		if n > 0 {
			if _, werr := st.w.Write(buf[:n]); werr != nil {
				return werr // the client left
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return upstreamhttp.StreamFailed(t.Provider, &llm.Error{Message: upstreamhttp.DescribeRead(err)})
		}
		n, err = readSome(resp.Body, buf)
	}
}

// readSome reads at least one byte into buf, or fails.
func readSome(r io.Reader, buf []byte) (int, error) {
	for range 100 {
		n, err := r.Read(buf)
		if n > 0 || err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return n, io.EOF
			}
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}
