package magiclink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/internal/loopback"
)

// Errors of this package. Check them with [errors.Is].
var (
	// ErrClosed means the [Service] has been closed and sends no more
	// email.
	ErrClosed = errors.New("magiclink: service closed")
	// ErrQueueFull means the mail queue is full; the request is refused
	// with 503 and may be retried.
	ErrQueueFull = errors.New("magiclink: mail queue full")
	// ErrUnavailable means the store failed; the request is refused with
	// 503 (fail closed).
	ErrUnavailable = errors.New("magiclink: store unavailable")
	// ErrUnknownUser means [Service.SignIn] was given a user id that does
	// not exist.
	ErrUnknownUser = errors.New("magiclink: unknown user")
)

// secretLen is the number of random bytes in a login token and a session
// id; base64url without padding makes them 43 characters.
const secretLen = 32

var encodedSecretLen = base64.RawURLEncoding.EncodedLen(secretLen)

// newSecret returns 32 random bytes, base64url-encoded, and their SHA-256.
func newSecret() (string, []byte) {
	b := make([]byte, secretLen)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	enc := base64.RawURLEncoding.EncodeToString(b)
	return enc, hashSecret(enc)
}

// hashSecret returns the SHA-256 of an encoded secret, as stored.
func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// wellFormed reports whether s looks like a secret this package issued, so
// that garbage is refused without touching the store.
func wellFormed(s string) bool {
	if len(s) != encodedSecretLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// Service is passwordless sign-in: it emails login links, turns a followed
// link into a browser session, and authenticates requests by their session
// cookie. Create one with [New]; it is safe for concurrent use. It runs
// background goroutines that send email; call [Service.Close] at shutdown.
type Service struct {
	store  Store
	opts   Options
	logger *slog.Logger
	tmpl   templates
	cookie string // cookie name

	cop    *http.CrossOriginProtection
	blocks blockList // clients refused by VerifyLimiter, until when

	queue     chan mailJob
	mu        sync.RWMutex // guards closed against sends on queue
	closed    bool
	pendingMu sync.Mutex
	pending   map[string]int  // queued jobs per client
	baseCtx   context.Context // cancelled when Close gives up waiting
	cancel    context.CancelFunc
	workers   sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error

	stats counters
}

// User is the signed-in user of a request, from [UserFrom].
type User struct {
	ID    int64
	Email string
	// SessionExpiresAt is when the session ends at the latest.
	SessionExpiresAt time.Time
}

// mailJob is a login request waiting for the mail worker.
type mailJob struct {
	email  string // normalised
	client string // ClientKey of the request, "" for SendLink
}

// New returns a Service over st and starts its mail workers. It returns an
// error wrapping [ErrInvalidOptions] if the options are unusable.
func New(st Store, opts Options) (*Service, error) {
	if st == nil {
		return nil, optionsError("nil Store")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	tmpl, err := loadTemplates(o.Templates)
	if err != nil {
		return nil, err
	}
	s := &Service{
		store:  st,
		opts:   o,
		logger: o.Logger,
		tmpl:   tmpl,
		cookie: "__Host-session",
		queue:  make(chan mailJob, o.QueueSize),
		stop:   make(chan struct{}),
		cop:    http.NewCrossOriginProtection(),
		blocks: blockList{until: make(map[string]time.Time), max: maxBlocked},

		pending: make(map[string]int),
	}
	for _, origin := range o.TrustedOrigins {
		if err := s.cop.AddTrustedOrigin(origin); err != nil {
			return nil, optionsError("TrustedOrigins: %v", err)
		}
	}
	if s.opts.ErrorHandler == nil {
		s.opts.ErrorHandler = s.WriteError
	}
	s.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.stats.crossOrigin.Add(1)
		s.refuse(w, r, refusal(ErrCrossOrigin, http.StatusForbidden, "cross_origin",
			"Cross-origin requests are not accepted: use the form on this site."))
	}))
	if o.InsecureCookies {
		s.cookie = "session"
		s.logger.Warn("magiclink: InsecureCookies is set: the session cookie is sent over plain HTTP; use it only for local development")
	} else if strings.HasPrefix(o.BaseURL, "http://") && !loopback.URL(o.BaseURL) {
		s.logger.Warn("magiclink: BaseURL is plain http on a host other than localhost: browsers will not keep the Secure session cookie; use https (or InsecureCookies for development)")
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	for range o.Workers {
		s.workers.Add(1)
		go s.mailWorker()
	}
	if o.CleanupInterval > 0 {
		s.workers.Add(1)
		go s.cleaner()
	}
	return s, nil
}

