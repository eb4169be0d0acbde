package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/edge/proto/policy"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/httpx"
)

func policyWire(st control.StoredPolicy) wire.Policy {
	out := wire.Policy{Version: st.Version, Policy: json.RawMessage("null")}
	if st.Document != "" {
		out.Policy = json.RawMessage(st.Document)
	}
	out.UpdatedAt = tptr(st.UpdatedAt)
	return out
}

// getPolicy answers GET /api/v2/virtual-networks/{vn}/policy.
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	st, err := s.svc.Policy(r.Context(), p, r.PathValue("vn"))
	if err != nil {
		return toHTTP(err)
	}
	w.Header().Set("ETag", `"`+strconv.FormatInt(st.Version, 10)+`"`)
	return ok(w, http.StatusOK, policyWire(st))
}

// putPolicy answers PUT /api/v2/virtual-networks/{vn}/policy: the body is
// the policy document; If-Match with the ETag of a GET makes it apply
// only over that version (412 otherwise).
func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	body, err := httpx.ReadBody(w, r, policy.MaxSize)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return httpx.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the policy is a JSON document (Content-Type: application/json)")
	}
	ifVersion := int64(-1)
	if m := r.Header.Get("If-Match"); m != "" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(m, "W/"), `"`), 10, 64)
		if err != nil || v < 0 {
			return httpx.Errorf(http.StatusBadRequest, "invalid_request", "If-Match must be the ETag of GET …/policy")
		}
		ifVersion = v
	}
	st, err := s.svc.SetPolicy(r.Context(), p, r.PathValue("vn"), bytes.TrimSpace(body), ifVersion)
	if err != nil {
		if ifVersion >= 0 && control.KindOf(err) == control.KindConflict {
			return httpx.Errorf(http.StatusPreconditionFailed, "precondition_failed", "%s", err.Error())
		}
		return toHTTP(err)
	}
	w.Header().Set("ETag", `"`+strconv.FormatInt(st.Version, 10)+`"`)
	return ok(w, http.StatusOK, policyWire(st))
}

// checkPolicy answers POST /api/v2/virtual-networks/{vn}/policy/check: a
// dry run of the stored policy, or of the one in the body, for one
// connection.
func (s *Server) checkPolicy(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	body, err := httpx.ReadBody(w, r, policy.MaxSize+4<<10)
	if err != nil {
		return err
	}
	var req wire.PolicyCheckRequest
	if err := httpx.DecodeJSONBytes(body, &req, r.Header.Get("Content-Type")); err != nil {
		return err
	}
	var doc []byte
	if len(req.Policy) > 0 {
		doc = req.Policy
	}
	d, err := s.svc.CheckPolicy(r.Context(), p, r.PathValue("vn"), doc, req.Src, req.Dst, req.Proto, req.Port)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, wire.PolicyCheckResponse{Allowed: d.Allowed, Src: d.Src.String(), Dst: d.Dst.String()})
}
