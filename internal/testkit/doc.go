// Package testkit is the home of apikit's test fixtures: the real
// components the tests talk to (PostgreSQL schemas, Redis, an SMTP server,
// stripe-mock, a fault-injecting TCP proxy) and small helpers for them. It
// sits above every other package (testdb imports the store), and nothing but
// tests imports it, but for package conformance: it imports nothing of
// apikit, and the conformance suites (store/storetest and the suites it
// runs) share it.
package testkit
