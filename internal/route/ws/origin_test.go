package ws

import (
	"net/http/httptest"
	"testing"
)

// Which handshakes come from another site's page: any Origin whose host
// is not the request's Host, opaque ones, and tricks with userinfo or
// look-alike hosts.
func TestForeignOrigin(t *testing.T) {
	for origin, foreign := range map[string]bool{
		"":                                    false, // not a browser
		"http://127.0.0.1:20128":              false,
		"HTTP://127.0.0.1:20128":              false,
		"http://127.0.0.1:20129":              true,
		"http://localhost:20128":              true, // another name is another origin
		"null":                                true,
		"file://":                             true,
		"http://evil.example":                 true,
		"http://evil.example@127.0.0.1:20128": true,
		"http://127.0.0.1:20128.evil.example": true,
		"http://127.0.0.1:20128/path":         true,
		"127.0.0.1:20128":                     true,
	} {
		r := httptest.NewRequest("GET", "http://127.0.0.1:20128/v1/ws", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if got := foreignOrigin(r); got != foreign {
			t.Errorf("Origin %q: foreign %v, want %v", origin, got, foreign)
		}
	}
}

// The key offered as a subprotocol is taken apart from the others, and
// only the first 16 others are kept.
func TestOfferedProtocols(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/ws", nil)
	r.Header.Add("Sec-WebSocket-Protocol", "omniroute.v1, omniroute.key.sk-1")
	r.Header.Add("Sec-WebSocket-Protocol", "chat")
	key, others := offeredProtocols(r)
	if key != "sk-1" || len(others) != 2 || others[0] != "omniroute.v1" || others[1] != "chat" {
		t.Fatalf("key %q, others %v", key, others)
	}
	r.Header.Set("Sec-WebSocket-Protocol", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s")
	if _, others := offeredProtocols(r); len(others) != 16 {
		t.Fatalf("%d protocols kept", len(others))
	}
}
