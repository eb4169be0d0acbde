package api

import "github.com/omniedge/omni/internal/edge/proto/wire"

// parseHeartbeat decodes the common heartbeat body —
// {"hardware_id":"…","is_exit_node":false}, in any key order, with
// hardware_uuid accepted, optional whitespace — without reflection. It
// reports ok=false for anything else (escapes, non-ASCII, other keys or
// types, duplicates, trailing data), and the caller then uses
// encoding/json, so the fast path never accepts what the slow path
// would not, nor decodes it differently.
func parseHeartbeat(b []byte) (req wire.HeartbeatRequest, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return req, false
	}
	i = skipWS(b, i+1)
	var seenID, seenUUID, seenExit bool
	if i < len(b) && b[i] == '}' {
		return req, skipWS(b, i+1) == len(b)
	}
	for {
		key, j, ok := parseSimpleString(b, i)
		if !ok {
			return req, false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return req, false
		}
		i = skipWS(b, i+1)
		switch key {
		case "hardware_id", "hardware_uuid":
			v, j, ok := parseSimpleString(b, i)
			if !ok {
				return req, false
			}
			if key == "hardware_id" {
				if seenID {
					return req, false
				}
				seenID, req.HardwareID = true, v
			} else {
				if seenUUID {
					return req, false
				}
				seenUUID, req.HardwareUUID = true, v
			}
			i = j
		case "is_exit_node":
			if seenExit {
				return req, false
			}
			seenExit = true
			switch {
			case hasPrefix(b[i:], "true"):
				req.IsExitNode, i = true, i+4
			case hasPrefix(b[i:], "false"):
				req.IsExitNode, i = false, i+5
			default:
				return req, false
			}
		default:
			return req, false
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return req, false
		}
		if b[i] == '}' {
			return req, skipWS(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return req, false
		}
		i = skipWS(b, i+1)
	}
}

// parseSimpleString reads a JSON string of printable ASCII without
// escapes starting at b[i]; it returns the string and the index after it.
func parseSimpleString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", 0, false
		}
	}
	return "", 0, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}
