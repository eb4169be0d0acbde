package audio

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// transcriptJSON is the json answer: the spec's shape.
type transcriptJSON struct {
	Text     string  `json:"text"`
	Task     string  `json:"task"`
	Language string  `json:"language,omitempty"`
	Duration float64 `json:"duration"`
}

// verboseJSON is the verbose_json answer: the json shape with the
// segments, and the words when asked for.
type verboseJSON struct {
	transcriptJSON
	Segments []segmentJSON `json:"segments"`
	Words    []wordJSON    `json:"words,omitempty"`
}

type segmentJSON struct {
	ID    int     `json:"id"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	Text  string  `json:"text"`
}

type wordJSON struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// writeTranscript answers t in the response format f asks for.
func writeTranscript(w http.ResponseWriter, t *Transcript, f Fields) error {
	lang := t.Language
	if lang == "" {
		lang = f.Language
	}
	base := transcriptJSON{Text: t.Text, Task: "transcribe", Language: lang, Duration: t.Duration}
	text := func(ct, body string) error {
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		_, err := io.WriteString(w, body)
		return err
	}
	switch f.ResponseFormat {
	case "text":
		return text("text/plain; charset=utf-8", t.Text+"\n")
	case "srt":
		return text("text/plain; charset=utf-8", srt(segments(t)))
	case "vtt":
		return text("text/vtt; charset=utf-8", vtt(segments(t)))
	case "verbose_json":
		v := verboseJSON{transcriptJSON: base, Segments: []segmentJSON{}}
		for i, s := range segments(t) {
			v.Segments = append(v.Segments, segmentJSON{ID: i, Start: s.Start, End: s.End, Text: s.Text})
		}
		if slices.Contains(f.Granularities, "word") {
			for _, wd := range t.Words {
				v.Words = append(v.Words, wordJSON{Word: wd.Word, Start: wd.Start, End: wd.End})
			}
		}
		httpx.WriteJSON(w, http.StatusOK, v)
	default:
		httpx.WriteJSON(w, http.StatusOK, base)
	}
	return nil
}

// The bounds of a segment made from words.
const (
	segmentWords   = 30
	segmentSeconds = 10
)

// segments are t's segments: the upstream's, else made from its words
// (a segment ends at a sentence's end, or after 30 words or 10 seconds),
// else the whole text as one.
func segments(t *Transcript) []Segment {
	if len(t.Segments) > 0 {
		return t.Segments
	}
	if len(t.Words) == 0 {
		if t.Text == "" {
			return nil
		}
		return []Segment{{Start: 0, End: t.Duration, Text: t.Text}}
	}
	var out []Segment
	var cur []string
	var start float64
	for i, wd := range t.Words {
		if len(cur) == 0 {
			start = wd.Start
		}
		cur = append(cur, wd.Word)
		last := i == len(t.Words)-1
		if last || len(cur) >= segmentWords || wd.End-start >= segmentSeconds || strings.HasSuffix(wd.Word, ".") ||
			strings.HasSuffix(wd.Word, "?") || strings.HasSuffix(wd.Word, "!") {
			out = append(out, Segment{Start: start, End: wd.End, Text: strings.Join(cur, " ")})
			cur = nil
		}
	}
	return out
}

// stamp formats seconds as hh:mm:ss and milliseconds after sep.
func stamp(sec float64, sep string) string {
	ms := int64(math.Round(max(sec, 0) * 1000))
	return fmt.Sprintf("%02d:%02d:%02d%s%03d", ms/3_600_000, ms/60_000%60, ms/1000%60, sep, ms%1000)
}

// cue is a segment's text on one line of a caption (no line breaks, no
// arrow that would read as a timing line).
func cue(s string) string {
	return strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ", "-->", "->").Replace(s))
}

func srt(segs []Segment) string {
	var b strings.Builder
	for i, s := range segs {
		fmt.Fprintf(&b, "%d\n%s --> %s\n%s\n\n", i+1, stamp(s.Start, ","), stamp(s.End, ","), cue(s.Text))
	}
	return b.String()
}

func vtt(segs []Segment) string {
	var b strings.Builder
	b.WriteString("WEBVTT\n\n")
	for _, s := range segs {
		fmt.Fprintf(&b, "%s --> %s\n%s\n\n", stamp(s.Start, "."), stamp(s.End, "."), cue(s.Text))
	}
	return b.String()
}
