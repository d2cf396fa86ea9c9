package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/store"
)

// DeleteAccountOptions say how [Server.DeleteAccount] ends a subscription.
type DeleteAccountOptions struct {
	// AtPeriodEnd lets a subscription run to the end of the period paid
	// for, rather than canceling it at once.
	AtPeriodEnd bool
	// By names who deleted the account in the audit entry: "user" or
	// "operator".
	By string
}

// ErrNoSuchAccount is returned by [Server.DeleteAccountByEmail] for an
// address no account has.
var ErrNoSuchAccount = errors.New("no account has that address")

// DeleteAccountByEmail deletes the account of an address (the operator
// CLI's delete-account).
func (s *Server) DeleteAccountByEmail(ctx context.Context, email string, opts DeleteAccountOptions) (int64, error) {
	id, found, err := s.store.UserByEmail(ctx, email)
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, ErrNoSuchAccount
	}
	return id, s.DeleteAccount(ctx, id, opts)
}

// DeleteAccount deletes a user's account: it cancels their subscription,
// then deletes the user with their keys, sessions, pending sign-ins and
// email changes, plan overrides and usage, billing customer and
// favorites (the favorites table's foreign key cascades). Subscriptions
// stay, unlinked from any user, as the record billing reconciles with
// Stripe. The other instances are told (keys and entitlement), and an
// audit entry names the user id, never the address.
func (s *Server) DeleteAccount(ctx context.Context, userID int64, opts DeleteAccountOptions) error {
	if err := s.billing.CancelSubscriptions(ctx, userID, opts.AtPeriodEnd); err != nil {
		return fmt.Errorf("canceling the subscription: %w", err)
	}
	keys, err := s.keys.List(ctx, userID)
	if err != nil {
		return err
	}
	// Favorites first, explicitly: the cascade does it too, but the
	// personal data must go even on a database whose foreign keys are off.
	if _, err := s.store.DB().ExecContext(ctx, s.store.DB().Rebind(`DELETE FROM favorites WHERE user_id = ?`), userID); err != nil {
		return err
	}
	found, err := s.store.DeleteUser(ctx, userID, deleteUserOptions())
	if err != nil {
		return err
	}
	if !found {
		return ErrNoSuchAccount
	}
	// This instance's caches, then the others'.
	s.verifier.InvalidateUser(userID)
	for _, k := range keys {
		s.verifier.Invalidate(k.ID)
		s.bus.Publish(invalidate.Key(k.ID))
	}
	s.billing.Forget(userID)
	s.bus.Publish(invalidate.User(userID))
	by := opts.By
	if by == "" {
		by = "user"
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "audit",
		slog.String("event", "account deleted"), slog.Int64("user", userID), slog.String("by", by),
		slog.Int("keys", len(keys)), slog.Bool("at_period_end", opts.AtPeriodEnd))
	// The security log's entry outlives the account (it names the id,
	// never the address); the actor is the context's: the user, or the
	// operator of the CLI. The account is gone whatever the log says.
	ev := audit.Event{Kind: audit.AccountDeleted, UserID: userID, Detail: map[string]string{
		"keys": strconv.Itoa(len(keys)), "at_period_end": strconv.FormatBool(opts.AtPeriodEnd)}}
	if audit.SourceFrom(ctx).Actor.Kind == "" {
		ev.Actor = audit.Actor{Kind: audit.ActorUser, ID: strconv.FormatInt(userID, 10)}
		if by == "operator" {
			ev.Actor = audit.Actor{Kind: audit.ActorOperator}
		}
	}
	if _, err := s.audit.Append(ctx, ev); err != nil {
		s.logger.Error("appending the account deletion to the security log", "user", userID, "error", err)
	}
	return nil
}

// deleteUserOptions keeps a deleted user's subscriptions, unlinked, as
// the history billing reconciles with Stripe (and the law may require).
func deleteUserOptions() store.DeleteUserOptions { return store.DeleteUserOptions{} }
