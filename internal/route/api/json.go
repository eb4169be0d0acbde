package api

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
)

func writeJSON(w http.ResponseWriter, status int, v any) { httpx.WriteJSON(w, status, v) }
