package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// DefaultMaxBody is the request body limit DecodeJSON applies when max <= 0.
const DefaultMaxBody = 1 << 20

// DecodeJSON decodes the request body into v. Unknown fields are ignored
// (clients of several versions talk to one server) and so is the
// Content-Type; everything else that is wrong — no body, malformed JSON, a field of
// the wrong type, trailing data, an oversized body — is a 400 (413 for size)
// whose message says what and where.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any, max int64) error {
	b, err := ReadBody(w, r, max)
	if err != nil {
		return err
	}
	return DecodeJSONBytes(b, v, r.Header.Get("Content-Type"))
}

// ReadBody reads the whole request body, at most max bytes (413 beyond).
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxBody
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds %d bytes", mbe.Limit)
		}
		return nil, BadRequest("reading the request body failed: %v", err)
	}
	return b, nil
}

// DecodeJSONBytes decodes a body read with ReadBody, with DecodeJSON's
// errors. contentType only improves the message of a failure.
func DecodeJSONBytes(b []byte, v any, contentType string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		derr := decodeError(err)
		// Clients such as curl -d send JSON labelled as a form; that is
		// accepted, but when decoding fails say what was expected.
		if contentType != "" {
			if mt, _, _ := mime.ParseMediaType(contentType); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
				var he *Error
				if errors.As(derr, &he) && he.Status == http.StatusBadRequest {
					he.Message += " (the body must be JSON; Content-Type was " + mt + ")"
				}
			}
		}
		return derr
	}
	if _, err := dec.Token(); err != io.EOF {
		return BadRequest("request body has data after the JSON value")
	}
	return nil
}

func decodeError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return BadRequest("request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("request body is truncated JSON")
	case errors.As(err, &syn):
		return BadRequest("malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return BadRequest("request body must be %s, not %s", typeName(typ), typ.Value)
		}
		return BadRequest("field %q must be %s, not %s", field, typeName(typ), typ.Value)
	case errors.As(err, &mbe):
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds %d bytes", mbe.Limit)
	default:
		return BadRequest("invalid JSON body: %s", err.Error())
	}
}

func typeName(t *json.UnmarshalTypeError) string {
	switch t.Type.Kind().String() {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "ptr":
		return fmt.Sprintf("a %s", t.Type.Elem().Kind())
	}
	return t.Type.String()
}

// QueryInt reads the query parameter name as an integer from 0 to max;
// absent, it is def. Anything else is a 400 naming the parameter.
func QueryInt(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		return 0, BadRequest("%s must be an integer from 0 to %d", name, max)
	}
	return n, nil
}
