package openai

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// AudioField is one form field of a transcription request.
type AudioField struct{ Name, Value string }

// TranscriptionUpload is a transcription request to an OpenAI-format
// upstream (POST {base}/audio/transcriptions, multipart/form-data). The
// audio is streamed as it is read, never held whole.
type TranscriptionUpload struct {
	Model       string // the upstream's model name
	Filename    string
	ContentType string
	Audio       io.Reader
	// Before are the fields sent ahead of the file part; After, called
	// once Audio is at its end, gives those sent after it (the fields a
	// client sent after its file).
	Before []AudioField
	After  func() []AudioField
}

// TranscriptionAnswer is OpenAI's json or verbose_json transcription.
type TranscriptionAnswer struct {
	Text     string                 `json:"text"`
	Task     string                 `json:"task,omitempty"`
	Language string                 `json:"language,omitempty"`
	Duration float64                `json:"duration,omitempty"`
	Segments []TranscriptionSegment `json:"segments,omitempty"`
	Words    []TranscriptionWord    `json:"words,omitempty"`
	Usage    *TranscriptionUsage    `json:"usage,omitempty"`
}

// TranscriptionSegment is one segment of a verbose_json transcription.
type TranscriptionSegment struct {
	ID    int     `json:"id"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	Text  string  `json:"text"`
}

// TranscriptionWord is one word of a verbose_json transcription.
type TranscriptionWord struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// TranscriptionUsage is what OpenAI reports a transcription used: the
// seconds of audio (type "duration", whisper-1) or tokens (type
// "tokens", the gpt-4o transcribe models).
type TranscriptionUsage struct {
	Type         string  `json:"type"`
	Seconds      float64 `json:"seconds"`
	InputTokens  int     `json:"input_tokens"`
	OutputTokens int     `json:"output_tokens"`
}

// errAttemptDone ends the writer of an upload whose answer came.
var errAttemptDone = errors.New("openai: transcription attempt over")

// Transcribe sends up to c's POST {base}/audio/transcriptions and reads
// its JSON answer (the fields ask for json or verbose_json). The form is
// written as the upstream reads it; Transcribe returns only once up.Audio
// is no longer read.
func Transcribe(ctx context.Context, c *Client, up *TranscriptionUpload) (*TranscriptionAnswer, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeTranscriptionForm(mw, up))
	}()
	defer func() {
		pr.CloseWithError(errAttemptDone)
		<-done
	}()
	req, err := upstreamhttp.NewRequest(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/audio/transcriptions", pr, c.Provider)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	adapter.SetKey(req.Header, "Authorization", "Bearer ", c.APIKey)
	adapter.SetHeaders(req.Header, c.Headers)
	raw, err := adapter.Do(c.Conn(), req)
	if err != nil {
		return nil, err
	}
	var out TranscriptionAnswer
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "not a transcription"})
	}
	return &out, nil
}

func writeTranscriptionForm(mw *multipart.Writer, up *TranscriptionUpload) error {
	fields := func(fs []AudioField) error {
		for _, f := range fs {
			if err := mw.WriteField(f.Name, f.Value); err != nil {
				return err
			}
		}
		return nil
	}
	if err := mw.WriteField("model", up.Model); err != nil {
		return err
	}
	if err := fields(up.Before); err != nil {
		return err
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", multipart.FileContentDisposition("file", up.Filename))
	ct := up.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	part, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, up.Audio); err != nil {
		return err
	}
	if up.After != nil {
		if err := fields(up.After()); err != nil {
			return err
		}
	}
	return mw.Close()
}

// Speech sends body (OpenAI's speech request, JSON) to c's POST
// {base}/audio/speech and returns the 2xx answer, whose body is the
// audio for the caller to stream on and close.
func Speech(ctx context.Context, c *Client, body []byte) (*http.Response, error) {
	req, err := c.post(upstreamhttp.LargeAnswer(ctx), "/audio/speech", body)
	if err != nil {
		return nil, err
	}
	return upstreamhttp.Send(c.HTTP, req, c.Provider, DecodeError)
}
