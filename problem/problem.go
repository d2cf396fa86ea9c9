// Package problem writes RFC 9457 "problem details" documents
// (application/problem+json), the error format of every apikit handler:
// apikey, magiclink, ratelimit and billing refuse requests with them, and
// an application can answer its own errors in the same shape.
//
// A document is a [Problem]; [New] fills in the three fields that matter
// and [Write] sends it, keeping the headers already set (such as
// Retry-After or WWW-Authenticate). The package has no state and depends
// only on the standard library.
package problem

import (
	"encoding/json"
	"net/http"
)

// ContentType is the media type of a problem details document.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem details document. [Write] sets Type to
// "about:blank" and Title to the status text when they are empty, and
// Status to 500 when it is zero. Detail must be safe to show to the
// client: never put secrets, hashes, addresses or SQL in it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Code is a stable, machine-readable identifier of the error, such as
	// "invalid_token" or "rate_limited" (an extension member). Clients
	// branch on it rather than on Detail, which is prose.
	Code string `json:"code,omitempty"`
	// InvalidParams names the request fields that failed validation (an
	// extension member, as in RFC 9457's example).
	InvalidParams []InvalidParam `json:"invalid-params,omitempty"`
}

// InvalidParam names one invalid request field and why it is invalid.
type InvalidParam struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// New returns a Problem with the given status, code and detail.
func New(status int, code, detail string) Problem {
	return Problem{Status: status, Code: code, Detail: detail}
}

// Write sends p as the response, with the headers Content-Type:
// application/problem+json, X-Content-Type-Options: nosniff and
// Cache-Control: no-store. Headers already set on w (such as
// WWW-Authenticate or Retry-After) are kept. It must be called before
// anything else is written to w.
func Write(w http.ResponseWriter, p Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
