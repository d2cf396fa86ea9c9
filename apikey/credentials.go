package apikey

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// MaxCredentialLen bounds the length of a credential the [Middleware] will
// look at; longer ones are malformed without further work.
const MaxCredentialLen = 256

// presented is a credential read from a request: a canonical token, or a
// legacy id and secret (token.Prefix empty) with optional check characters.
type presented struct {
	id     string
	token  Token
	legacy bool
	check  string
}

// verify checks the credential as the Verifier's public API does, with the
// client address found by o for keys restricted to networks.
func (c presented) verify(ctx context.Context, v *Verifier, o origin) (Principal, error) {
	if !c.legacy {
		return v.verifyToken(ctx, c.token, o)
	}
	p, err := v.verifySecret(ctx, c.id, c.token.secret, o)
	if err == nil && c.check != "" && !checksumMatches(p.Prefix+"_"+c.id+"_"+c.token.secret, c.check) {
		return Principal{}, malformed("checksum mismatch")
	}
	return p, err
}

// extract reads the one credential of r and parses it, without any store
// lookup.
func extract(v *Verifier, r *http.Request, legacy bool) (presented, error) {
	cred, bearer, err := credential(r)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			v.stats.malformed.Add(1)
		}
		return presented{}, err
	}
	t, perr := Parse(cred)
	if perr == nil {
		return presented{id: t.ID, token: t}, nil
	}
	if !legacy || !bearer { // the legacy form is only ever sent as a bearer token
		v.stats.malformed.Add(1)
		return presented{}, perr
	}
	id, secret, check, err := parseLegacyBearer(cred)
	if err != nil {
		v.stats.malformed.Add(1)
		if strings.IndexByte(cred, '_') >= 0 {
			return presented{}, perr // most likely a mistyped token
		}
		return presented{}, err
	}
	return presented{id: id, token: Token{ID: id, secret: secret}, legacy: true, check: check}, nil
}

// queryKeyNames are query parameters that conventionally carry credentials;
// their presence alone refuses the request.
var queryKeyNames = [...]string{"access_token", "api_key", "apikey", "api-key", "x-api-key"}

// credential returns the single credential carried by r, and whether it came
// from the Authorization header.
func credential(r *http.Request) (cred string, bearer bool, err error) {
	if r.URL != nil && r.URL.RawQuery != "" && keyInQuery(r.URL.RawQuery) {
		return "", false, ErrInQuery
	}
	var auth string
	switch values := r.Header.Values("Authorization"); len(values) {
	case 0:
	case 1:
		scheme, rest, _ := strings.Cut(values[0], " ")
		if strings.EqualFold(scheme, "Bearer") {
			auth, bearer = strings.TrimSpace(rest), true
		}
	default:
		return "", false, ErrAmbiguous
	}
	keys := r.Header["X-Api-Key"] // X-API-Key, canonical: Values would canonicalise the name on every request
	switch {
	case len(keys) > 1 || len(keys) == 1 && bearer:
		return "", false, ErrAmbiguous
	case len(keys) == 1:
		cred, err = nonEmpty(strings.TrimSpace(keys[0]))
		return cred, false, err
	case bearer:
		cred, err = nonEmpty(auth)
		return cred, true, err
	}
	return "", false, ErrMissing
}

func nonEmpty(cred string) (string, error) {
	if cred == "" || len(cred) > MaxCredentialLen {
		return "", malformed("empty or oversized credential")
	}
	return cred, nil
}

// keyInQuery reports whether the raw query names a credential parameter or
// has a value that is a well-formed token, canonical or legacy.
func keyInQuery(raw string) bool {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		name, value, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			for _, k := range queryKeyNames {
				if strings.EqualFold(n, k) {
					return true
				}
			}
		}
		if len(value) > tailLen {
			if val, err := url.QueryUnescape(value); err == nil {
				if _, err := Parse(val); err == nil {
					return true
				}
			}
		}
		if legacyInQuery(value) {
			return true
		}
	}
	return false
}
