package images

import (
	"encoding/base64"
	"testing"
)

// A data: URL names the image's own media type, read from its first
// bytes; what is no known image is called PNG.
func TestDataURL(t *testing.T) {
	for _, c := range []struct {
		raw  []byte
		want string
	}{
		{[]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "data:image/png;base64,"},
		{[]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "data:image/jpeg;base64,"},
		{[]byte("RIFF\x00\x00\x00\x00WEBPVP8 "), "data:image/webp;base64,"},
		{[]byte("not an image"), "data:image/png;base64,"},
		{nil, "data:image/png;base64,"},
	} {
		b64 := base64.StdEncoding.EncodeToString(c.raw)
		if got := DataURL(b64); got != c.want+b64 {
			t.Errorf("%q: %s", c.raw, got)
		}
	}
}
