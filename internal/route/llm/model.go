package llm

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxModelName is the longest model name, in bytes, a client may send.
const MaxModelName = 256

// CheckModel validates a model name a client sent: 1 to MaxModelName
// bytes of printable UTF-8 (no control or formatting characters, no
// spaces but the ASCII one), not blank. Failures are *Error 400 naming
// the field, for every dialect to render in its own shape. Names are
// checked where they are decoded, before they reach the router, the
// gates or any record.
func CheckModel(field, name string) error {
	bad := func(why string) error {
		return &Error{Status: http.StatusBadRequest, Type: ErrInvalidRequest, Message: field + ": " + why}
	}
	if len(name) > MaxModelName {
		return bad("a model name is at most 256 bytes")
	}
	if strings.TrimSpace(name) == "" {
		return bad("a model name is required")
	}
	for i := 0; i < len(name); {
		if c := name[i]; c < utf8.RuneSelf { // ASCII: printable, or a space
			if c < 0x20 || c == 0x7f {
				return bad("a model name may not hold control characters")
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError { // invalid bytes, or what a JSON decoder made of them
			return bad("a model name must be valid UTF-8")
		}
		if !unicode.IsPrint(r) {
			return bad("a model name may not hold control, formatting or space characters other than ' '")
		}
		i += size
	}
	return nil
}
