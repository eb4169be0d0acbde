package api

import (
	"encoding/json"
	"testing"

	"github.com/omniedge/omni/internal/edge/proto/wire"
)

var heartbeatSeeds = []string{
	`{"hardware_id":"unique-persistent-uuid","is_exit_node":false}`,
	`{"is_exit_node":true,"hardware_id":"hw-1"}`,
	` { "hardware_uuid" : "hw-2" , "is_exit_node" : true } `,
	`{"hardware_id":"a","hardware_uuid":"b"}`,
	`{}`, `{"hardware_id":"x"}`,
	`{"hardware_id":"x","hardware_id":"y"}`,
	`{"hardware_id":"x\u0041"}`, `{"hardware_id":"é"}`, `{"hardware_id":5}`,
	`{"hardware_id":"x","extra":1}`, `{"hardware_id":"x",}`, `{"hardware_id":"x"} {}`,
	`{"is_exit_node":tru}`, `{"is_exit_node":null}`, `[]`, ``, `{`, `{"hardware_id":"x"`,
}

func TestParseHeartbeatFastPath(t *testing.T) {
	cases := map[string]wire.HeartbeatRequest{
		heartbeatSeeds[0]: {HardwareID: "unique-persistent-uuid"},
		heartbeatSeeds[1]: {HardwareID: "hw-1", IsExitNode: true},
		heartbeatSeeds[2]: {HardwareUUID: "hw-2", IsExitNode: true},
	}
	for in, want := range cases {
		got, ok := parseHeartbeat([]byte(in))
		if !ok || got != want {
			t.Errorf("%s: got %+v ok=%v, want %+v", in, got, ok, want)
		}
	}
	for _, in := range []string{`{"hardware_id":"x","extra":1}`, `{"hardware_id":"x\u0041"}`, `{"hardware_id":"x","hardware_id":"y"}`, `{"hardware_id":"x"} {}`} {
		if _, ok := parseHeartbeat([]byte(in)); ok {
			t.Errorf("%s: fast path accepted what it must leave to encoding/json", in)
		}
	}
}

// FuzzParseHeartbeat: whenever the fast path accepts a body, encoding/json
// accepts it too and decodes the same values.
func FuzzParseHeartbeat(f *testing.F) {
	for _, s := range heartbeatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseHeartbeat(b)
		if !ok {
			return
		}
		var want wire.HeartbeatRequest
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses: %v", b, err)
		}
		if got != want {
			t.Fatalf("%q: fast %+v, encoding/json %+v", b, got, want)
		}
	})
}
