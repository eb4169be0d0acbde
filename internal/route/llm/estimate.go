package llm

// EstimateTokens approximates a token count from text length: about four
// bytes per token for English and code. Used only when an upstream reports
// no usage; results are marked Estimated.
func EstimateTokens(text string) int {
	if text == "" {
		return 0
	}
	return (len(text) + 3) / 4
}

// EstimateInput approximates the prompt tokens of req.
func EstimateInput(req *Request) int {
	n := 0
	add := func(parts []Part) {
		for _, p := range parts {
			n += EstimateTokens(p.Text)
			if p.ToolCall != nil {
				n += EstimateTokens(p.ToolCall.Name) + EstimateTokens(string(p.ToolCall.Arguments))
			}
			if p.ToolResult != nil {
				for _, c := range p.ToolResult.Content {
					n += EstimateTokens(c.Text)
				}
			}
			if p.Media != nil {
				n += 256 // a typical small image or clip
			}
		}
	}
	add(req.System)
	for _, m := range req.Messages {
		n += 4 // role and framing
		add(m.Parts)
	}
	for _, t := range req.Tools {
		n += EstimateTokens(t.Name) + EstimateTokens(t.Description) + EstimateTokens(string(t.Parameters))
	}
	return n
}

// EstimateOutput approximates the output tokens of content.
func EstimateOutput(content []Part) int {
	n := 0
	for _, p := range content {
		n += EstimateTokens(p.Text)
		if p.ToolCall != nil {
			n += EstimateTokens(p.ToolCall.Name) + EstimateTokens(string(p.ToolCall.Arguments))
		}
	}
	return n
}

// FillUsage estimates r's usage when the upstream reported none.
func FillUsage(req *Request, r *Response) {
	if r.Usage.InputTokens != 0 || r.Usage.OutputTokens != 0 || r.Usage.CacheReadTokens != 0 {
		return
	}
	r.Usage = Usage{InputTokens: EstimateInput(req), OutputTokens: EstimateOutput(r.Content), Estimated: true}
}

// EstimatingStream wraps s so that its final Stop event carries estimated
// usage when the upstream reported none.
func EstimatingStream(req *Request, s Stream) Stream {
	return &estimating{Stream: s, req: req}
}

type estimating struct {
	Stream
	req     *Request
	out     int
	reached bool // the upstream reported usage
}

func (e *estimating) Next() (Event, error) {
	ev, err := e.Stream.Next()
	if err != nil {
		return ev, err
	}
	switch ev.Type {
	case EventStart, EventUsage:
		if ev.Usage != nil && (ev.Usage.InputTokens != 0 || ev.Usage.OutputTokens != 0) {
			e.reached = true
		}
	case EventDelta:
		e.out += EstimateTokens(ev.Delta.Text) + EstimateTokens(ev.Delta.Arguments)
	case EventStop:
		if ev.Usage != nil && (ev.Usage.InputTokens != 0 || ev.Usage.OutputTokens != 0) {
			e.reached = true
		}
		if !e.reached {
			ev.Usage = &Usage{InputTokens: EstimateInput(e.req), OutputTokens: e.out, Estimated: true}
		}
	}
	return ev, nil
}
