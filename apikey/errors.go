package apikey

import (
	"errors"
	"net/http"
	"strings"

	"github.com/apikit/apikit/problem"
)

// Errors returned by [Parse], [Verifier.Verify], [Manager] and the
// [Middleware]. Check them with [errors.Is]; returned errors may wrap them
// with more detail.
var (
	// ErrMissing means the request carried no API key.
	ErrMissing = errors.New("apikey: no API key in the request")
	// ErrMalformed means the token is not a well-formed API key: wrong
	// length, alphabet, prefix or checksum. No store lookup was made.
	ErrMalformed = errors.New("apikey: malformed API key")
	// ErrInvalid means the key is well formed but unknown, or its secret is
	// wrong. The two are deliberately indistinguishable to the client.
	ErrInvalid = errors.New("apikey: invalid API key")
	// ErrRevoked means the key has been revoked.
	ErrRevoked = errors.New("apikey: API key revoked")
	// ErrExpired means the key's expiry time has passed.
	ErrExpired = errors.New("apikey: API key expired")
	// ErrInactive means the key has been deactivated (it can be activated
	// again, unlike a revoked key).
	ErrInactive = errors.New("apikey: API key inactive")
	// ErrInQuery means an API key was sent in the URL query string, where
	// proxies, logs and browser histories record it. Such requests are
	// refused, never served.
	ErrInQuery = errors.New("apikey: API keys are not accepted in the URL")
	// ErrAmbiguous means the request carried more than one credential
	// (RFC 6750 section 2 allows exactly one).
	ErrAmbiguous = errors.New("apikey: more than one credential in the request")
	// ErrUnavailable means the key could not be verified because the store
	// failed; the request must not be served (fail closed).
	ErrUnavailable = errors.New("apikey: key store unavailable")
	// ErrInsufficientScope means the key lacks a scope the route requires.
	ErrInsufficientScope = errors.New("apikey: insufficient scope")
	// ErrAddressNotAllowed means the key is valid but restricted to
	// networks ([Key.AllowedCIDRs]) that the request's client address is
	// not in, or the address is unknown. It is answered with 403 and a
	// problem document of type [AddressNotAllowedType].
	ErrAddressNotAllowed = errors.New("apikey: client address not allowed for this key")
	// ErrForbidden means the key is valid but its owner may not use the API
	// now, as decided by [MiddlewareOptions.Authorize].
	ErrForbidden = errors.New("apikey: forbidden")
	// ErrThrottled means the client has spent its budget of verifications
	// that reach the store ([MiddlewareOptions.LookupLimiter]); the request
	// was refused with 429 before any store query.
	ErrThrottled = errors.New("apikey: too many key lookups from this client")
	// ErrNotFound means a [Manager] operation named a key that does not
	// exist, or, for the operations ending in Owned, a key of another user
	// (the two are deliberately indistinguishable).
	ErrNotFound = errors.New("apikey: key not found")
	// ErrTooManyKeys means [Manager.Issue] refused a key because its user
	// already holds [ManagerOptions.MaxKeysPerUser] keys.
	ErrTooManyKeys = errors.New("apikey: too many keys")
)

// AddressNotAllowedType is the problem type of a 403 for a key used from
// outside its allowed networks ([ErrAddressNotAllowed]), relative to the
// server, as plan's quota-exceeded type is.
const AddressNotAllowedType = "/problems/address-not-allowed"

// ForbiddenError refuses a valid key with 403 Forbidden. Return one from
// [MiddlewareOptions.Authorize]; Reason is shown to the client, so it must
// not contain secrets. It matches [ErrForbidden] with [errors.Is].
type ForbiddenError struct {
	Reason string
}

func (e *ForbiddenError) Error() string {
	if e.Reason == "" {
		return ErrForbidden.Error()
	}
	return ErrForbidden.Error() + ": " + e.Reason
}