// Close stops accepting login requests, sends the emails still queued, and
// stops the background goroutines. If ctx ends first, it abandons the
// remaining emails (cancelling the one being sent) and returns an error
// that says how many were not sent. Close is safe to call more than once;
// later calls return the first call's result.
func (s *Service) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue) // workers drain it, then exit
		close(s.stop)
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.workers.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel()
			<-done
			if n := s.stats.mailAbandoned.Load(); n > 0 {
				s.closeErr = fmt.Errorf("magiclink: closing: %d login emails not sent: %w", n, ctx.Err())
			}
		}
		s.cancel()
	})
	return s.closeErr
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
		s.handleJob(j)
	}
}

// handleJob looks the account up, creates a token and sends the link,
// retrying the send with backoff.
func (s *Service) handleJob(j mailJob) {
	ctx := s.baseCtx
	sctx, cancel := context.WithTimeout(ctx, time.Minute) // bounds the store calls
	defer cancel()
	log := s.logger.With("to", RedactEmail(j.email))
	// With AllowSignup an unknown address gets a link too; the account is
	// created only when the link is used, so asking creates no account.
	if !s.opts.AllowSignup {
		_, found, err := s.store.UserByEmail(sctx, j.email)
		if err != nil {
			s.stats.storeErrors.Add(1)
			s.stats.mailFailed.Add(1)
			log.Error("magiclink: looking up the account for a login link", "err", err)
			return
		}
		if !found {
			s.stats.noAccount.Add(1)
			log.Debug("magiclink: login link requested for an address with no account")
			return
		}
	}
	token, hash := newSecret()
	now := s.opts.Now()
	if err := s.store.CreateLoginToken(sctx, LoginToken{
		Hash: hash, Email: j.email, CreatedAt: now, ExpiresAt: now.Add(s.opts.TokenTTL),
	}); err != nil {
		s.stats.storeErrors.Add(1)
		s.stats.mailFailed.Add(1)
		log.Error("magiclink: storing a login token", "err", err)
		return
	}
	msg, err := s.renderEmail(j.email, s.opts.BaseURL+"/login/verify?token="+token)
	if err != nil {
		s.stats.mailFailed.Add(1)
		log.Error("magiclink: rendering the login email", "err", err)
		return
	}
	backoff := s.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
		err = s.opts.Mailer.Send(actx, msg)
		cancel()
		if err == nil {
			s.stats.mailSent.Add(1)
			log.Debug("magiclink: login email sent", "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			s.stats.mailAbandoned.Add(1)
			log.Warn("magiclink: login email abandoned at shutdown", "err", redactErr(err, j.email))
			return
		}
		if attempt >= s.opts.SendAttempts {
			s.stats.mailFailed.Add(1)
			log.Error("magiclink: sending the login email failed; giving up", "attempts", attempt, "err", redactErr(err, j.email))
			return
		}
		s.stats.mailRetries.Add(1)
		log.Warn("magiclink: sending the login email failed; retrying", "attempt", attempt, "in", backoff, "err", redactErr(err, j.email))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			s.stats.mailAbandoned.Add(1)
			return
		}
		backoff *= 2
	}
}

// cleaner deletes used and expired rows every CleanupInterval.
func (s *Service) cleaner() {
	defer s.workers.Done()
	t := time.NewTicker(s.opts.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.baseCtx, time.Minute)
			n, err := s.store.DeleteExpired(ctx, s.opts.Now())
			cancel()
			if err != nil {
				s.stats.storeErrors.Add(1)
				s.logger.Warn("magiclink: deleting expired tokens and sessions", "err", err)
			} else if n > 0 {
				s.logger.Debug("magiclink: deleted expired tokens and sessions", "rows", n)
			}
		}
	}
}

// SignIn starts a new session for the user and sets its cookie on w. It is
// what a followed login link does; other sign-in paths (such as completing
// a checkout with a new account) call it directly. It fails with
// [ErrUnknownUser] if there is no such user.
func (s *Service) SignIn(ctx context.Context, w http.ResponseWriter, userID int64) error {
	if _, found, err := s.store.UserEmail(ctx, userID); err != nil {
		s.stats.storeErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	} else if !found {
		return ErrUnknownUser
	}
	id, hash := newSecret()
	now := s.opts.Now()
	se := Session{Hash: hash, UserID: userID, CreatedAt: now, ExpiresAt: now.Add(s.opts.SessionTTL), LastSeenAt: now}
	if err := s.store.CreateSession(ctx, se); err != nil {
		s.stats.storeErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.stats.sessionsCreated.Add(1)
	http.SetCookie(w, s.sessionCookie(id, s.opts.SessionTTL))
	return nil
}

// RevokeSessions signs the user out everywhere: every session of the user
// is deleted, and their cookies stop working at once.
func (s *Service) RevokeSessions(ctx context.Context, userID int64) error {
	n, err := s.store.DeleteUserSessions(ctx, userID)
	if err != nil {
		s.stats.storeErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.stats.sessionsRevoked.Add(n)
	return nil
}

// sessionCookie is the cookie for a new session. Its lifetime is given as
// Max-Age alone, relative to the browser's clock, so that a skewed clock on
// either side cannot make it expire early.
func (s *Service) sessionCookie(value string, ttl time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     s.cookie,
		Value:    value,
		Path:     "/",
		MaxAge:   int(ttl / time.Second),
		Secure:   !s.opts.InsecureCookies,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

func (s *Service) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookie, Value: "", Path: "/", MaxAge: -1,
		Secure: !s.opts.InsecureCookies, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// errNoSession means the request has no valid session.
var errNoSession = errors.New("magiclink: no session")

// user authenticates r by its session cookie. It returns errNoSession for
// a missing, unknown, expired or idle session (stale reports whether a
// cookie should be cleared), and an ErrUnavailable error if the store
// failed.
func (s *Service) user(r *http.Request) (u User, stale bool, err error) {
	if s.checked(r.Context()) { // LoadUser ran already: no second lookup
		if u, ok := UserFrom(r.Context()); ok {
			return u, false, nil
		}
		return User{}, false, errNoSession
	}
	c, err := r.Cookie(s.cookie)
	if err != nil {
		return User{}, false, errNoSession
	}
	if !wellFormed(c.Value) {
		s.stats.sessionsRejected.Add(1)
		return User{}, true, errNoSession
	}
	hash := hashSecret(c.Value)
	ctx := r.Context()
	se, found, err := s.store.Session(ctx, hash)
	if err != nil {
		s.stats.storeErrors.Add(1)
		return User{}, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !found {
		s.stats.sessionsRejected.Add(1)
		return User{}, true, errNoSession
	}
	now := s.opts.Now()
	idle := s.opts.IdleTimeout
	if !now.Before(se.ExpiresAt) || (idle > 0 && now.Sub(se.LastSeenAt) >= idle) {
		s.stats.sessionsRejected.Add(1)
		if _, err := s.store.DeleteSession(ctx, hash); err != nil {
			s.logger.Warn("magiclink: deleting an expired session", "user", se.UserID, "err", err)
		}
		return User{}, true, errNoSession
	}
	if idle > 0 && now.Sub(se.LastSeenAt) >= min(time.Minute, idle/10) {
		if err := s.store.TouchSession(ctx, hash, now); err != nil {
			s.stats.storeErrors.Add(1)
			s.logger.Warn("magiclink: recording session activity", "user", se.UserID, "err", err)
		}
	}
	s.stats.sessionsLoaded.Add(1)
	return User{ID: se.UserID, Email: se.Email, SessionExpiresAt: se.ExpiresAt}, false, nil
}

// Stats is a snapshot of what a [Service] has done since it started.
type Stats struct {
	LinksRequested   int64 // login requests accepted (known or unknown address)
	LinksInvalid     int64 // login requests refused for a malformed address
	LinksLimited     int64 // login requests refused by SendLimiter
	ClientLimited    int64 // login requests refused by SendClientLimiter or QueuePerClient
	CrossOrigin      int64 // cross-origin POSTs refused
	MailQueued       int64 // login requests queued for the mail workers
	MailSent         int64 // login emails sent
	MailRetries      int64 // failed attempts that were retried
	MailFailed       int64 // login emails given up after SendAttempts, or not built
	MailDropped      int64 // login requests refused because the queue was full
	MailAbandoned    int64 // queued emails not sent because Close gave up
	NoAccount        int64 // requests for addresses with no account (no email sent)
	QueueLength      int   // emails waiting now
	VerifySucceeded  int64 // login links redeemed
	VerifyFailed     int64 // unknown, used, expired or malformed login tokens
	VerifyLimited    int64 // verification attempts refused for too many failures
	SessionsCreated  int64
	SessionsLoaded   int64 // requests authenticated by a session
	SessionsRejected int64 // cookies naming no valid session
	SessionsRevoked  int64 // sessions deleted by logout or RevokeSessions
	StoreErrors      int64
}

type counters struct {
	linksRequested, linksInvalid, linksLimited                         atomic.Int64
	clientLimited, crossOrigin                                         atomic.Int64
	mailQueued, mailSent, mailRetries, mailFailed, mailDropped         atomic.Int64
	mailAbandoned, noAccount                                           atomic.Int64
	verifySucceeded, verifyFailed, verifyLimited                       atomic.Int64
	sessionsCreated, sessionsLoaded, sessionsRejected, sessionsRevoked atomic.Int64
	storeErrors                                                        atomic.Int64
}

// Stats returns a snapshot of the service's counters. It is safe to call
// concurrently with everything else.
func (s *Service) Stats() Stats {
	c := &s.stats
	return Stats{
		LinksRequested: c.linksRequested.Load(), LinksInvalid: c.linksInvalid.Load(), LinksLimited: c.linksLimited.Load(),
		ClientLimited: c.clientLimited.Load(), CrossOrigin: c.crossOrigin.Load(),
		MailQueued: c.mailQueued.Load(), MailSent: c.mailSent.Load(), MailRetries: c.mailRetries.Load(),
		MailFailed: c.mailFailed.Load(), MailDropped: c.mailDropped.Load(), MailAbandoned: c.mailAbandoned.Load(),
		NoAccount: c.noAccount.Load(), QueueLength: len(s.queue),
		VerifySucceeded: c.verifySucceeded.Load(), VerifyFailed: c.verifyFailed.Load(), VerifyLimited: c.verifyLimited.Load(),
		SessionsCreated: c.sessionsCreated.Load(), SessionsLoaded: c.sessionsLoaded.Load(),
		SessionsRejected: c.sessionsRejected.Load(), SessionsRevoked: c.sessionsRevoked.Load(),
		StoreErrors: c.storeErrors.Load(),
	}
}

// RedactEmail returns the address with its local part hidden, as
// "…@example.com", for logs.
func RedactEmail(email string) string {
	if at := strings.LastIndexByte(email, '@'); at >= 0 {
		return "…" + email[at:]
	}
	return "…"
}

// redactErr returns err's message with the address replaced by its
// redacted form (SMTP servers often echo the recipient).
func redactErr(err error, email string) string {
	msg := err.Error()
	if email != "" {
		msg = strings.ReplaceAll(msg, email, RedactEmail(email))
	}
	return msg
}

// maxBlocked bounds the clients blocked at once by VerifyLimiter.
const maxBlocked = 100_000

// blockList holds the clients whose failed sign-in attempts VerifyLimiter
// refused, and until when they are refused without a lookup.
type blockList struct {
	mu        sync.Mutex
	until     map[string]time.Time
	max       int
	nextSweep time.Time
}

// blocked returns how long the client is still blocked at now (0 if not).
func (b *blockList) blocked(client string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.until[client]
	if !ok {
		return 0
	}
	if !now.Before(until) {
		delete(b.until, client)
		return 0
	}
	return until.Sub(now)
}

// block blocks the client from now until the given time. It reports false
// if it could not, because the list is full of blocks that have not ended.
func (b *blockList) block(client string, now, until time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.until[client]; !ok && len(b.until) >= b.max && !now.Before(b.nextSweep) {
		// At most once a second: a flood costs one sweep a second.
		for k, u := range b.until {
			if !now.Before(u) {
				delete(b.until, k)
			}
		}
		b.nextSweep = now.Add(time.Second)
	}
	if _, ok := b.until[client]; !ok && len(b.until) >= b.max {
		return false
	}
	b.until[client] = until
	return true
}
