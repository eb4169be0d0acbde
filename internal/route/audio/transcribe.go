package audio

import (
	"context"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// transcribe serves POST /v1/audio/transcriptions. The form is read in
// the client's order: when model comes before the file, the file is sent
// to the first target as it arrives (and teed to disk); when the file
// comes first (as openai-go and curl -F file -F model send it), it is
// read to disk whole first, since the gateway cannot route before it
// knows the model.
func (s *Service) transcribe(w http.ResponseWriter, r *http.Request, run feature.RunOp) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return &llm.Error{Status: http.StatusUnsupportedMediaType, Type: llm.ErrInvalidRequest, Code: "unsupported_media_type",
			Message: "the request body must be multipart/form-data with a file part"}
	}
	// The upload may take longer than the server's read timeout as long
	// as it keeps coming (upload.alive).
	rc := http.NewResponseController(w)
	start := time.Now()
	_ = rc.SetReadDeadline(earlier(start.Add(s.opt.UploadIdle), start.Add(s.opt.MaxUploadTime)))
	mr, err := r.MultipartReader()
	if err != nil {
		return invalid("invalid_upload", "the multipart upload could not be read: %s", describe(err))
	}
	form := newForm()
	var up *upload
	var filename, contentType string
	for up == nil {
		p, err := mr.NextPart()
		if err == io.EOF {
			return invalid("missing_file", `the form has no "file" part`)
		}
		if err != nil {
			return uploadError(err)
		}
		name := p.FormName()
		if len(name) > MaxFieldName {
			return invalid("invalid_field", "a form field's name is longer than %d bytes", MaxFieldName)
		}
		if name != "file" {
			v, err := readField(p)
			if err != nil {
				return err
			}
			if err := form.add(name, v); err != nil {
				return err
			}
			continue
		}
		form.markFile()
		filename, contentType = printable(p.FileName()), printable(p.Header.Get("Content-Type"))
		if up, err = s.newUpload(mr, p, form); err != nil {
			return err
		}
		up.deadline, up.started, up.extended = rc.SetReadDeadline, start, start
		defer up.close()
	}
	size := int64(-1)
	if form.Values().Model == "" {
		// The file came before the model: read it all (and the fields
		// after it) before routing.
		if err := up.finish(); err != nil {
			return err
		}
		size = up.size()
		if size == 0 {
			return invalid("empty_file", `the "file" part is empty`)
		}
		if form.Values().Model == "" {
			return invalid("missing_model", `"model" is required`)
		}
	}
	req := &Transcription{Filename: filename, ContentType: contentType, Form: form, Size: size, MaxWait: s.opt.MaxPoll}
	if req.Filename == "" {
		req.Filename = "audio"
	}
	if len(req.Filename) > maxFilename || len(req.ContentType) > maxFilename {
		return invalid("invalid_file", "the file's name and type may have at most %d bytes each", maxFilename)
	}
	est := size
	if est < 0 {
		est = r.ContentLength
		if est <= 0 || est > s.opt.MaxUpload {
			est = s.opt.MaxUpload
		}
	}
	var res *Transcript
	_, err = run(s.transcriptionOp(form.Values().Model, req, up, estimateSeconds(est), &res))
	if err != nil {
		if cerr := up.clientErr(); cerr != nil {
			return cerr
		}
		return err
	}
	// The fields after the file say how to answer.
	if err := up.finish(); err != nil {
		return err
	}
	return writeTranscript(w, res, form.Values())
}

// printable is s with control characters (a CR LF an RFC 2231 file name
// may decode to) replaced, for a header of the upstream's request.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

// maxFilename bounds the file's name and type, which go upstream.
const maxFilename = 255

// estimateSeconds is the seconds of audio reserved for a file of size
// bytes, before its upstream reports them.
func estimateSeconds(size int64) int64 {
	return max(1, int64(math.Ceil(float64(size)/BytesPerSecond)))
}

// transcriptionOp describes a transcription to the pipeline; the answer
// of the attempt that succeeded is stored in *out.
func (s *Service) transcriptionOp(model string, req *Transcription, up *upload, seconds int64, out **Transcript) *pipeline.Op {
	return &pipeline.Op{
		Modality: llm.ModalityAudio,
		Model:    model,
		Units:    []llm.Quantity{{Unit: llm.UnitSecond, N: seconds}},
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			tr, ok := transcriber(c.Adapter)
			if !ok {
				return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "audio transcriptions"}
			}
			res, err := tr.Transcribe(ctx, t.Model, req, up.reader())
			up.end()
			if err != nil {
				if cerr := up.clientErr(); cerr != nil {
					return pipeline.OpUsage{}, cerr // not the upstream's failure: no fallback
				}
				return pipeline.OpUsage{}, err
			}
			*out = res
			var billed []llm.Quantity
			switch {
			case res.Duration > 0:
				billed = []llm.Quantity{{Unit: llm.UnitSecond, N: int64(math.Ceil(res.Duration))}}
			case res.Usage.InputTokens > 0 || res.Usage.OutputTokens > 0:
				billed = []llm.Quantity{{Unit: llm.UnitSecond, N: 0}} // billed in tokens
			}
			return pipeline.OpUsage{Usage: res.Usage, Billed: billed}, nil
		},
	}
}

// transcriber is the adapter's transcription capability: its own, or
// the OpenAI format's.
func transcriber(a router.Adapter) (Transcriber, bool) {
	switch c := a.(type) {
	case Transcriber:
		return c, true
	case *openai.Client:
		return openaiTranscriber{c}, true
	}
	return nil, false
}

// openaiTranscriber transcribes with an OpenAI-format upstream, asking
// for json (for json and text answers) or verbose_json (for the others,
// which the gateway renders from its segments).
type openaiTranscriber struct{ c *openai.Client }

func openaiFields(fs []field) []openai.AudioField {
	out := make([]openai.AudioField, 0, len(fs))
	for _, f := range fs {
		if f.name == "response_format" {
			switch f.value {
			case "json", "text":
				f.value = "json"
			default:
				f.value = "verbose_json"
			}
		}
		out = append(out, openai.AudioField{Name: f.name, Value: f.value})
	}
	return out
}

func (o openaiTranscriber) Transcribe(ctx context.Context, model string, req *Transcription, audio io.Reader) (*Transcript, error) {
	before, _ := req.Form.split()
	a, err := openai.Transcribe(ctx, o.c, &openai.TranscriptionUpload{Model: model, Filename: req.Filename, ContentType: req.ContentType,
		Audio: audio, Before: openaiFields(before),
		After: func() []openai.AudioField { _, after := req.Form.split(); return openaiFields(after) }})
	if err != nil {
		return nil, err
	}
	out := &Transcript{Text: a.Text, Language: a.Language, Duration: a.Duration}
	if u := a.Usage; u != nil {
		if u.Type == "duration" && out.Duration == 0 {
			out.Duration = u.Seconds
		}
		out.Usage = llm.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens}
	}
	for _, sg := range a.Segments {
		out.Segments = append(out.Segments, Segment{Start: sg.Start, End: sg.End, Text: sg.Text})
	}
	for _, wd := range a.Words {
		out.Words = append(out.Words, Word{Word: wd.Word, Start: wd.Start, End: wd.End})
	}
	return out, nil
}