// Is reports whether target is [ErrForbidden].
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// Forbid returns a [ForbiddenError] with the given reason.
func Forbid(reason string) error { return &ForbiddenError{Reason: reason} }

// StatusCode returns the HTTP status a refusal with err is answered with:
// 400, 401, 403, 429, or 503 for an error that is none of this package's
// (a store failure). A nil error is 200.
func StatusCode(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return lookup(err).status
}

// refusal is how one of this package's errors is answered.
type refusal struct {
	err    error
	status int
	code   string // the problem document's code
	detail string // what the client is told: what to do, nothing it did not know
}

// refusals maps each sentinel to its answer: the one place that decides
// how an error is written ([StatusCode], [WriteError], the challenge).
// The first match wins, so wrapped errors that match several (a
// [ForbiddenError] joined with another) take the earlier row.
var refusals = []refusal{
	{ErrMissing, http.StatusUnauthorized, "missing_token", "Send your API key in the Authorization header: \"Authorization: Bearer <key>\"."},
	{ErrMalformed, http.StatusUnauthorized, "invalid_token", "The API key is malformed; check that it was copied completely."},
	{ErrInvalid, http.StatusUnauthorized, "invalid_token", "The API key is not valid."},
	{ErrRevoked, http.StatusUnauthorized, "invalid_token", "The API key has been revoked."},
	{ErrExpired, http.StatusUnauthorized, "invalid_token", "The API key has expired."},
	{ErrInactive, http.StatusUnauthorized, "invalid_token", "The API key is deactivated."},
	{ErrInQuery, http.StatusBadRequest, "invalid_request", "API keys are not accepted in the URL; send the key in the Authorization header. Consider this key exposed and roll it."},
	{ErrAmbiguous, http.StatusBadRequest, "invalid_request", "Send exactly one credential: either Authorization: Bearer or X-API-Key."},
	{ErrInsufficientScope, http.StatusForbidden, "insufficient_scope", "The API key lacks a scope this request requires."},
	{ErrThrottled, http.StatusTooManyRequests, "rate_limited", "Too many API keys from this client had to be looked up; try again later."},
	{ErrAddressNotAllowed, http.StatusForbidden, "address_not_allowed", "This API key may only be used from the networks its owner allowed; this request came from elsewhere."},
	{ErrForbidden, http.StatusForbidden, "forbidden", "This API key may not be used now."},
}

// unavailable answers every error that is not one of this package's.
var unavailable = refusal{ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "The API key could not be verified right now; try again shortly."}

func lookup(err error) refusal {
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r
		}
	}
	return unavailable
}

// challengeFor returns the WWW-Authenticate challenge for err, or "".
func challengeFor(base, scope string, err error) string {
	switch {
	case errors.Is(err, ErrMissing):
		return base
	case errors.Is(err, ErrInQuery), errors.Is(err, ErrAmbiguous):
		return base + `, error="invalid_request"`
	case errors.Is(err, ErrInsufficientScope):
		return base + `, error="insufficient_scope", scope="` + scope + `"`
	case StatusCode(err) == http.StatusUnauthorized:
		return base + `, error="invalid_token"`
	}
	return ""
}

// WriteError writes the default RFC 9457 problem response for an error from
// [Middleware] or [Verifier.Verify]. Its detail tells the client what to do
// without revealing more than the client already knows.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	ref := lookup(err)
	p := problem.New(ref.status, ref.code, ref.detail)
	switch ref.err {
	case ErrThrottled:
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "60")
		}
	case ErrForbidden:
		var fe *ForbiddenError
		if errors.As(err, &fe) && fe.Reason != "" {
			p.Detail = "This API key may not be used now: " + strings.TrimRight(fe.Reason, ".") + "."
		}
	case ErrUnavailable:
		w.Header().Set("Retry-After", "1")
	case ErrAddressNotAllowed:
		p.Type, p.Title = AddressNotAllowedType, "Address not allowed for this key"
	}
	problem.Write(w, p)
}
