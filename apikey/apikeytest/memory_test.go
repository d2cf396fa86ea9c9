package apikeytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
)

// The MemoryStore passes the suite it stands for; VerifyStore, which it
// leaves out, through the lookup a store implementing it would have.
func TestMemoryStore(t *testing.T) {
	apikeytest.Run(t, func(t *testing.T) apikeytest.Backend { return verifyMemory{apikeytest.NewMemoryStore()} })
}

// verifyMemory is a MemoryStore with KeyForVerify, leaving out the three
// timestamps the contract allows it to.
type verifyMemory struct{ *apikeytest.MemoryStore }

func (m verifyMemory) KeyForVerify(ctx context.Context, id string) (apikey.Key, bool, error) {
	k, found, err := m.Key(ctx, id)
	k.CreatedAt, k.UpdatedAt, k.LastUsedAt = time.Time{}, time.Time{}, time.Time{}
	return k, found, err
}
