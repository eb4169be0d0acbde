package proxies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
)

// MaxBody bounds the management request bodies of these routes.
const MaxBody = 256 << 10

// Register adds the management routes (behind the login).
func (s *Service) Register(a feature.Admin) {
	g := a.Guarded
	g("GET /api/v1/management/proxies", s.list)
	g("POST /api/v1/management/proxies", s.create)
	g("PATCH /api/v1/management/proxies", s.update)
	g("DELETE /api/v1/management/proxies", s.remove)
	g("GET /api/v1/management/proxies/assignments", s.assignments)
	g("PUT /api/v1/management/proxies/assignments", s.assign)
	g("PUT /api/v1/management/proxies/bulk-assign", s.bulkAssign)
	g("GET /api/v1/management/proxies/health", s.healthSums)
	g("GET /api/settings/proxy", s.getSetting)
	g("PUT /api/settings/proxy", s.putSetting)
	g("POST /api/settings/proxy/test", s.test)
}

// storeError maps store errors to HTTP errors.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotFound):
		return httpx.NotFound("%s", err.Error())
	case errors.Is(err, errConflict), errors.Is(err, errInUse):
		return httpx.Conflict("%s", err.Error())
	case errors.Is(err, errFull):
		return httpx.Errorf(http.StatusBadRequest, "limit", "%s", err.Error())
	}
	return err
}

// view is a proxy as shown: its credentials masked.
type view struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Host       string    `json:"host"`
	Port       int       `json:"port"`
	Username   string    `json:"username"` // masked
	Password   string    `json:"password"` // masked
	HasAuth    bool      `json:"hasAuth"`
	Notes      string    `json:"notes"`
	Unreadable bool      `json:"credentialsUnreadable,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

const masked = "********"

func mask(s string) string {
	if s == "" {
		return ""
	}
	r := []rune(s)
	if len(r) <= 2 {
		return masked
	}
	return string(r[:1]) + masked
}

func toView(p Proxy) view {
	v := view{ID: p.ID, Name: p.Name, Type: p.Type, Host: p.Host, Port: p.Port, Username: mask(p.Username),
		HasAuth: p.Username != "" || p.Password != "", Notes: p.Notes, Unreadable: p.Unreadable, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if p.Password != "" {
		v.Password = masked
	}
	return v
}

// maskedURL is p's URL with its credentials masked.
func maskedURL(p Proxy) string {
	u := proxyURL(Proxy{Type: p.Type, Host: p.Host, Port: p.Port})
	if p.Username != "" || p.Password != "" {
		u.User = url.UserPassword(mask(p.Username), masked)
	}
	return u.String()
}

type assignmentView struct {
	Scope     string    `json:"scope"`
	ScopeID   *string   `json:"scopeId"`
	ProxyID   string    `json:"proxyId"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func toAssignment(a Assignment) assignmentView {
	v := assignmentView{Scope: a.Scope, ProxyID: a.ProxyID, UpdatedAt: a.UpdatedAt}
	if a.Scope != ScopeGlobal {
		id := a.ScopeID
		v.ScopeID = &id
	}
	return v
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return httpx.DecodeJSON(w, r, v, MaxBody)
}

// list answers GET …/proxies: all, ?id= one, ?id=&where_used=1 where it
// is assigned.
func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" {
		if q.Get("where_used") != "" {
			return httpx.BadRequest("where_used needs id")
		}
		ps, err := s.store.List(r.Context())
		if err != nil {
			return err
		}
		out := make([]view, 0, len(ps))
		for _, p := range ps {
			out = append(out, toView(p))
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"proxies": out, "total": len(out)})
		return nil
	}
	p, err := s.store.Get(r.Context(), id)
	if err != nil {
		return storeError(err)
	}
	if wu := q.Get("where_used"); wu == "" || wu == "0" || wu == "false" {
		httpx.WriteJSON(w, http.StatusOK, toView(p))
		return nil
	}
	as, err := s.store.Assignments(r.Context(), Filter{ProxyID: id})
	if err != nil {
		return err
	}
	graph := map[string][]string{ScopeProvider: {}, ScopeConnection: {}}
	list := make([]assignmentView, 0, len(as))
	for _, a := range as {
		list = append(list, toAssignment(a))
		if a.Scope != ScopeGlobal {
			graph[a.Scope] = append(graph[a.Scope], a.ScopeID)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"proxy": toView(p), "global": hasGlobal(as),
		"providers": graph[ScopeProvider], "connections": graph[ScopeConnection], "assignments": list, "count": len(list)})
	return nil
}

