package provider

import (
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

func ptr[T any](v T) *T { return &v }

func TestPreparerDropsWhatModelsReject(t *testing.T) {
	req := &llm.Request{Model: "x", Temperature: ptr(0.7), TopP: ptr(0.9), PresencePenalty: ptr(0.1), Seed: ptr(int64(7))}

	prep := Preparer("openai", nil)
	got := prep(req, "o3-mini")
	if got.Temperature != nil || got.TopP != nil || got.PresencePenalty != nil || got.Seed == nil {
		t.Fatalf("o3-mini: %+v", got)
	}
	if req.Temperature == nil || req.TopP == nil {
		t.Fatal("the caller's request was modified")
	}
	if prep(req, "gpt-4o") != req {
		t.Fatal("gpt-4o needs no change, so no copy")
	}
	if got := prep(req, "gpt-5-mini"); got.Temperature != nil {
		t.Fatalf("gpt-5-mini keeps temperature: %+v", got)
	}

	a := Preparer("anthropic", nil)
	got = a(req, "claude-sonnet-4-5-20250929")
	if got.Temperature == nil || *got.Temperature != 0.7 || got.TopP != nil {
		t.Fatalf("claude 4.5 keeps temperature only: %+v", got)
	}
	if a(req, "claude-3-5-haiku-latest") != req {
		t.Fatal("claude 3.5 takes both")
	}
	onlyTopP := &llm.Request{TopP: ptr(0.5)}
	if a(onlyTopP, "claude-opus-4-1") != onlyTopP {
		t.Fatal("one of the pair alone is kept")
	}

	// Configured rules add to the built-in ones.
	c := Preparer("openai-compatible", []ParamRule{{Model: "deepseek-reasoner", Drop: []string{ParamTemperature, ParamSeed}}})
	if got := c(req, "deepseek-reasoner"); got.Temperature != nil || got.Seed != nil || got.TopP == nil {
		t.Fatalf("configured rule: %+v", got)
	}
	if Preparer("gemini", nil) != nil {
		t.Fatal("no rule for gemini: nil preparer, nothing to call")
	}
}

func TestValidateParamRules(t *testing.T) {
	if err := ValidateParamRules([]ParamRule{{Model: "o3*", Drop: []string{"temperature"}}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]ParamRule{
		{{Model: "", Drop: []string{"temperature"}}},
		{{Model: "[", Drop: []string{"temperature"}}},
		{{Model: "x", Drop: []string{"temprature"}}},
	} {
		if ValidateParamRules(bad) == nil {
			t.Fatalf("%+v accepted", bad)
		}
	}
}

func TestKindOf(t *testing.T) {
	for model, want := range map[string]string{
		"text-embedding-3-small":   KindEmbedding,
		"Qwen/Qwen3-Embedding-8B":  KindEmbedding,
		"BAAI/bge-m3":              KindEmbedding,
		"gemini-embedding-001":     KindEmbedding,
		"gpt-image-1":              KindImage,
		"black-forest-labs/FLUX.1": KindImage,
		"dall-e-3":                 KindImage,
		"gpt-4o":                   KindChat,
		"claude-sonnet-4-5":        KindChat,
		"rerank-v3.5":              KindRerank,
		"jina-reranker-v2-base":    KindRerank,
		"omni-moderation-latest":   KindModerate,
		"whisper-1":                KindAudio,
		"gpt-4o-mini-transcribe":   KindAudio,
		"tts-1-hd":                 KindAudio,
		"gpt-4o-mini-tts":          KindAudio,
		"nova-3":                   KindAudio,
		"sora-2":                   KindVideo,
		"gen4_turbo":               KindVideo,
		"veo-3.0-generate-001":     KindVideo,
		"music_v1":                 KindMusic,
		"suno-v3.5":                KindMusic,
		"novel-writer":             KindChat, // "nova-" only as a prefix
	} {
		if got := KindOf(model); got != want {
			t.Errorf("KindOf(%q) = %s, want %s", model, got, want)
		}
	}
}
