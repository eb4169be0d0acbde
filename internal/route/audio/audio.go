// Package audio is the gateway's audio modality: POST
// /v1/audio/transcriptions (a multipart upload streamed to the upstream
// as it arrives, teed to a bounded temporary file so that the next
// target of an alias or combo can be sent it again, and answered in
// json, verbose_json, text, srt or vtt) and POST /v1/audio/speech (the
// upstream's audio streamed through as it arrives), both run through the
// pipeline's operation path (pipeline.Engine.Do: key policy, limits,
// budgets priced per second of audio or per character, usage records
// with modality audio, fallback before the first byte). Its upstreams
// are OpenAI-format providers (formats/openai) and the provider types it
// brings: Deepgram (/v1/listen) and AssemblyAI (upload, then poll).
package audio

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
)

// The caps of the audio endpoints, checked as the request is read: a key
// holder cannot make the gateway hold, store, send or pay for more.
const (
	// MaxUpload bounds the audio file of one transcription. The gateway
	// streams it, so it allows more than OpenAI's 25 MB (Deepgram and
	// AssemblyAI take far more); an upstream with a smaller limit says so.
	MaxUpload = 512 << 20
	// MaxSpool bounds the temporary disk all transcriptions in flight
	// use together; past it an upload is refused with a 503.
	MaxSpool = 4 << 30
	// MaxFields bounds the form fields of a transcription besides the
	// file; MaxFieldBytes each one's value (a prompt), MaxFieldName its name.
	MaxFields     = 32
	MaxFieldBytes = 16 << 10
	MaxFieldName  = 64
	// MaxGranularities bounds timestamp_granularities[] values.
	MaxGranularities = 2
	// MaxSpeechChars bounds the text of a speech request (OpenAI's).
	MaxSpeechChars = 4096
	// MaxSpeechBody bounds the speech request's JSON body.
	MaxSpeechBody = 64 << 10
	// MaxPoll bounds the wait for an AssemblyAI transcript.
	MaxPoll = 30 * time.Minute
	// UploadIdle is how long an upload may send nothing; the server's
	// read timeout (60 s for the whole request) is pushed back by it as
	// the file arrives, up to MaxUploadTime, so that large files on slow
	// links get through and a stalled client does not hold on.
	UploadIdle    = 60 * time.Second
	MaxUploadTime = time.Hour
	// BytesPerSecond is the bitrate (32 kbit/s) from which a
	// transcription's seconds are estimated for the budget reservation
	// before its upstream reports the duration: a low one, so that the
	// reservation covers most compressed speech.
	BytesPerSecond = 4000
)

// Transcript is a transcription in the gateway's model.
type Transcript struct {
	Text     string
	Language string
	Duration float64 // seconds of audio; 0 when the upstream said none
	Segments []Segment
	Words    []Word
	Usage    llm.Usage // tokens, when the upstream bills them
}

// Segment is a timed span of a transcript.
type Segment struct {
	Start, End float64
	Text       string
}

// Word is a timed word of a transcript.
type Word struct {
	Word       string
	Start, End float64
}

// Transcription is a transcription request in the gateway's model.
type Transcription struct {
	Filename    string
	ContentType string
	// Form is the form's fields; its Values are those known at the time
	// (the fields after the file are known once the audio is read to
	// its end).
	Form *Form
	// Size is the file's size when it was read whole before the call
	// (the model came after it), else -1.
	Size int64
	// MaxWait bounds the wait for an upstream that transcribes as a job
	// (AssemblyAI's polling).
	MaxWait time.Duration
}

// Transcriber is the capability of a provider adapter that transcribes
// (Deepgram's and AssemblyAI's clients here; formats/openai's Client is
// adapted to it). audio is read once, to its end or until the call fails.
type Transcriber interface {
	Transcribe(ctx context.Context, model string, req *Transcription, audio io.Reader) (*Transcript, error)
}

// Options configure the audio endpoints; zero fields take the defaults.
type Options struct {
	TempDir   string // where uploads are spooled, the gateway's own (default: the system's)
	MaxUpload int64
	MaxSpool  int64
	MaxPoll   time.Duration
	// UploadIdle and MaxUploadTime bound a transcription's upload in time.
	UploadIdle    time.Duration
	MaxUploadTime time.Duration
}

// Service serves the audio endpoints over the gateway's operations.
type Service struct {
	ops   feature.Operations
	opt   Options
	spool atomic.Int64 // bytes spooled by the transcriptions in flight
	// ownDir: TempDir is the gateway's own (swept at start), not the
	// system's, which other processes share.
	ownDir bool
}

// New returns the audio endpoints over ops (the gateway transport).
func New(ops feature.Operations, opt Options) *Service {
	own := opt.TempDir != ""
	if !own {
		opt.TempDir = os.TempDir()
	}
	if opt.MaxUpload <= 0 {
		opt.MaxUpload = MaxUpload
	}
	if opt.MaxSpool <= 0 {
		opt.MaxSpool = MaxSpool
	}
	if opt.MaxPoll <= 0 {
		opt.MaxPoll = MaxPoll
	}
	if opt.UploadIdle <= 0 {
		opt.UploadIdle = UploadIdle
	}
	if opt.MaxUploadTime <= 0 {
		opt.MaxUploadTime = MaxUploadTime
	}
	return &Service{ops: ops, opt: opt, ownDir: own}
}

// TempDir is the directory of the spooled uploads under a data directory.
func TempDir(dataDir string) string { return filepath.Join(dataDir, "tmp", "audio") }

// Module is the audio endpoints as a gateway feature; their provider
// types come with Upstreams.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "audio",
		Package: "route/audio",
		Routes:  s.Register,
		// Uploads left by a gateway that stopped mid-request are removed.
		Init:     func(context.Context) error { s.sweep(); return nil },
		Settings: feature.Settings{Config: []string{"data"}},
	}
}

// sweep removes the spooled uploads a stopped gateway left behind.
func (s *Service) sweep() {
	if !s.ownDir {
		return
	}
	old, _ := filepath.Glob(filepath.Join(s.opt.TempDir, "upload-*.part"))
	for _, name := range old {
		os.Remove(name)
	}
}

// Register adds the audio routes to mux; they take a gateway key.
func (s *Service) Register(mux feature.Mux) {
	// The form's fields and boundaries come on top of the file.
	mux.Handle("POST /v1/audio/transcriptions", s.ops.Body(s.opt.MaxUpload+MaxFields*(MaxFieldBytes+1024)+64<<10, s.transcribe))
	mux.Handle("POST /v1/audio/speech", s.ops.JSON(MaxSpeechBody, s.speech))
}

func invalid(code, format string, a ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}