func hasGlobal(as []Assignment) bool {
	for _, a := range as {
		if a.Scope == ScopeGlobal {
			return true
		}
	}
	return false
}

// input is the body of POST and PATCH; nil fields are absent.
type input struct {
	ID       string  `json:"id"`
	Name     *string `json:"name"`
	Type     *string `json:"type"`
	Host     *string `json:"host"`
	Port     *int    `json:"port"`
	Username *string `json:"username"`
	Password *string `json:"password"`
	Notes    *string `json:"notes"`
}

// apply sets in's fields on p and validates the result.
func (in input) apply(p *Proxy) error {
	if in.Name != nil {
		p.Name = strings.TrimSpace(*in.Name)
	}
	if in.Type != nil {
		p.Type = strings.ToLower(strings.TrimSpace(*in.Type))
	}
	if in.Host != nil {
		p.Host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(*in.Host), "["), "]")
	}
	if in.Port != nil {
		p.Port = *in.Port
	}
	if in.Username != nil {
		p.Username = *in.Username
	}
	if in.Password != nil {
		p.Password = *in.Password
	}
	if in.Notes != nil {
		p.Notes = *in.Notes
	}
	return validate(*p)
}

var hostRe = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$`)

func printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) })
}

// validate checks a proxy's fields.
func validate(p Proxy) error {
	switch {
	case p.Name == "" || len(p.Name) > 100 || !printable(p.Name):
		return httpx.BadRequest(`"name" is required: at most 100 printable characters`)
	case p.Type != "http" && p.Type != "https" && p.Type != "socks5":
		return httpx.BadRequest(`"type" must be http, https or socks5`)
	case p.Host == "" || len(p.Host) > 253 || (net.ParseIP(p.Host) == nil && !hostRe.MatchString(p.Host)):
		return httpx.BadRequest(`"host" must be a host name or an IP address (no scheme, port or path)`)
	case p.Port < 1 || p.Port > 65535:
		return httpx.BadRequest(`"port" must be between 1 and 65535`)
	case len(p.Username) > 255 || !printable(p.Username):
		return httpx.BadRequest(`"username" must be at most 255 printable characters`)
	case len(p.Password) > 1024 || !printable(p.Password):
		return httpx.BadRequest(`"password" must be at most 1024 printable characters`)
	case p.Type == "socks5" && (len(p.Username) > 255 || len(p.Password) > 255):
		return httpx.BadRequest(`SOCKS5 credentials are at most 255 bytes each`)
	case p.Password != "" && p.Username == "":
		return httpx.BadRequest(`"password" needs "username"`)
	case len(p.Notes) > 2000:
		return httpx.BadRequest(`"notes" must be at most 2000 characters`)
	}
	return nil
}

// changed installs a write on this replica and answers with body.
func (s *Service) changed(w http.ResponseWriter, r *http.Request, status int, body any) error {
	if err := s.opt.Reload(r.Context()); err != nil {
		return err
	}
	httpx.WriteJSON(w, status, body)
	return nil
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	var in input
	if err := decode(w, r, &in); err != nil {
		return err
	}
	p := Proxy{ID: auth.RandomToken("prx_", 9)}
	if err := in.apply(&p); err != nil {
		return err
	}
	if err := s.store.Create(r.Context(), p, MaxProxies); err != nil {
		return storeError(err)
	}
	p, err := s.store.Get(r.Context(), p.ID)
	if err != nil {
		return err
	}
	return s.changed(w, r, http.StatusCreated, toView(p))
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	var in input
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.ID == "" {
		in.ID = r.URL.Query().Get("id")
	}
	if in.ID == "" {
		return httpx.BadRequest(`"id" is required`)
	}
	p, err := s.store.Get(r.Context(), in.ID)
	if err != nil {
		return storeError(err)
	}
	if p.Unreadable && (in.Username == nil || in.Password == nil) {
		return httpx.BadRequest("the proxy's credentials cannot be read (master key changed): give username and password again")
	}
	if err := in.apply(&p); err != nil {
		return err
	}
	p.Unreadable = false
	if err := s.store.Update(r.Context(), p); err != nil {
		return storeError(err)
	}
	if p, err = s.store.Get(r.Context(), p.ID); err != nil {
		return err
	}
	return s.changed(w, r, http.StatusOK, toView(p))
}

func (s *Service) remove(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" {
		return httpx.BadRequest("id is required")
	}
	force := q.Get("force") == "1" || q.Get("force") == "true"
	n, err := s.store.Delete(r.Context(), id, force)
	if err != nil {
		return storeError(err)
	}
	return s.changed(w, r, http.StatusOK, map[string]any{"deleted": id, "detached": n})
}

// scopeID validates a scope and its id.
func scopeID(scope, id string) error {
	switch scope {
	case ScopeGlobal:
		if id != "" {
			return httpx.BadRequest(`scope "global" takes no "scopeId"`)
		}
	case ScopeProvider, ScopeConnection:
		if scope == ScopeConnection && strings.HasPrefix(id, "config#") {
			return httpx.BadRequest(`a credential declared in the configuration file is no connection of its own here: assign its provider`)
		}
		if !cleanID(id, 128) {
			return httpx.BadRequest(`scope %q needs "scopeId": a provider id or a connection (credential) id of at most 128 characters`, scope)
		}
	default:
		return httpx.BadRequest(`"scope" must be global, provider or connection`)
	}
	return nil
}

// optionalID reads a JSON string or null ("" for null or absent).
func optionalID(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", nil
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil {
		return "", httpx.BadRequest("%q must be a string or null", field)
	}
	if id != "" && !cleanID(id, 64) {
		return "", httpx.BadRequest("%q is not a proxy id", field)
	}
	return id, nil
}

func (s *Service) assignments(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if conn := q.Get("resolve_connection_id"); conn != "" {
		return s.resolve(w, r, conn)
	}
	f := Filter{ProxyID: q.Get("proxy_id"), Scope: q.Get("scope"), ScopeID: q.Get("scope_id")}
	if f.Scope != "" && f.Scope != ScopeGlobal && f.Scope != ScopeProvider && f.Scope != ScopeConnection {
		return httpx.BadRequest(`"scope" must be global, provider or connection`)
	}
	as, err := s.store.Assignments(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]assignmentView, 0, len(as))
	for _, a := range as {
		out = append(out, toAssignment(a))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"assignments": out, "total": len(out)})
	return nil
}

// resolve answers which proxy a connection's calls go through.
func (s *Service) resolve(w http.ResponseWriter, r *http.Request, conn string) error {
	if !cleanID(conn, 128) {
		return httpx.BadRequest("resolve_connection_id is not a connection id")
	}
	provider, known := s.opt.ProviderOf(conn)
	as, err := s.store.Assignments(r.Context(), Filter{})
	if err != nil {
		return err
	}
	scope, id := newChoice(as).resolve(provider, conn)
	out := map[string]any{"connectionId": conn, "providerId": nil, "known": known, "scope": nil, "proxyId": nil, "proxy": nil}
	if known {
		out["providerId"] = provider
	}
	if id != "" {
		out["scope"], out["proxyId"] = scope, id
		if p, err := s.store.Get(r.Context(), id); err == nil {
			out["proxy"] = toView(p)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) assign(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Scope   string          `json:"scope"`
		ScopeID string          `json:"scopeId"`
		ProxyID json.RawMessage `json:"proxyId"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if err := scopeID(in.Scope, in.ScopeID); err != nil {
		return err
	}
	pid, err := optionalID(in.ProxyID, "proxyId")
	if err != nil {
		return err
	}
	if err := s.store.Assign(r.Context(), in.Scope, []string{in.ScopeID}, pid, MaxAssignments); err != nil {
		return storeError(err)
	}
	out := map[string]any{"scope": in.Scope, "scopeId": nil, "proxyId": nil, "cleared": pid == ""}
	if in.Scope != ScopeGlobal {
		out["scopeId"] = in.ScopeID
	}
	if pid != "" {
		out["proxyId"] = pid
	}
	return s.changed(w, r, http.StatusOK, out)
}

