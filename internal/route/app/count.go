package app

import (
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/router"
)

// The provider types whose upstream counts tokens with the model's own
// tokenizer; the others' counts are estimated.
var (
	_ router.TokenCounter = (*anthropic.Client)(nil)
	_ router.TokenCounter = (*gemini.Client)(nil)
)
