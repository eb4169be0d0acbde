package control

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
)

// ServerInput is the body of a user-server create or update. PublicKey
// (the nucleus's static key) is optional; an update without one keeps the
// key published before.
type ServerInput struct {
	Name, Host, Country, PublicKey string
}

func (in ServerInput) clean() (ServerInput, error) {
	name, err := cleanName("server", in.Name, 128)
	if err != nil {
		return in, err
	}
	host, err := cleanHostPort(in.Host)
	if err != nil {
		return in, err
	}
	country := strings.ToUpper(strings.TrimSpace(in.Country))
	if !isCountry(country) {
		return in, errorf(KindInvalid, "country %q is not an ISO 3166-1 alpha-2 code", in.Country)
	}
	key := ""
	if strings.TrimSpace(in.PublicKey) != "" {
		if key, err = ParsePublicKey(in.PublicKey); err != nil {
			return in, err
		}
	}
	return ServerInput{Name: name, Host: host, Country: country, PublicKey: key}, nil
}

// cleanHostPort validates HOST:PORT where HOST is a DNS name or an IP
// address (IPv6 in brackets) and PORT is 1-65535.
func cleanHostPort(v string) (string, error) {
	v = strings.TrimSpace(v)
	h, port, err := net.SplitHostPort(v)
	if err != nil || h == "" {
		return "", errorf(KindInvalid, "host %q must be HOST:PORT, e.g. nucleus.example.com:51820", v)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", errorf(KindInvalid, "host %q has an invalid port", v)
	}
	if net.ParseIP(h) == nil && !validHostname(h) {
		return "", errorf(KindInvalid, "host %q is neither a hostname nor an IP address", v)
	}
	return v, nil
}

func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (s *Service) userServer(ctx context.Context, p Principal, id string) (UserServer, error) {
	v, err := s.store.UserServer(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return UserServer{}, errorf(KindNotFound, "user server %s not found", id)
	}
	if err != nil {
		return UserServer{}, err
	}
	if v.UserID != p.UserID {
		return UserServer{}, errorf(KindForbidden, "user server %s belongs to another user", id)
	}
	return v, nil
}

// CreateUserServer registers a user-hosted nucleus.
func (s *Service) CreateUserServer(ctx context.Context, p Principal, in ServerInput) (UserServer, error) {
	in, err := in.clean()
	if err != nil {
		return UserServer{}, err
	}
	now := s.now()
	v := UserServer{ID: newID("srv_"), UserID: p.UserID, Name: in.Name, Host: in.Host, Country: in.Country, PublicKey: in.PublicKey,
		CreatedAt: now, UpdatedAt: now}
	return v, s.store.CreateUserServer(ctx, v)
}

// ListUserServers returns p's servers.
func (s *Service) ListUserServers(ctx context.Context, p Principal) ([]UserServer, error) {
	return s.store.ListUserServers(ctx, p.UserID)
}

// GetUserServer returns one of p's servers.
func (s *Service) GetUserServer(ctx context.Context, p Principal, id string) (UserServer, error) {
	return s.userServer(ctx, p, id)
}

// UpdateUserServer replaces a server's name, host and country, and its
// public key when the input has one.
func (s *Service) UpdateUserServer(ctx context.Context, p Principal, id string, in ServerInput) (UserServer, error) {
	v, err := s.userServer(ctx, p, id)
	if err != nil {
		return UserServer{}, err
	}
	if in, err = in.clean(); err != nil {
		return UserServer{}, err
	}
	v.Name, v.Host, v.Country, v.UpdatedAt = in.Name, in.Host, in.Country, s.now()
	if in.PublicKey != "" {
		v.PublicKey = in.PublicKey
	}
	return v, s.store.UpdateUserServer(ctx, v)
}

// DeleteUserServer deletes one of p's servers; networks using it fall back
// to the built-in nucleus.
func (s *Service) DeleteUserServer(ctx context.Context, p Principal, id string) error {
	if _, err := s.userServer(ctx, p, id); err != nil {
		return err
	}
	return s.store.DeleteUserServer(ctx, id)
}

// isCountry reports whether c is an assigned ISO 3166-1 alpha-2 code.
func isCountry(c string) bool {
	if len(c) != 2 {
		return false
	}
	return strings.Contains(countryCodes, " "+c+" ")
}

const countryCodes = " AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
	"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
	"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP " +
	"KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT " +
	"MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
	"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG " +
	"UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW "
