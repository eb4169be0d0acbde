package api

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/omniedge/omni/internal/edge/server/control"
)

// listed answers a list that dashboards poll (networks, a network's
// members, devices, security keys, login sessions, user servers) as JSON
// with an ETag, and a request whose If-None-Match names the current tag
// with 304 and no body.
//
// The tag is a hash of the caller's user id and the exact body, so it
// changes with anything the answer shows — names, addresses, exit nodes,
// last_seen and the online state derived from it at the time of the
// request — and never matches another user's answer, even an identical
// one. It saves the transfer and the client's work, not the server's
// read: every request still reads the list (the online state depends on
// the clock and on presence, which no stored version follows).
//
// Cache-Control: no-store keeps the lists out of browser and proxy caches;
// a client that wants the 304 keeps its last answer and tag itself.
func listed(w http.ResponseWriter, r *http.Request, p control.Principal, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tag := etag(p.UserID, b)
	h := w.Header()
	h.Set("ETag", tag)
	h.Set("Cache-Control", "no-store")
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && noneMatch(r.Header.Values("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// etag is the strong entity tag of body as answered to userID: 128 bits
// of SHA-256 over both.
func etag(userID string, body []byte) string {
	h := sha256.New()
	h.Write([]byte("edge-list\x00"))
	h.Write([]byte(userID))
	h.Write([]byte{0})
	h.Write(body)
	sum := h.Sum(nil)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}

// maxTags bounds how many entity tags of If-None-Match are compared.
const maxTags = 32

// noneMatch reports whether the If-None-Match field values name tag
// (weak comparison, RFC 9110 §13.1.2) or are "*". A malformed list
// matches nothing from the first malformed entry on.
func noneMatch(values []string, tag string) bool {
	opaque := tag // ours is strong: the opaque tag is the whole of it
	n := 0
	for _, v := range values {
		for {
			for len(v) > 0 && (v[0] == ' ' || v[0] == '\t' || v[0] == ',') {
				v = v[1:]
			}
			if v == "" {
				break
			}
			if n++; n > maxTags {
				return false
			}
			if v[0] == '*' {
				return true
			}
			if len(v) >= 2 && v[:2] == "W/" {
				v = v[2:]
			}
			if len(v) < 2 || v[0] != '"' {
				break
			}
			end := 1
			for end < len(v) && v[end] != '"' {
				end++
			}
			if end == len(v) {
				break // unterminated
			}
			if v[:end+1] == opaque {
				return true
			}
			v = v[end+1:]
		}
	}
	return false
}
