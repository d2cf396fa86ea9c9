-- Billing (package billing). Stripe customers and the users they belong
-- to: a user may have several customers, one per Checkout completed
-- without an existing customer; a customer belongs to one user, the first
-- it was linked to.
CREATE TABLE billing_customers (
    customer_id TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX billing_customers_user_id ON billing_customers (user_id, created_at);

-- Subscriptions as the newest applied webhook event described them. There
-- is no foreign key to billing_customers: a subscription event may arrive
-- before the checkout event that links its customer to a user.
-- event_created is the Stripe event's created time in Unix seconds (0 for
-- a provisional row written from a completed Checkout); ended marks a
-- deleted subscription, which no later event changes.
CREATE TABLE billing_subscriptions (
    subscription_id      TEXT PRIMARY KEY,
    customer_id          TEXT NOT NULL,
    status               TEXT NOT NULL,
    price_id             TEXT NOT NULL DEFAULT '',
    current_period_start TIMESTAMP,
    current_period_end   TIMESTAMP,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,
    ended                BOOLEAN NOT NULL DEFAULT FALSE,
    event_created        BIGINT NOT NULL,
    updated_at           TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX billing_subscriptions_customer_id ON billing_subscriptions (customer_id);

-- Webhook events applied, recorded in the transaction that applied them,
-- so that a redelivered event changes nothing. Pruned by age.
CREATE TABLE billing_webhook_events (
    event_id    TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    created     BIGINT NOT NULL,
    received_at TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX billing_webhook_events_received_at ON billing_webhook_events (received_at);

-- Checkout sessions whose success page has signed a user in: each only
-- once. Pruned by age, after Stripe's sessions can no longer be fresh.
CREATE TABLE billing_checkout_sessions (
    session_id  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    consumed_at TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX billing_checkout_sessions_consumed_at ON billing_checkout_sessions (consumed_at);
