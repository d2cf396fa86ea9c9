package audittest_test

import (
	"testing"

	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/audit/audittest"
)

// The MemoryStore passes the suite it stands for.
func TestMemoryStore(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audit.Store { return audittest.NewMemoryStore() })
}
