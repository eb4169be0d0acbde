package llm

// MaxImageAnswer bounds the body of an image upstream's answer (its
// images as base64): an upstream cannot make the gateway hold more for
// one request.
const MaxImageAnswer = 64 << 20

// ImageFile is an image sent with an edit request (an image to edit or
// its mask), held whole: its size is capped where it is read.
type ImageFile struct {
	Name        string // the client's file name, for the upstream's multipart part
	ContentType string
	Data        []byte
}

// ImageRequest is an image generation or edit in the canonical model.
type ImageRequest struct {
	Prompt string
	// N is how many images to make; 0: the upstream's default (one).
	N       int
	Size    string // "1024x1024", "auto" …; "" the upstream's default
	Quality string
	Style   string
	// ResponseFormat is what the client asked for: "b64_json", "url" or
	// "" (the upstream's default). An upstream answering base64 only
	// is answered as data: URLs when "url" was asked.
	ResponseFormat string
	User           string
	// Images are the images to edit (an edit request); Mask marks where.
	Images []ImageFile
	Mask   *ImageFile
	// Extra are the other fields the client sent, by name, each as JSON
	// text, for an OpenAI-format upstream (background, output_format …).
	Extra map[string][]byte
}

// GeneratedImage is one image of an answer: base64 data or a URL.
type GeneratedImage struct {
	B64JSON       string
	URL           string
	RevisedPrompt string
}

// ImageResponse is the images an upstream made and what it billed.
type ImageResponse struct {
	Created int64 // Unix seconds; 0: the upstream said nothing
	Images  []GeneratedImage
	// Usage is the upstream's token count (gpt-image models), nil when
	// it gave none; kept as it came, for the client.
	Usage []byte
	// Tokens is Usage read: what the price table's token prices apply to.
	Tokens Usage
	// Meta are further fields of the answer, as JSON text (OpenAI's
	// background, output_format, quality, size).
	Meta map[string][]byte
}
