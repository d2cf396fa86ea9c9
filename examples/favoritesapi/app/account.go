package app

import (
	"errors"
	"net/http"
	"strings"

	"github.com/apikit/apikit/magiclink"
)

// accountPage is what /app/account shows: the user's address, the form
// to change it, and the form that deletes the account.
type accountPage struct {
	Email  string
	Notice string
	Error  string
}

func (s *Server) account(r *http.Request) accountPage {
	u, _ := magiclink.UserFrom(r.Context())
	return accountPage{Email: u.Email}
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, status int, notice, msg string) {
	p := s.account(r)
	p.Notice, p.Error = notice, msg
	s.render(w, r, status, "account", "Your FavoritesAPI account settings", p)
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	s.renderAccount(w, r, http.StatusOK, "", "")
}

// readForm parses a small form body, answering 400 or 413 itself.
func (s *Server) readAccountForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		s.renderAccount(w, r, status, "", "That form could not be read.")
		return false
	}
	return true
}

// handleChangeEmail sends a link to the new address; only following it
// changes the account's address. The answer is the same whether or not
// the address belongs to another account.
func (s *Server) handleChangeEmail(w http.ResponseWriter, r *http.Request) {
	if !s.readAccountForm(w, r) {
		return
	}
	u, _ := magiclink.UserFrom(r.Context())
	email := strings.TrimSpace(r.PostForm.Get("email"))
	err := s.login.RequestEmailChange(r.Context(), u.ID, email)
	switch {
	case err == nil:
		s.renderAccount(w, r, http.StatusOK,
			"We sent a link to "+email+". Your address changes when you follow it; until then, sign in with your current one.", "")
	case magiclink.StatusCode(err) >= 500 || magiclink.StatusCode(err) == 0:
		s.pageError(w, r, err)
	default:
		// An invalid address, the same address, too many requests.
		s.renderAccount(w, r, magiclink.StatusCode(err), "", magiclink.PublicMessage(err))
	}
}

