package provider

import "strings"

// Model kinds shown in model lists.
const (
	KindChat      = "chat"
	KindEmbedding = "embedding"
	KindImage     = "image"
	KindRerank    = "rerank"
	KindModerate  = "moderation"
	KindAudio     = "audio" // transcription (speech to text) and speech (text to speech)
	KindVideo     = "video"
	KindMusic     = "music"
	KindSearch    = "search"
)

// Kinds lists the model kinds a model may be declared with.
func Kinds() []string {
	return []string{KindChat, KindEmbedding, KindImage, KindRerank, KindModerate, KindAudio, KindVideo, KindMusic, KindSearch}
}

// Kinded is implemented by the adapters of a provider type whose models
// are all of one kind (a rerank, transcription or search upstream): the
// models declared for such a provider are of that kind whatever their
// names.
type Kinded interface {
	ModelKind() string
}

// DefaultModeled is implemented by the adapters of a provider type whose
// requests need no model (a web search provider): a provider of that
// type declared without models lists this one, so that the model list
// shows it.
type DefaultModeled interface {
	DefaultModel() string
}

// KindOf guesses a model's kind from its name, for models declared
// without one: embedding, image, rerank and moderation models of the
// well-known providers name themselves so.
func KindOf(model string) string {
	m := strings.ToLower(model)
	switch {
	case strings.Contains(m, "rerank"):
		return KindRerank
	case strings.Contains(m, "moderation"):
		return KindModerate
	case strings.Contains(m, "embed"), strings.HasPrefix(m, "bge-"), strings.Contains(m, "/bge-"), strings.HasPrefix(m, "e5-"), strings.Contains(m, "/e5-"):
		return KindEmbedding
	case strings.Contains(m, "dall-e"), strings.Contains(m, "gpt-image"), strings.Contains(m, "imagen"), strings.Contains(m, "flux"),
		strings.Contains(m, "stable-diffusion"), strings.Contains(m, "sdxl"), strings.Contains(m, "grok-2-image"):
		return KindImage
	case strings.Contains(m, "whisper"), strings.Contains(m, "transcribe"), strings.HasPrefix(m, "tts-"), strings.Contains(m, "-tts"),
		strings.Contains(m, "/tts-"), strings.HasPrefix(m, "nova-"), strings.HasPrefix(m, "aura-"):
		return KindAudio
	case strings.HasPrefix(m, "sora"), strings.HasPrefix(m, "veo"), strings.HasPrefix(m, "gen3"), strings.HasPrefix(m, "gen-3"),
		strings.HasPrefix(m, "gen4"), strings.Contains(m, "kling"):
		return KindVideo
	case strings.Contains(m, "music"), strings.HasPrefix(m, "suno"), strings.HasPrefix(m, "lyria"):
		return KindMusic
	}
	return KindChat
}
