package a2a

import (
	"net/http"
	"strconv"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// Card is A2A's agent card.
type Card struct {
	ProtocolVersion    string                    `json:"protocolVersion"`
	Name               string                    `json:"name"`
	Description        string                    `json:"description"`
	URL                string                    `json:"url"`
	PreferredTransport string                    `json:"preferredTransport"`
	Version            string                    `json:"version"`
	Provider           map[string]string         `json:"provider"`
	Capabilities       Capabilities              `json:"capabilities"`
	SecuritySchemes    map[string]map[string]any `json:"securitySchemes"`
	Security           []map[string][]string     `json:"security"`
	DefaultInputModes  []string                  `json:"defaultInputModes"`
	DefaultOutputModes []string                  `json:"defaultOutputModes"`
	Skills             []SkillInfo               `json:"skills"`
}

// Capabilities are what the server supports beyond the basics.
type Capabilities struct {
	Streaming              bool `json:"streaming"`
	PushNotifications      bool `json:"pushNotifications"`
	StateTransitionHistory bool `json:"stateTransitionHistory"`
}

// card is the agent card as served to r: its url is the JSON-RPC
// endpoint on the host r was sent to (the Host header alone; no
// forwarded header is read, so no other client's header can change it).
func (s *Service) card(r *http.Request) Card {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return Card{
		ProtocolVersion: ProtocolVersion,
		Name:            "OmniRoute",
		Description: "OmniRoute, the AI gateway, as an agent: it picks models and routes tasks through its providers, " +
			"and reports quotas, providers, costs and provider health from its own state.",
		URL:                scheme + "://" + r.Host + "/a2a",
		PreferredTransport: "JSONRPC",
		Version:            s.version,
		Provider:           map[string]string{"organization": "OmniEdge", "url": "https://github.com/omniedge/omni"},
		Capabilities:       Capabilities{Streaming: true},
		SecuritySchemes: map[string]map[string]any{"bearer": {"type": "http", "scheme": "bearer",
			"description": "a gateway API key, as /v1 takes it"}},
		Security:           []map[string][]string{{"bearer": {}}},
		DefaultInputModes:  modes,
		DefaultOutputModes: modes,
		Skills:             Skills,
	}
}

// serveCard answers GET /.well-known/agent.json: public, cached for an
// hour.
func (s *Service) serveCard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(3600))
	httpx.WriteJSON(w, http.StatusOK, s.card(r))
}
