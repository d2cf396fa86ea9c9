package apikeytest_test

import (
	"testing"

	"github.com/apikit/apikit/apikey/apikeytest"
)

// The MemoryStore passes the suite it stands for.
func TestMemoryStore(t *testing.T) {
	apikeytest.Run(t, func(t *testing.T) apikeytest.Backend { return apikeytest.NewMemoryStore() })
}
