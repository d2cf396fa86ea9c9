package app

import (
	"fmt"
	"net/http"
	"time"

	"github.com/apikit/apikit/magiclink"
)

// FreshSignIn is how recent a sign-in must be for the account to be
// deleted: an unattended browser, or a stolen session, cannot do it.
const FreshSignIn = 10 * time.Minute

// fresh reports whether u signed in (by link or code) within FreshSignIn.
func (s *Server) fresh(u magiclink.User) bool {
	return !u.SignedInAt.IsZero() && s.now().Sub(u.SignedInAt) < FreshSignIn
}

// handleEndSession ends one of the user's own sessions; another user's
// reference, or an unknown one, is one 404.
func (s *Server) handleEndSession(w http.ResponseWriter, r *http.Request) {
	u, _ := magiclink.UserFrom(r.Context())
	ended, err := s.login.EndSession(r.Context(), u.ID, r.PathValue("ref"))
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	if !ended {
		s.renderAccount(w, r, http.StatusNotFound, "", "There is no such session in your account.")
		return
	}
	s.logger.Info("session ended", "user", u.ID)
	http.Redirect(w, r, "/app/account", http.StatusSeeOther)
}

// handleEndOtherSessions signs the user out everywhere but here.
func (s *Server) handleEndOtherSessions(w http.ResponseWriter, r *http.Request) {
	u, _ := magiclink.UserFrom(r.Context())
	n, err := s.login.EndOtherSessions(r.Context(), r, u.ID)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.logger.Info("other sessions ended", "user", u.ID, "sessions", n)
	s.renderAccount(w, r, http.StatusOK, fmt.Sprintf("Signed out %d other session(s).", n), "")
}

// handleDeleteAccount deletes the signed-in user's account, if they signed
// in within FreshSignIn and typed their address to confirm; otherwise the
// page asks them to sign in again first.
func (s *Server) handleDeleteAccount(w http.ResponseWriter, r *http.Request) {
	if !s.readAccountForm(w, r) {
		return
	}
	ctx := r.Context()
	u, _ := magiclink.UserFrom(ctx)
	if !s.fresh(u) {
		s.renderAccount(w, r, http.StatusForbidden, "",
			"To delete your account, sign in again first (with the link or the code we email you), then come back within 10 minutes.")
		return
	}
	if r.PostForm.Get("confirm") != u.Email {
		s.renderAccount(w, r, http.StatusUnprocessableEntity, "", "Type your address exactly as shown to confirm the deletion.")
		return
	}
	atEnd := s.cfg.AccountDeleteAtPeriodEnd || r.PostForm.Get("when") == "period-end"
	if err := s.DeleteAccount(ctx, u.ID, DeleteAccountOptions{AtPeriodEnd: atEnd, By: "user"}); err != nil {
		s.pageError(w, r, err)
		return
	}
	// The session is gone with the account; the cookie goes too.
	s.login.ClearSessionCookie(w)
	http.Redirect(w, r, "/?account=deleted", http.StatusSeeOther)
}

// handleSignOutEverywhere ends every session of the user, this one
// included (magiclink's RevokeSessions, audited as signed out
// everywhere), and sends the browser to the sign-in page.
func (s *Server) handleSignOutEverywhere(w http.ResponseWriter, r *http.Request) {
	u, _ := magiclink.UserFrom(r.Context())
	if err := s.login.RevokeSessions(r.Context(), u.ID); err != nil {
		s.pageError(w, r, err)
		return
	}
	s.logger.Info("signed out everywhere", "user", u.ID)
	s.login.ClearSessionCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
