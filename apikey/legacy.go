package apikey

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// This file is the credential extractor for the FavoritesAPI seed's legacy
// form, "Authorization: Bearer base64(<id>:<secret>)". It is off unless
// [MiddlewareOptions.AcceptLegacyBase64] is set; the Verifier knows nothing
// of it and is reached through [Verifier.VerifySecret].

// errShortSecret is returned by parseLegacy for a secret of the wrong size.
var errShortSecret = errors.New("secret must be 32 or 38 base62 characters")

// legacyEncodings are the base64 alphabets the seed's clients used.
var legacyEncodings = [...]*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}

// maxLegacyLen is the longest base64 legacy credential: "<id>:<secret><check>"
// with a little room for the spaces the seed trimmed.
const maxLegacyLen = 4 * (IDLen + 1 + SecretLen + CheckLen + 8) / 3

// parseLegacyBearer decodes the seed's base64("<id>:<secret>") credential,
// in standard or URL-safe base64, padded or not. It returns the key id, the
// 32-character secret and the 6 check characters if the secret carried
// them ("" otherwise).
func parseLegacyBearer(cred string) (id, secret, check string, err error) {
	if len(cred) > maxLegacyLen {
		return "", "", "", malformed("not an API key")
	}
	for _, enc := range legacyEncodings {
		if b, err := enc.DecodeString(cred); err == nil {
			return parseLegacy(string(b))
		}
	}
	return "", "", "", malformed("not an API key")
}

// parseLegacy parses the FavoritesAPI seed's "<id>:<secret>" pair (already
// base64-decoded). The secret may carry its 6 check characters; since the
// prefix is not part of the pair, the check can only be verified once the
// key's prefix is known. Surrounding spaces are trimmed, as the seed did.
func parseLegacy(pair string) (id, secret, check string, err error) {
	id, secret, ok := strings.Cut(pair, ":")
	if !ok {
		return "", "", "", malformed("legacy credential is not <id>:<secret>")
	}
	id, secret = strings.TrimSpace(id), strings.TrimSpace(secret)
	if len(id) != IDLen || !isBase62(id) {
		return "", "", "", malformed("legacy credential has an invalid id")
	}
	switch len(secret) {
	case SecretLen:
	case SecretLen + CheckLen:
		secret, check = secret[:SecretLen], secret[SecretLen:]
	default:
		return "", "", "", fmt.Errorf("%w: %w", ErrMalformed, errShortSecret)
	}
	if !isBase62(secret) || !isBase62(check) {
		return "", "", "", malformed("character outside the base62 alphabet")
	}
	return id, secret, check, nil
}

// legacyInQuery reports whether a raw query value is a legacy credential.
// '+' is a space in a query but a base64 digit here, so the value is also
// read with path unescaping, which keeps it.
func legacyInQuery(raw string) bool {
	if len(raw) < 4*(IDLen+1+SecretLen)/3 {
		return false
	}
	for _, unescape := range [...]func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
		if val, err := unescape(raw); err == nil {
			if _, _, _, err := parseLegacyBearer(val); err == nil {
				return true
			}
		}
	}
	return false
}
