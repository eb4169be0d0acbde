package images

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
)

// tooLarge is a part past its cap: a 413.
func tooLarge(format string, a ...any) *llm.Error {
	e := invalid("image_too_large", format, a...)
	e.Status = http.StatusRequestEntityTooLarge
	return e
}

// edit serves POST /v1/images/edits: a multipart body read part by part
// under the caps, the images held (a slot of MaxEdits) until the answer.
func (s *Service) edit(w http.ResponseWriter, r *http.Request, run feature.RunOp) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "multipart/form-data" {
		return &llm.Error{Status: http.StatusUnsupportedMediaType, Type: llm.ErrInvalidRequest, Code: "unsupported_media_type",
			Message: "the request body must be multipart/form-data with an image part and a prompt"}
	}
	select {
	case s.edits <- struct{}{}:
		defer func() { <-s.edits }()
	default:
		// The body is left unread: the connection closes after the answer.
		w.Header().Set("Connection", "close")
		return &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded, Code: "too_many_edits",
			Message: "too many image edits are being received at once; retry shortly", RetryAfter: time.Second}
	}
	model, req, err := s.readEdit(r)
	if err != nil {
		return err
	}
	var res *llm.ImageResponse
	if _, err := run(Op(model, req, &res)); err != nil {
		return err
	}
	s.encode(w, req, res)
	return nil
}

// readEdit reads an edit's parts: text fields of at most MaxFieldBytes,
// images ("image" or "image[]", at most MaxImages) and a mask of at most
// MaxImageBytes each, at most MaxParts parts.
func (s *Service) readEdit(r *http.Request) (string, *llm.ImageRequest, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return "", nil, invalid("invalid_multipart", "the body is not a multipart form: %v", err)
	}
	var (
		f      fields
		images []llm.ImageFile
		mask   *llm.ImageFile
	)
	for parts := 0; ; parts++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, partError(err)
		}
		if parts >= s.lim.MaxParts {
			return "", nil, invalid("too_many_parts", "the form has more than %d parts", s.lim.MaxParts)
		}
		name := p.FormName()
		switch name {
		case "image", "image[]", "mask":
			if len(images) >= s.lim.MaxImages && name != "mask" {
				return "", nil, invalid("too_many_images", "at most %d images are edited at once", s.lim.MaxImages)
			}
			if name == "mask" && mask != nil {
				return "", nil, invalid("invalid_mask", "one mask at most")
			}
			data, err := readPart(p, s.lim.MaxImageBytes)
			if err != nil {
				return "", nil, err
			}
			if data == nil {
				return "", nil, tooLarge("the %s part %q is larger than %d bytes", name, p.FileName(), s.lim.MaxImageBytes)
			}
			if len(data) == 0 {
				return "", nil, invalid("empty_image", "the %s part is empty", name)
			}
			file := llm.ImageFile{Name: p.FileName(), ContentType: p.Header.Get("Content-Type"), Data: data}
			if name == "mask" {
				mask = &file
			} else {
				images = append(images, file)
			}
		default:
			if p.FileName() != "" && !known[name] {
				return "", nil, invalid("unexpected_file", "the form has a file part %q; only image, image[] and mask are files", truncate(name))
			}
			data, err := readPart(p, s.lim.MaxFieldBytes)
			if err != nil {
				return "", nil, err
			}
			if data == nil {
				return "", nil, invalid("field_too_long", "the form field %q is longer than %d bytes", truncate(name), s.lim.MaxFieldBytes)
			}
			if err := setField(&f, name, string(data)); err != nil {
				return "", nil, err
			}
		}
	}
	if len(images) == 0 {
		return "", nil, invalid("missing_image", `the form has no "image" part (or "image[]" parts): the image to edit`)
	}
	model, req, err := s.validate(f)
	if err != nil {
		return "", nil, err
	}
	req.Images, req.Mask = images, mask
	return model, req, nil
}

// setField sets a text field of an edit's form.
func setField(f *fields, name, v string) error {
	switch name {
	case "model":
		f.model = v
	case "prompt":
		f.prompt = v
	case "size":
		f.size = v
	case "quality":
		f.quality = v
	case "style":
		f.style = v
	case "response_format":
		f.format = v
	case "user":
		f.user = v
	case "n":
		n, err := strconv.Atoi(v)
		if err != nil {
			return invalid("invalid_n", `"n" must be a whole number`)
		}
		f.n = &n
	case "":
		return invalid("invalid_multipart", "a part of the form has no name")
	default:
		b, _ := json.Marshal(v)
		return addExtra(f, name, b)
	}
	return nil
}

// readPart reads a part of at most max bytes; nil without an error when
// it is longer.
func readPart(p *multipart.Part, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(p, max+1))
	if err != nil {
		return nil, partError(err)
	}
	if int64(len(b)) > max {
		return nil, nil
	}
	return b, nil
}

// partError is a failure reading the form: the body past its cap (a
// 413, as *http.MaxBytesError) or a malformed form (a 400).
func partError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return mbe
	}
	return invalid("invalid_multipart", "the multipart body is malformed: %v", err)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
