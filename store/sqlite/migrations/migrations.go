// Package migrations embeds apikit's SQLite schema, shared by the two
// SQLite drivers (packages store/sqlite and store/sqlite/puresqlite): a
// directory of numbered migrations per feature, as [store.Dialect]
// describes.
package migrations

import "embed"

// FS holds the directories users, keys, login, billing, plans, usage, audit
// and legacy.
//
//go:embed users keys login billing plans usage audit legacy
var FS embed.FS
