-- The subscription's billing cycle anchor (Stripe's billing_cycle_anchor),
-- where quotas per billing period refill; NULL when the event did not say.
ALTER TABLE billing_subscriptions ADD COLUMN billing_cycle_anchor TIMESTAMPTZ;