func (s *Service) bulkAssign(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Scope    string          `json:"scope"`
		ScopeIDs []string        `json:"scopeIds"`
		ProxyID  json.RawMessage `json:"proxyId"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Scope != ScopeProvider && in.Scope != ScopeConnection {
		return httpx.BadRequest(`"scope" must be provider or connection (global has one assignment: PUT …/assignments)`)
	}
	if len(in.ScopeIDs) == 0 || len(in.ScopeIDs) > MaxBulk {
		return httpx.BadRequest(`"scopeIds" must list 1 to %d ids`, MaxBulk)
	}
	seen := map[string]bool{}
	var ids []string
	for _, id := range in.ScopeIDs {
		if err := scopeID(in.Scope, id); err != nil {
			return err
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	pid, err := optionalID(in.ProxyID, "proxyId")
	if err != nil {
		return err
	}
	if err := s.store.Assign(r.Context(), in.Scope, ids, pid, MaxAssignments); err != nil {
		return storeError(err)
	}
	var proxy any
	if pid != "" {
		proxy = pid
	}
	return s.changed(w, r, http.StatusOK, map[string]any{"scope": in.Scope, "scopeIds": ids, "proxyId": proxy, "updated": len(ids)})
}

func (s *Service) healthSums(w http.ResponseWriter, r *http.Request) error {
	hours := 24
	if v := r.URL.Query().Get("hours"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > int(HealthRetention/time.Hour) {
			return httpx.BadRequest("hours must be between 1 and %d", int(HealthRetention/time.Hour))
		}
		hours = n
	}
	// This replica's sums so far count too.
	s.flush(r.Context())
	from := s.clock.Now().Unix()/3600 - int64(hours) + 1
	sums, err := s.store.Health(r.Context(), from)
	if err != nil {
		return err
	}
	ps, err := s.store.List(r.Context())
	if err != nil {
		return err
	}
	type row struct {
		ProxyID      string   `json:"proxyId"`
		Name         string   `json:"name"`
		Success      int64    `json:"success"`
		Failure      int64    `json:"failure"`
		Total        int64    `json:"total"`
		SuccessRate  *float64 `json:"successRate"`
		AvgLatencyMS *int64   `json:"avgLatencyMs"`
	}
	out := make([]row, 0, len(ps))
	for _, p := range ps {
		h := sums[p.ID]
		rw := row{ProxyID: p.ID, Name: p.Name, Success: h.OK, Failure: h.Failed, Total: h.OK + h.Failed}
		if rw.Total > 0 {
			rate := float64(h.OK) / float64(rw.Total)
			rw.SuccessRate = &rate
		}
		if h.OK > 0 {
			avg := h.LatencyMS / h.OK
			rw.AvgLatencyMS = &avg
		}
		out = append(out, rw)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"hours": hours, "proxies": out})
	return nil
}

// SettingName is the registry name of the proxy PUT /api/settings/proxy
// creates from a URL.
const SettingName = "global"

// global returns the globally assigned proxy, if any.
func (s *Service) global(ctx context.Context) (Proxy, bool, error) {
	as, err := s.store.Assignments(ctx, Filter{Scope: ScopeGlobal})
	if err != nil || len(as) == 0 {
		return Proxy{}, false, err
	}
	p, err := s.store.Get(ctx, as[0].ProxyID)
	if errors.Is(err, errNotFound) {
		return Proxy{}, false, nil
	}
	return p, err == nil, err
}

func (s *Service) settingAnswer(ctx context.Context) (map[string]any, error) {
	p, ok, err := s.global(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return map[string]any{"enabled": false, "proxyId": nil, "proxy": nil, "url": ""}, nil
	}
	return map[string]any{"enabled": true, "proxyId": p.ID, "proxy": toView(p), "url": maskedURL(p)}, nil
}

func (s *Service) getSetting(w http.ResponseWriter, r *http.Request) error {
	out, err := s.settingAnswer(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// parseURL reads a proxy URL (scheme://[user:pass@]host:port).
func parseURL(raw string) (Proxy, error) {
	bad := httpx.BadRequest(`"url" must be http://, https:// or socks5:// [user:password@]host:port`)
	if len(raw) > 2048 {
		return Proxy{}, bad
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Proxy{}, bad
	}
	p := Proxy{Type: strings.ToLower(u.Scheme), Host: u.Hostname()}
	if p.Type == "socks5h" {
		p.Type = "socks5"
	}
	port := u.Port()
	if port == "" {
		return Proxy{}, httpx.BadRequest(`"url" must name the proxy's port`)
	}
	if p.Port, err = strconv.Atoi(port); err != nil {
		return Proxy{}, bad
	}
	if u.User != nil {
		p.Username = u.User.Username()
		p.Password, _ = u.User.Password()
	}
	return p, nil
}

