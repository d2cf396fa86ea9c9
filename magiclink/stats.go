package magiclink

import (
	"sync/atomic"
)

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
	// EmailChangesRequested counts links sent by RequestEmailChange,
	// EmailChangesConfirmed the changes made by following one, and
	// EmailChangesTaken the links refused because the new address
	// belonged to another account by then.
	EmailChangesRequested, EmailChangesConfirmed, EmailChangesTaken int64
	StoreErrors                                                     int64
	// AuditErrors counts calls of Options.Audit that returned an error.
	AuditErrors int64
}

type counters struct {
	linksRequested, linksInvalid, linksLimited                         atomic.Int64
	clientLimited, crossOrigin                                         atomic.Int64
	mailQueued, mailSent, mailRetries, mailFailed, mailDropped         atomic.Int64
	mailAbandoned, noAccount                                           atomic.Int64
	verifySucceeded, verifyFailed, verifyLimited                       atomic.Int64
	sessionsCreated, sessionsLoaded, sessionsRejected, sessionsRevoked atomic.Int64
	storeErrors, auditErrors                                           atomic.Int64
	emailChangesRequested, emailChangesConfirmed, emailChangesTaken    atomic.Int64
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
		StoreErrors:           c.storeErrors.Load(),
		EmailChangesRequested: c.emailChangesRequested.Load(), EmailChangesConfirmed: c.emailChangesConfirmed.Load(),
		EmailChangesTaken: c.emailChangesTaken.Load(), AuditErrors: c.auditErrors.Load(),
	}
}
