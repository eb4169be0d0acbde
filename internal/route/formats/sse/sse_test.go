package sse

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads every event of r, returning them with the error that
// ended the stream (nil for io.EOF).
func readAll(r io.Reader, maxLine int) ([]Event, error) {
	sr := NewReader(r, maxLine)
	var evs []Event
	for {
		ev, err := sr.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestReader(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Event
	}{
		{"empty", "", nil},
		{"one", "data: a\n\n", []Event{{Data: []byte("a")}}},
		{"named", "event: x\ndata: a\n\n", []Event{{Name: "x", Data: []byte("a")}}},
		{"crlf", "event: x\r\ndata: a\r\n\r\ndata: b\r\n\r\n", []Event{{Name: "x", Data: []byte("a")}, {Data: []byte("b")}}},
		{"cr", "event: x\rdata: a\r\rdata: b\r\r", []Event{{Name: "x", Data: []byte("a")}, {Data: []byte("b")}}},
		{"mixed", "data: a\r\ndata: b\rdata: c\n\r", []Event{{Data: []byte("a\nb\nc")}}},
		{"multi-line data", "data: a\ndata:b\ndata:  c\n\n", []Event{{Data: []byte("a\nb\n c")}}},
		{"comments and other fields", ": hi\nid: 7\nretry: 10\ndata: a\n: bye\n\n", []Event{{Data: []byte("a")}}},
		{"no data is not dispatched", "event: x\n\ndata: a\n\n", []Event{{Data: []byte("a")}}},
		{"name kept until data", "event: x\n: c\ndata: a\n\n", []Event{{Name: "x", Data: []byte("a")}}},
		{"later name wins", "event: x\nevent: y\ndata: a\n\n", []Event{{Name: "y", Data: []byte("a")}}},
		{"empty data", "data\n\ndata:\n\n", []Event{{}, {}}},
		{"unterminated at EOF", "event: x\ndata: a", []Event{{Name: "x", Data: []byte("a")}}},
		{"trailing CR at EOF", "data: a\r", []Event{{Data: []byte("a")}}},
		{"name without data at EOF", "data: a\n\nevent: x\n", []Event{{Data: []byte("a")}}},
		{"value keeps colons", "data: {\"a\":1}\n\n", []Event{{Data: []byte(`{"a":1}`)}}},
		{"field is case sensitive", "Data: a\nDATA: b\n\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in))} {
				got, err := readAll(r, 1<<10)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestLineTooLong(t *testing.T) {
	const limit = 64
	ok := "data: " + strings.Repeat("x", limit-len("data: ")-1) + "\n\n"
	evs, err := readAll(strings.NewReader(ok), limit)
	if err != nil || len(evs) != 1 {
		t.Fatalf("a line of %d bytes: %q %v", limit, evs, err)
	}
	long := "data: a\n\ndata: " + strings.Repeat("x", limit) + "\n\n"
	if _, err := readAll(strings.NewReader(strings.TrimSuffix(ok, "\n\n")+"\r\n"), limit); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("a line of %d bytes ended by CRLF: %v, want ErrLineTooLong", limit-1, err)
	}
	evs, err = readAll(strings.NewReader(long), limit)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("error %v, want ErrLineTooLong", err)
	}
	if len(evs) != 1 {
		t.Fatalf("events before the long line: %q", evs)
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	evs, err := readAll(r, 1<<10)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	if want := []Event{{Data: []byte("a")}}; !reflect.DeepEqual(evs, want) {
		t.Fatalf("got %q, want %q", evs, want)
	}
}

// reference parses a whole stream the plain way: line ends normalised to
// LF first, then the fields of each line.
func reference(in []byte) []Event {
	norm := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
	norm = bytes.ReplaceAll(norm, []byte("\r"), []byte("\n"))
	lines := strings.Split(string(norm), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // the last line end, or empty input
	}
	var evs []Event
	var cur Event
	has := false
	for _, line := range lines {
		switch {
		case line == "":
			if has {
				evs = append(evs, cur)
			}
			cur, has = Event{}, false
		case line[0] == ':':
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				cur.Name = value
			case "data":
				if has {
					cur.Data = append(cur.Data, '\n')
				}
				cur.Data = append(cur.Data, value...)
				has = true
			}
		}
	}
	if has {
		evs = append(evs, cur)
	}
	return evs
}

// FuzzReader: the reader agrees with the reference parser, however the
// input is split into reads, and reports a long line as ErrLineTooLong.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"event: x\r\ndata: a\r\n\r\n",
		"data: a\rdata: b\r\r: c\n",
		"data\n\nevent: y\ndata:  z",
		"data: {\"type\":\"message_stop\"}\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := reference(in)
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.HalfReader(bytes.NewReader(in))} {
			got, err := readAll(r, len(in)+2)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		const limit = 16
		longest := 0
		for _, l := range strings.FieldsFunc(string(in), func(r rune) bool { return r == '\r' || r == '\n' }) {
			longest = max(longest, len(l))
		}
		_, err := readAll(bytes.NewReader(in), limit)
		switch {
		case err != nil && !errors.Is(err, ErrLineTooLong):
			t.Fatalf("error %v", err)
		case err != nil && longest < limit-1:
			t.Fatalf("a line of %d bytes failed a maximum of %d: %v", longest, limit, err)
		case err == nil && longest >= limit:
			t.Fatalf("a line of %d bytes passed a maximum of %d", longest, limit)
		}
	})
}