// putSetting sets the global proxy: {"proxyId": id|null} assigns a
// registry proxy, {"url": "…"} creates or updates the registry proxy
// named SettingName and assigns it, {"url": ""} or {"proxyId": null}
// clears the global assignment.
func (s *Service) putSetting(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		ProxyID json.RawMessage `json:"proxyId"`
		URL     *string         `json:"url"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	ctx := r.Context()
	switch {
	case in.URL != nil && len(in.ProxyID) > 0:
		return httpx.BadRequest(`give "proxyId" or "url", not both`)
	case len(in.ProxyID) > 0:
		pid, err := optionalID(in.ProxyID, "proxyId")
		if err != nil {
			return err
		}
		if err := s.store.Assign(ctx, ScopeGlobal, []string{""}, pid, MaxAssignments); err != nil {
			return storeError(err)
		}
	case in.URL != nil && strings.TrimSpace(*in.URL) == "":
		if err := s.store.Assign(ctx, ScopeGlobal, []string{""}, "", MaxAssignments); err != nil {
			return storeError(err)
		}
	case in.URL != nil:
		p, err := parseURL(*in.URL)
		if err != nil {
			return err
		}
		p.Name = SettingName
		p.Notes = "set through /api/settings/proxy"
		if err := validate(p); err != nil {
			return err
		}
		ps, err := s.store.List(ctx)
		if err != nil {
			return err
		}
		p.ID = ""
		for _, q := range ps {
			if q.Name == SettingName {
				p.ID, p.Notes = q.ID, q.Notes
			}
		}
		if p.ID == "" {
			p.ID = auth.RandomToken("prx_", 9)
			err = s.store.Create(ctx, p, MaxProxies)
		} else {
			err = s.store.Update(ctx, p)
		}
		if err != nil {
			return storeError(err)
		}
		if err := s.store.Assign(ctx, ScopeGlobal, []string{""}, p.ID, MaxAssignments); err != nil {
			return storeError(err)
		}
	default:
		return httpx.BadRequest(`give "proxyId" (a registry proxy, or null to clear) or "url"`)
	}
	if err := s.opt.Reload(ctx); err != nil {
		return err
	}
	out, err := s.settingAnswer(ctx)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// DefaultTestTarget is what POST /api/settings/proxy/test fetches when
// given no target.
const DefaultTestTarget = "https://www.gstatic.com/generate_204"

// test connects through a proxy (by id, by URL, or the global one) to a
// target and reports whether an answer came, in at most TestTimeout.
func (s *Service) test(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		ProxyID   string `json:"proxyId"`
		URL       string `json:"url"`
		Target    string `json:"target"`
		TimeoutMS int    `json:"timeoutMs"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	var p Proxy
	var err error
	switch {
	case in.ProxyID != "" && in.URL != "":
		return httpx.BadRequest(`give "proxyId" or "url", not both`)
	case in.ProxyID != "":
		if p, err = s.store.Get(r.Context(), in.ProxyID); err != nil {
			return storeError(err)
		}
		if p.Unreadable {
			return httpx.BadRequest("the proxy's credentials cannot be read (master key changed): set them again")
		}
	case in.URL != "":
		if p, err = parseURL(in.URL); err != nil {
			return err
		}
		p.Name = "test"
		if err := validate(p); err != nil {
			return err
		}
	default:
		var ok bool
		if p, ok, err = s.global(r.Context()); err != nil {
			return err
		} else if !ok {
			return httpx.BadRequest(`give "proxyId" or "url" (no global proxy is set)`)
		}
	}
	target := in.Target
	if target == "" {
		target = DefaultTestTarget
	}
	tu, err := url.Parse(target)
	if err != nil || (tu.Scheme != "http" && tu.Scheme != "https") || tu.Host == "" || len(target) > 2048 {
		return httpx.BadRequest(`"target" must be an http(s) URL`)
	}
	timeout := TestTimeout
	if in.TimeoutMS != 0 {
		if in.TimeoutMS < 100 || in.TimeoutMS > int(TestTimeout/time.Millisecond) {
			return httpx.BadRequest(`"timeoutMs" must be between 100 and %d`, int(TestTimeout/time.Millisecond))
		}
		timeout = time.Duration(in.TimeoutMS) * time.Millisecond
	}
	httpx.WriteJSON(w, http.StatusOK, s.probe(r.Context(), p, tu.String(), timeout))
	return nil
}

