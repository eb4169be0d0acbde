package upstreamhttp

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// Every provider type's adapter names an upstream failure with one
// pattern, the provider's id first:
//
//	<provider>: upstream answered <status>: <the upstream's message>
//	<provider>: upstream unreachable: <kind of transport failure>
//	<provider>: upstream answer unreadable: <what was wrong with it>
//	<provider>: upstream stream failed: <the upstream's message, or what broke>
//
// The upstream's message is the text of its own error object, or its
// status text when it sent none (StatusText); nothing the gateway adds
// carries the upstream's URL, host or address. The
// functions below set e.Provider and put e.Message in the pattern. A
// message already in it keeps its phrase: an error labelled where it was
// made may pass another label on its way out, which only adds the
// provider when it was made without one (by a decoder, which starts the
// pattern at "upstream").

// Answered labels an error answer of the upstream: a non-2xx status, or
// an error object in place of an answer (status is the one it implies).
func Answered(provider string, status int, e *llm.Error) *llm.Error {
	return label(provider, "upstream answered "+strconv.Itoa(status), e)
}

// Unreachable is the failure to get an answer at all: err is said as
// its kind only (Describe).
func Unreachable(provider string, err error) *llm.Error {
	return label(provider, "upstream unreachable", &llm.Error{Status: 0, Type: llm.ErrServer, Message: Describe(err)})
}

// Unreadable labels a 2xx answer that could not be read or understood
// (cut by a limit, broken off, malformed); it is a 502 unless e says
// otherwise.
func Unreadable(provider string, e *llm.Error) *llm.Error {
	if e.Type == "" {
		e.Type = llm.ErrServer
	}
	return label(provider, "upstream answer unreadable", e)
}

// StreamFailed labels what ended a stream the upstream had accepted: its
// error event, or the stream breaking off or going wrong. The error is
// marked InStream.
func StreamFailed(provider string, e *llm.Error) *llm.Error {
	e.InStream = true
	return label(provider, "upstream stream failed", e)
}

// phrases are what follows the provider in the pattern.
var phrases = []string{"upstream answered ", "upstream unreachable: ", "upstream answer unreadable: ", "upstream stream failed: "}

// labelled returns msg in the pattern for provider when it is in it
// already — with the provider, or without one (labelled by a decoder
// used on its own), which is then added.
func labelled(provider, msg string) (string, bool) {
	if provider != "" {
		if rest, ok := strings.CutPrefix(msg, provider+": "); ok && hasPhrase(rest) {
			return msg, true
		}
	}
	if hasPhrase(msg) {
		if provider != "" {
			msg = provider + ": " + msg
		}
		return msg, true
	}
	return "", false
}

func hasPhrase(msg string) bool {
	for _, p := range phrases {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func label(provider, what string, e *llm.Error) *llm.Error {
	if e.Provider == "" {
		e.Provider = provider
	}
	if msg, ok := labelled(provider, e.Message); ok {
		e.Message = msg
		return e
	}
	msg := strings.TrimSpace(e.Message)
	if msg == "" {
		msg = "no message"
	}
	if provider == "" {
		e.Message = what + ": " + msg
	} else {
		e.Message = provider + ": " + what + ": " + msg
	}
	return e
}

// StatusText stands for the upstream's message when its answer carries
// none the format knows (no error object, or a body that is not JSON:
// often a proxy's page, which may name internal hosts, so never echoed).
func StatusText(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "status " + strconv.Itoa(status)
}
