package magiclink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
)

// emailChangePath is where the link of an email change points.
const emailChangePath = "/login/email/verify"

// ErrEmailChangeUnsupported means [Service.RequestEmailChange] was called
// on a Service whose [Store] does not implement [EmailChangeStore].
var ErrEmailChangeUnsupported = errors.New("magiclink: the Store does not implement EmailChangeStore, so email changes are not supported")

// RequestEmailChange starts a verified change of the user's sign-in
// address to newEmail: it emails a single-use link to the new address,
// and only following that link ([Service.EmailChangeHandler]) replaces
// the old address, which is then told of the change. Until then, nothing
// changes. The link works for [Options.TokenTTL], once; asking again
// voids the earlier links of the same user.
//
// The caller is the signed-in user (an account page calls it with
// [UserFrom]'s ID). It returns:
//   - an [*Error] wrapping [ErrInvalidEmail] if newEmail is not an address,
//     or is the user's address already;
//   - one wrapping [ErrRateLimited] if the user, or the new address, has
//     had its share of emails ([Options.SendLimiter], asked with the
//     address and with "user:" and the user's id as keys);
//   - one wrapping [ErrQueueFull] or [ErrClosed] if the email cannot be
//     queued, and one wrapping [ErrUnavailable] if the store failed;
//   - [ErrUnknownUser] if there is no such user, and
//     [ErrEmailChangeUnsupported] if the Store does not implement
//     [EmailChangeStore].
//
// [Options.Audit] hears of a link sent (EventEmailChangeRequested, with
// the new address masked).
//
// It does not tell whether the new address belongs to another account:
// the answer is the same either way, and only the person who proves the
// new address by its link is told, by a refusal ([ErrEmailTaken]).
func (s *Service) RequestEmailChange(ctx context.Context, userID int64, newEmail string) error {
	ecs, ok := s.store.(EmailChangeStore)
	if !ok {
		return ErrEmailChangeUnsupported
	}
	email, err := normalize(newEmail)
	if err != nil {
		return err
	}
	current, found, err := s.store.UserEmail(ctx, userID)
	switch {
	case err != nil:
		s.stats.storeErrors.Add(1)
		return refusal(fmt.Errorf("%w: %w", ErrUnavailable, err), "Your address cannot be changed right now. Try again shortly.")
	case !found:
		return ErrUnknownUser
	case current == email:
		return refusal(ErrInvalidEmail, "This is your address already.")
	}
	for _, key := range []string{"user:" + strconv.FormatInt(userID, 10), email} {
		allowed, err := s.opts.SendLimiter.Allow(ctx, key)
		if err != nil {
			s.logger.Warn("magiclink: send limiter failed; refusing an email change", "user", userID, "err", err)
		}
		if !allowed {
			s.stats.linksLimited.Add(1)
			return refusal(ErrRateLimited, "Too many address changes were requested. Use the latest link, or try again later.").after(time.Hour)
		}
	}
	token, hash := newSecret()
	now := s.opts.Now()
	if err := ecs.CreateEmailChange(ctx, EmailChange{
		Hash: hash, UserID: userID, NewEmail: email, CreatedAt: now, ExpiresAt: now.Add(s.opts.TokenTTL),
	}); err != nil {
		s.stats.storeErrors.Add(1)
		return refusal(fmt.Errorf("%w: %w", ErrUnavailable, err), "Your address cannot be changed right now. Try again shortly.")
	}
	msg, err := s.renderMail(changeMail, EmailData{Email: email, Link: s.opts.BaseURL + emailChangePath + "?token=" + token})
	if err != nil {
		s.stats.mailFailed.Add(1)
		return fmt.Errorf("magiclink: rendering the email-change link: %w", err)
	}
	if err := s.enqueue(mailJob{email: email, msg: &msg, what: "email-change link", reqCtx: s.requestContext(ctx)}); err != nil {
		return unavailable(err, "Emails cannot be sent right now. Try again shortly.").after(30 * time.Second)
	}
	s.stats.emailChangesRequested.Add(1)
	s.logger.Info("magiclink: email change requested", "user", userID, "to", RedactEmail(email))
	s.audit(ctx, AuditEvent{Kind: EventEmailChangeRequested, UserID: userID, At: now, Actor: ActorUser,
		Detail: map[string]string{"email": mask(email)}})
	return nil
}

