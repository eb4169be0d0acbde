// Command barehb is the benchmark baseline for heartbeats: a bare net/http
// server that decodes the same request body and returns the same JSON as
// POST /api/v2/devices/heartbeat, with no authentication, lookup or state.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "listen address")
	flag.Parse()
	http.HandleFunc("POST /api/v2/devices/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			HardwareID string `json:"hardware_id"`
			IsExitNode bool   `json:"is_exit_node"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.HardwareID == "" {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		resp := map[string]any{
			"message":    "Heartbeat received",
			"last_seen":  time.Now().UTC().Truncate(time.Second).Format(time.RFC3339),
			"exit_nodes": map[string]string{},
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	fmt.Fprintln(os.Stderr, "barehb listening on", *addr)
	if err := http.ListenAndServe(*addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
