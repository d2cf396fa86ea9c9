// Package problem writes RFC 9457 "problem details" responses
// (application/problem+json), the error format of every apikit handler.
package problem

import (
	"encoding/json"
	"net/http"
)

// ContentType is the media type of a problem details document.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem details document. Type defaults to
// "about:blank" and Title to the status text when left empty. Detail must
// be safe to show to the client: never put secrets, hashes or SQL in it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Code is a stable, machine-readable identifier of the error, such as
	// "invalid_token" or "rate_limited" (an extension member).
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

// Write sends p as the response. Headers already set on w (such as
// WWW-Authenticate or Retry-After) are kept.
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