// EmailChangeHandler handles the link [Service.RequestEmailChange] sends,
// /login/email/verify. GET renders a confirmation page with a button that
// posts the token back, and changes nothing (mail scanners fetch links).
// POST spends the token: the user's address becomes the new one, now
// proven, and the old address is told by email ("your sign-in address was
// changed to n•••@example.org"); the browser gets a page saying so (a JSON
// client gets 200 and {"user_id", "email"}). It signs nobody in, and the
// store ends every session of the account: they were started by whoever
// proved the old address, and the new one may belong to someone else.
// Sign in again with the new address. [Options.Audit] hears of the change
// (EventEmailChanged, with both addresses masked), and then
// [Options.OnEmailChanged], if set, is called.
//
// If the new address belongs to another account by then, the token is
// spent, nothing changes, and the answer is a clear refusal (409,
// [ErrEmailTaken]): only the owner of the new address, who followed its
// link, learns that. An unknown, used or expired token is refused with
// [ErrInvalidToken] (400) and counts against the client's failures, as
// for sign-in links ([Options.VerifyLimiter]). Cross-origin POSTs are
// refused (403). With a Store that does not implement [EmailChangeStore]
// every link is invalid. [Service.Register] and [Service.Handler] mount it.
func (s *Service) EmailChangeHandler() http.Handler {
	return s.linkHandler(tmplChangeConfirm, "Confirm your new address", invalidChangeToken, s.confirmEmailChange)
}

func invalidChangeToken() *Error {
	e := refusal(ErrInvalidToken, "The link has expired, has been used, or was replaced by a newer one. Ask for the change again.")
	e.emailChange = true
	return e
}

func (s *Service) confirmEmailChange(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	client := s.opts.ClientKey(r)
	token, ok := s.postedToken(w, r, client, invalidChangeToken)
	if !ok {
		return
	}
	ecs, supported := s.store.(EmailChangeStore)
	if !supported {
		s.verifyFailed(w, r, client, invalidChangeToken())
		return
	}
	userID, oldEmail, newEmail, ok, err := ecs.ConsumeEmailChange(ctx, hashSecret(token), s.opts.Now())
	switch {
	case errors.Is(err, ErrEmailTaken):
		s.stats.emailChangesTaken.Add(1)
		s.logger.Info("magiclink: email change refused: the address belongs to another account", "user", userID)
		s.refuse(w, r, refusal(ErrEmailTaken, ""))
		return
	case err != nil:
		s.stats.storeErrors.Add(1)
		s.logger.Error("magiclink: consuming an email-change token", "err", err)
		s.refuse(w, r, unavailable(ErrUnavailable, "Your address cannot be changed right now. Try again shortly."))
		return
	case !ok:
		s.verifyFailed(w, r, client, invalidChangeToken())
		return
	}
	s.stats.emailChangesConfirmed.Add(1)
	s.logger.Info("magiclink: email changed", "user", userID, "from", RedactEmail(oldEmail), "to", RedactEmail(newEmail))
	s.audit(ctx, AuditEvent{Kind: EventEmailChanged, UserID: userID, Actor: ActorUser,
		Detail: map[string]string{"from": mask(oldEmail), "to": mask(newEmail)}})
	s.notifyEmailChanged(oldEmail, newEmail)
	if s.opts.OnEmailChanged != nil {
		s.opts.OnEmailChanged(ctx, userID, oldEmail, newEmail)
	}
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"user_id": userID, "email": newEmail})
		return
	}
	s.page(w, http.StatusOK, tmplChangeDone, PageData{Title: "Address changed", Email: newEmail})
}

// notifyEmailChanged queues the notice to the old address. The change has
// happened: a notice that cannot be queued is logged, not an error.
func (s *Service) notifyEmailChanged(oldEmail, newEmail string) {
	msg, err := s.renderMail(noticeMail, EmailData{Email: oldEmail, NewEmail: emailaddr.Mask(newEmail)})
	if err == nil {
		err = s.enqueue(mailJob{email: oldEmail, msg: &msg, what: "email-change notice"})
	}
	if err != nil {
		s.stats.mailFailed.Add(1)
		s.logger.Error("magiclink: the old address could not be told of an email change", "to", RedactEmail(oldEmail), "err", err)
	}
}
