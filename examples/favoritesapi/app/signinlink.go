package app

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// sendSignInLink is billing's SendSignInLink: after a completed checkout it
// asks magiclink for a sign-in link to the address exactly as the login
// form does, through magiclink's per-address limiter and mail queue.
// (Interim: until magiclink offers a direct call for it.)
func (s *Server) sendSignInLink(ctx context.Context, email string) error {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/login",
		strings.NewReader(url.Values{"email": {email}}.Encode()))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "application/json")
	w := &statusOnly{header: http.Header{}}
	s.login.RequestHandler().ServeHTTP(w, r)
	if w.status != http.StatusAccepted && w.status != http.StatusOK {
		return fmt.Errorf("magiclink refused the sign-in link: status %d", w.status)
	}
	return nil
}

// statusOnly is a ResponseWriter that keeps only the status.
type statusOnly struct {
	header http.Header
	status int
}

func (w *statusOnly) Header() http.Header { return w.header }
func (w *statusOnly) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}
func (w *statusOnly) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
