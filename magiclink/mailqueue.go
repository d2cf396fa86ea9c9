package magiclink

import (
	"context"
	"errors"
	"time"
)

// mailJob is an email waiting for the mail worker: a login request (msg
// is nil: the worker looks the account up and builds the link), or a
// message built already (the email-change link and notice).
type mailJob struct {
	email  string // normalised recipient
	client string // ClientKey of the request, "" for SendLink and the email-change mails
	msg    *Message
	what   string // what msg is, for logs ("email-change link")
	// nonceHash is, for a login request from a browser, the SHA-256 of
	// the nonce in its login cookie: the email then carries a code too.
	nonceHash []byte
	// reqCtx is the context of the request that queued the job, without
	// its cancellation, for Options.Trace and Options.Audit (nil without
	// either).
	reqCtx context.Context
}

// errClientQueueFull refuses a job of a client that has QueuePerClient
// jobs queued already.
var errClientQueueFull = errors.New("magiclink: too many login emails of one client queued")

// enqueue hands a login request to the mail workers without blocking. A
// job with a client counts against that client's QueuePerClient until a
// worker takes it.
func (s *Service) enqueue(j mailJob) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if j.client != "" {
		s.pendingMu.Lock()
		if s.pending[j.client] >= s.opts.QueuePerClient {
			s.pendingMu.Unlock()
			s.stats.clientLimited.Add(1)
			return errClientQueueFull
		}
		s.pending[j.client]++
		s.pendingMu.Unlock()
	}
	select {
	case s.queue <- j:
		s.stats.mailQueued.Add(1)
		return nil
	default:
		s.dequeued(j)
		s.stats.mailDropped.Add(1)
		return ErrQueueFull
	}
}

// requestContext is what a job queued by a request with context ctx
// keeps of it for Options.Trace and Options.Audit: its values, not its
// cancellation, and nothing without either.
func (s *Service) requestContext(ctx context.Context) context.Context {
	if s.opts.Trace == nil && s.opts.Audit == nil {
		return nil
	}
	return context.WithoutCancel(ctx)
}

// dequeued releases j's place in its client's share of the queue.
func (s *Service) dequeued(j mailJob) {
	if j.client == "" {
		return
	}
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending[j.client]--; s.pending[j.client] <= 0 {
		delete(s.pending, j.client)
	}
}

func (s *Service) mailWorker() {
	defer s.workers.Done()
	for j := range s.queue {
		s.dequeued(j)
		if s.baseCtx.Err() != nil {
			s.stats.mailAbandoned.Add(1)
			continue
		}
		s.runJob(j)
	}
}

// runJob handles j, inside Options.Trace's span if there is a Trace: the
// span's context carries the request's values and Close's cancellation.
func (s *Service) runJob(j mailJob) {
	if s.opts.Trace == nil {
		_ = s.handleJob(s.baseCtx, j)
		return
	}
	parent := j.reqCtx
	if parent == nil {
		parent = context.Background()
	}
	tctx, end := s.opts.Trace(parent, "magiclink.mail")
	ctx, cancel := context.WithCancel(tctx)
	stop := context.AfterFunc(s.baseCtx, cancel)
	err := s.handleJob(ctx, j)
	stop()
	cancel()
	end(err)
}

// errNotSent is handleJob's error for an email that was not sent; what
// went wrong is logged and counted already.
var errNotSent = errors.New("magiclink: email not sent")

// handleJob sends a job's message, or for a login request looks the
// account up, creates a token and sends the link. ctx is cancelled when
// Close gives up waiting.
func (s *Service) handleJob(ctx context.Context, j mailJob) error {
	if j.msg != nil {
		return s.deliver(ctx, *j.msg, j.email, j.what)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute) // bounds the store calls
	defer cancel()
	log := s.logger.With("to", RedactEmail(j.email))
	// With AllowSignup an unknown address gets a link too; the account is
	// created only when the link is used, so asking creates no account.
	var userID int64 // the account, when it was looked up and found
	if !s.opts.AllowSignup || s.opts.Audit != nil {
		id, found, err := s.store.UserByEmail(sctx, j.email)
		switch {
		case err != nil && s.opts.AllowSignup:
			// Looked up only for the audit: the link is sent anyway.
			s.stats.storeErrors.Add(1)
			log.Warn("magiclink: looking up the account of a login link for the audit log", "err", err)
		case err != nil:
			s.stats.storeErrors.Add(1)
			s.stats.mailFailed.Add(1)
			log.Error("magiclink: looking up the account for a login link", "err", err)
			return errNotSent
		case !found && !s.opts.AllowSignup:
			s.stats.noAccount.Add(1)
			log.Debug("magiclink: login link requested for an address with no account")
			return nil
		case found:
			userID = id
		}
	}
	token, hash := newSecret()
	now := s.opts.Now()
	var code string
	var codeHash []byte
	if j.nonceHash != nil {
		code = newCode()
		codeHash = hashSecret(code)
	}
	if err := s.store.CreateLoginToken(sctx, LoginToken{
		Hash: hash, Email: j.email, CreatedAt: now, ExpiresAt: now.Add(s.opts.TokenTTL),
		NonceHash: j.nonceHash, CodeHash: codeHash,
	}); err != nil {
		s.stats.storeErrors.Add(1)
		s.stats.mailFailed.Add(1)
		log.Error("magiclink: storing a login token", "err", err)
		return errNotSent
	}
	if s.opts.Audit != nil && userID != 0 {
		method := "link"
		if code != "" {
			method = "link_and_code"
		}
		actx, cancel := context.WithTimeout(j.reqCtx, time.Minute)
		stop := context.AfterFunc(ctx, cancel) // Close gave up
		s.audit(actx, AuditEvent{Kind: EventLinkRequested, UserID: userID, At: now,
			Detail: map[string]string{"method": method, "email": mask(j.email)}})
		stop()
		cancel()
	}
	msg, err := s.renderEmail(j.email, s.opts.BaseURL+"/login/verify?token="+token, code)
	if err != nil {
		s.stats.mailFailed.Add(1)
		log.Error("magiclink: rendering the login email", "err", err)
		return errNotSent
	}
	return s.deliver(ctx, msg, j.email, "login email")
}

// deliver sends msg to email, retrying with backoff until ctx is done;
// what names the message in logs. It returns errNotSent if it gave up.
func (s *Service) deliver(ctx context.Context, msg Message, email, what string) error {
	log := s.logger.With("to", RedactEmail(email))
	backoff := s.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
		err := s.opts.Mailer.Send(actx, msg)
		cancel()
		if err == nil {
			s.stats.mailSent.Add(1)
			log.Debug("magiclink: "+what+" sent", "attempt", attempt)
			return nil
		}
		if ctx.Err() != nil {
			s.stats.mailAbandoned.Add(1)
			log.Warn("magiclink: "+what+" abandoned at shutdown", "err", redactErr(err, email))
			return errNotSent
		}
		if attempt >= s.opts.SendAttempts {
			s.stats.mailFailed.Add(1)
			log.Error("magiclink: sending the "+what+" failed; giving up", "attempts", attempt, "err", redactErr(err, email))
			return errNotSent
		}
		s.stats.mailRetries.Add(1)
		log.Warn("magiclink: sending the "+what+" failed; retrying", "attempt", attempt, "in", backoff, "err", redactErr(err, email))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			s.stats.mailAbandoned.Add(1)
			return errNotSent
		}
		backoff *= 2
	}
}
