package llm

import "math"

// Modality names what a routed request does beyond chat: each modality
// is one feature module of the gateway (rerank, moderation …) whose
// calls pass the pipeline's operation path (pipeline.Engine.Do).
type Modality string

// The modalities of the gateway. Chat is the zero value: chat requests
// of every dialect, embeddings and token counts record no modality.
const (
	ModalityChat       Modality = ""
	ModalityRerank     Modality = "rerank"
	ModalityModeration Modality = "moderation"
	ModalityImage      Modality = "image"
	ModalityAudio      Modality = "audio"
	ModalitySearch     Modality = "search"
	ModalityVideo      Modality = "video"
	ModalityMusic      Modality = "music"
)

// Unit is what a modality is priced and counted in, besides tokens.
type Unit string

// The units prices may be given in. Each has a scale (Per): a price is
// USD per Per units, so that the list prices of the providers read as
// they publish them (rerank per 1,000 documents, speech per million
// characters).
const (
	// UnitDocument is a document ranked by a rerank request (priced per
	// 1,000 documents).
	UnitDocument Unit = "document"
	// UnitSearchUnit is Cohere's billing unit of rerank: one query with
	// up to 100 documents (priced per search unit).
	UnitSearchUnit Unit = "search_unit"
	// UnitModeration is one input classified by a moderation request
	// (priced per 1,000 inputs).
	UnitModeration Unit = "input"
	// UnitImage is one generated or edited image (priced per image).
	UnitImage Unit = "image"
	// UnitSecond is a second of audio transcribed (priced per second).
	UnitSecond Unit = "second"
	// UnitCharacter is a character of text spoken (priced per million
	// characters).
	UnitCharacter Unit = "character"
	// UnitSearch is one web search (priced per 1,000 searches).
	UnitSearch Unit = "search"
)

// units are the known units and their scales.
var units = map[Unit]int64{
	UnitDocument:   1000,
	UnitSearchUnit: 1,
	UnitModeration: 1000,
	UnitImage:      1,
	UnitSecond:     1,
	UnitCharacter:  1_000_000,
	UnitSearch:     1000,
}

// Per is how many units one price of u is for (1000 for documents); 0
// for a unit the gateway does not know.
func (u Unit) Per() int64 { return units[u] }

// Units lists the known units.
func Units() []Unit {
	return []Unit{UnitDocument, UnitSearchUnit, UnitModeration, UnitImage, UnitSecond, UnitCharacter, UnitSearch}
}

// Quantity is an amount of a unit.
type Quantity struct {
	Unit Unit  `json:"unit"`
	N    int64 `json:"n"`
}

// Cost is the price of q at usd per q.Unit.Per() units.
func (q Quantity) Cost(usd float64) float64 {
	per := q.Unit.Per()
	if per <= 0 || q.N <= 0 {
		return 0
	}
	return float64(q.N) * usd / float64(per)
}

// Find returns the amount of unit in qs.
func Find(qs []Quantity, unit Unit) (int64, bool) {
	for _, q := range qs {
		if q.Unit == unit {
			return q.N, true
		}
	}
	return 0, false
}

// SearchUnits is what Cohere bills a rerank of docs documents: one
// search unit per started 100 documents (longer documents, which Cohere
// splits, bill more and are reported by its answer).
func SearchUnits(docs int) int64 {
	if docs <= 0 {
		return 0
	}
	return int64(math.Ceil(float64(docs) / 100))
}

// RerankRequest is a rerank request in the canonical model: rank
// Documents by their relevance to Query.
type RerankRequest struct {
	Query     string
	Documents []string
	// TopN is how many of the best documents to return; 0: all.
	TopN int
	// ReturnDocuments asks for the documents' text beside their index.
	ReturnDocuments bool
}

// RerankResult is one ranked document.
type RerankResult struct {
	Index          int     // of the document in the request
	RelevanceScore float64 // higher is more relevant
}

// RerankResponse is the ranked documents, best first, and what the
// upstream billed.
type RerankResponse struct {
	ID      string
	Results []RerankResult
	// Usage is the upstream's token count (Voyage, Jina), zero when it
	// gave none.
	Usage Usage
	// Billed is what the upstream says it billed in other units
	// (Cohere's search units), nil when it said nothing.
	Billed []Quantity
}

// ModerationInput is one input of a moderation request: a text, or an
// image by URL (a data: URL for inline images).
type ModerationInput struct {
	Text     string
	ImageURL string
}

// ModerationRequest asks whether inputs break a usage policy.
type ModerationRequest struct {
	Inputs []ModerationInput
	// Single reports that the client sent one string, not an array (an
	// upstream is sent the same shape).
	Single bool
}

// ModerationResult is the verdict on one input.
type ModerationResult struct {
	Flagged bool
	// Categories and Scores are by category name ("hate",
	// "violence/graphic" …), as the upstream names them.
	Categories map[string]bool
	Scores     map[string]float64
	// InputTypes are the kinds of input each category was judged on
	// ("text", "image"), when the upstream says.
	InputTypes map[string][]string
}

// ModerationResponse is the verdicts, one per input in order.
type ModerationResponse struct {
	ID      string
	Model   string // the upstream's name of the model that judged
	Results []ModerationResult
}
