// Package sse reads server-sent event streams as the upstream stream
// decoders of the wire formats receive them: lines ended by LF, CRLF or a
// lone CR, named events, data lines joined with LF, comments and other
// fields ignored. What an event means is left to each format. Flusher
// serves the other direction: pushing each streamed event to the client.
package sse

import (
	"bufio"
	"bytes"
	"io"
)

// ErrLineTooLong is returned by Next for a line longer than the reader's
// maximum.
var ErrLineTooLong = bufio.ErrTooLong

// Event is one dispatched event: its name (empty when the stream named
// none) and its data lines joined with LF.
type Event struct {
	Name string
	Data []byte
}

// Reader reads events one at a time.
type Reader struct{ sc *bufio.Scanner }

// NewReader reads events from r. A line of up to maxLine-2 bytes (its
// line end not counted) is always read; one of maxLine bytes or more
// stops the reader with ErrLineTooLong, as does one of maxLine-1 bytes
// that ends with CR.
func NewReader(r io.Reader, maxLine int) *Reader {
	sc := bufio.NewScanner(r)
	// Events are a few hundred bytes: start small and let the scanner
	// grow the buffer for the rare long line, up to maxLine.
	sc.Buffer(make([]byte, 0, min(4<<10, maxLine)), maxLine)
	sc.Split(splitLines)
	return &Reader{sc: sc}
}

// Next returns the next event with data. An event without data is not
// dispatched; at the end of input an event without its closing blank
// line still is. Next returns io.EOF when nothing is left, or the error
// that stopped reading.
func (r *Reader) Next() (Event, error) {
	var ev Event
	hasData := false
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if len(line) == 0 {
			if hasData {
				return ev, nil
			}
			ev.Name = "" // an event without data is not dispatched
			continue
		}
		if line[0] == ':' {
			continue // comment
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			ev.Name = string(value)
		case "data":
			if hasData {
				ev.Data = append(ev.Data, '\n')
			}
			ev.Data = append(ev.Data, value...)
			hasData = true
		}
	}
	if err := r.sc.Err(); err != nil {
		return Event{}, err
	}
	if hasData {
		return ev, nil
	}
	return Event{}, io.EOF
}

// splitLines splits at LF, CRLF or a lone CR, as SSE allows.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil // a CR at the end: wait to see whether LF follows
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}
