package secretscan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultKeysURL is where GitHub publishes the public keys it signs secret
// scanning alerts with.
const DefaultKeysURL = "https://api.github.com/meta/public_keys/secret_scanning"

// maxKeysBody bounds the key document read from the key server.
const maxKeysBody = 1 << 20

// keyDocument is GitHub's key list.
type keyDocument struct {
	PublicKeys []struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	} `json:"public_keys"`
}

// parseKeys parses GitHub's key document into ECDSA P-256 keys by id. Keys
// that are not P-256 public keys in PEM are skipped; a document with none
// is an error.
func parseKeys(b []byte) (map[string]*ecdsa.PublicKey, error) {
	var doc keyDocument
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("secretscan: key document: %w", err)
	}
	keys := make(map[string]*ecdsa.PublicKey, len(doc.PublicKeys))
	for _, k := range doc.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if k.KeyIdentifier == "" || block == nil || block.Type != "PUBLIC KEY" {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			continue
		}
		if ec, ok := pub.(*ecdsa.PublicKey); ok && ec.Curve == elliptic.P256() {
			keys[k.KeyIdentifier] = ec
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("secretscan: the key document holds no ECDSA P-256 public key")
	}
	return keys, nil
}

// keyCache holds GitHub's keys and fetches them again, at most once per
// minInterval, when a key id is unknown or the keys are older than ttl.
type keyCache struct {
	url         string
	client      *http.Client
	ttl         time.Duration
	minInterval time.Duration
	now         func() time.Time

	mu      sync.RWMutex
	keys    map[string]*ecdsa.PublicKey
	fetched time.Time // when keys were fetched

	fetchMu   sync.Mutex // one fetch at a time
	attempted time.Time  // last fetch attempt, under fetchMu
	fetches   int        // fetch attempts, under fetchMu
}

// key returns the public key with the id, fetching the key list if the id
// is unknown or the list is stale, within the rate limit. It returns nil
// if the key is unknown (or could not be fetched: err).
func (c *keyCache) key(ctx context.Context, id string) (*ecdsa.PublicKey, error) {
	c.mu.RLock()
	k, fresh := c.keys[id], c.now().Sub(c.fetched) < c.ttl
	c.mu.RUnlock()
	if k != nil && fresh {
		return k, nil
	}
	if err := c.refresh(ctx); err != nil && k == nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.keys[id], nil
}

// refresh fetches the keys unless a fetch was attempted within
// minInterval. Concurrent callers wait for one fetch.
func (c *keyCache) refresh(ctx context.Context) error {
	start := c.now()
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if !c.attempted.IsZero() && (c.attempted.After(start) || start.Sub(c.attempted) < c.minInterval) {
		return nil // fetched while we waited, or too recently
	}
	c.attempted = c.now()
	c.fetches++
	keys, err := c.fetch(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.keys, c.fetched = keys, c.now()
	c.mu.Unlock()
	return nil
}

func (c *keyCache) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("secretscan: key request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("secretscan: fetching keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("secretscan: fetching keys: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysBody+1))
	if err != nil {
		return nil, fmt.Errorf("secretscan: reading keys: %w", err)
	}
	if len(b) > maxKeysBody {
		return nil, fmt.Errorf("secretscan: key document larger than %d bytes", maxKeysBody)
	}
	return parseKeys(b)
}
