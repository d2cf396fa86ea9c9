package magiclink_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apikit/apikit/magiclink"
)

// Every sentinel maps, through the one table, to its status and code, also
// when wrapped; PublicMessage never shows a wrapped system error.
func TestErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{magiclink.ErrCrossOrigin, 403, "cross_origin"},
		{magiclink.ErrMethodNotAllowed, 405, "method_not_allowed"},
		{magiclink.ErrNotFound, 404, "not_found"},
		{magiclink.ErrBadRequest, 400, "invalid_body"},
		{magiclink.ErrInvalidEmail, 400, "invalid_email"},
		{magiclink.ErrRateLimited, 429, "rate_limited"},
		{magiclink.ErrInvalidToken, 400, "invalid_token"},
		{magiclink.ErrUnauthenticated, 401, "unauthenticated"},
		{magiclink.ErrEmailTaken, 409, "email_taken"},
		{magiclink.ErrEmailChangeUnsupported, 501, "email_change_unsupported"},
		{magiclink.ErrQueueFull, 503, "unavailable"},
		{magiclink.ErrClosed, 503, "unavailable"},
		{magiclink.ErrUnavailable, 503, "unavailable"},
		{errors.New("something else"), 500, "error"},
	} {
		wrapped := fmt.Errorf("%w: dial tcp 10.0.0.7:5432: secret detail", tc.err)
		for _, err := range []error{tc.err, wrapped} {
			if got := magiclink.StatusCode(err); got != tc.status {
				t.Errorf("StatusCode(%v) = %d, want %d", err, got, tc.status)
			}
			if got := magiclink.ErrorCode(err); got != tc.code {
				t.Errorf("ErrorCode(%v) = %q, want %q", err, got, tc.code)
			}
			if msg := magiclink.PublicMessage(err); msg == "" || strings.Contains(msg, "10.0.0.7") {
				t.Errorf("PublicMessage(%v) = %q", err, msg)
			}
		}
	}
	if got := magiclink.StatusCode(nil); got != http.StatusOK {
		t.Errorf("StatusCode(nil) = %d", got)
	}
}

// The default ErrorHandler answers a bare sentinel with its row of the
// table too.
func TestWriteErrorUsesTable(t *testing.T) {
	h := newHarness(t, setup{})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Accept", "application/json")
	h.svc.WriteError(rec, req, fmt.Errorf("%w: pq: connection refused", magiclink.ErrUnavailable))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"code":"unavailable"`) || strings.Contains(rec.Body.String(), "pq") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
