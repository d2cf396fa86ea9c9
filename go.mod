module github.com/apikit/apikit

go 1.26.0

require (
	github.com/jmoiron/sqlx v1.4.0
	github.com/lib/pq v1.12.3
	github.com/mattn/go-sqlite3 v1.14.53
)

require golang.org/x/crypto v0.58.0 // indirect