// probe sends one GET to target through p, within timeout.
func (s *Service) probe(ctx context.Context, p Proxy, target string, timeout time.Duration) map[string]any {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var tr *http.Transport
	hc := upstreamhttp.Rebase(s.opt.HTTP, func(b http.RoundTripper) http.RoundTripper {
		tr = proxied(b, proxyURL(p))
		tr.DisableKeepAlives = true
		return tr
	})
	defer tr.CloseIdleConnections()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	out := map[string]any{"ok": false, "proxy": maskedURL(p), "target": target, "timeoutMs": timeout.Milliseconds()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		out["error"] = "the target is not a valid URL"
		return out
	}
	start := s.clock.Now()
	resp, err := hc.Do(req)
	out["latencyMs"] = s.clock.Now().Sub(start).Milliseconds()
	if err != nil {
		out["error"] = describe(err, p, ctx.Err() != nil)
		return out
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	out["status"] = resp.StatusCode
	if resp.StatusCode == http.StatusProxyAuthRequired {
		out["error"] = "the proxy refused the credentials (407)"
		return out
	}
	out["ok"] = true
	return out
}

// describe says why a call through p failed, without its credentials.
func describe(err error, p Proxy, timedOut bool) string {
	if timedOut {
		return "timed out"
	}
	msg := upstreamhttp.Describe(err)
	if msg == "transport error" {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg = err.Error()
		for _, secret := range []string{p.Password, url.QueryEscape(p.Password), url.PathEscape(p.Password)} {
			if secret != "" {
				msg = strings.ReplaceAll(msg, secret, masked)
			}
		}
		if len(msg) > 300 {
			msg = msg[:300]
		}
	}
	return fmt.Sprintf("through the %s proxy: %s", p.Type, msg)
}
