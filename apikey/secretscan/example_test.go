package secretscan_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/apikey/secretscan"
)

// An application mounts the handler at POST /github/secret-scanning. Here
// a key server of our own stands in for GitHub's, and we sign the report
// as GitHub would.
func Example() {
	ctx := context.Background()
	st := apikeytest.NewMemoryStore() // in an application: the SQL store
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live"})
	user, _, _ := st.CreateUser(ctx, "ada@example.com", apikey.Key{}.CreatedAt)
	_, tok, _ := m.Issue(ctx, user, apikey.IssueOptions{Name: "production"})

	// GitHub's signing key, and the document it publishes.
	gh, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&gh.PublicKey)
	keys := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"public_keys": []map[string]any{{
			"key_identifier": "gh-1", "is_current": true,
			"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		}}})
	})
	keyServer := httptest.NewServer(keys)
	defer keyServer.Close()

	mux := http.NewServeMux()
	mux.Handle("POST /github/secret-scanning", secretscan.New(secretscan.Options{
		KeysURL: keyServer.URL, // default: GitHub's
		Responder: apikey.NewLeakResponder(m, apikey.LeakOptions{
			Notices: st,
			Notify: func(ctx context.Context, n apikey.Notice) error {
				fmt.Printf("mail user %d: key %q was found at %s and has been revoked\n", n.Key.UserID, n.Key.Name, n.URL)
				return nil
			},
		}),
	}))

	body, _ := json.Marshal([]secretscan.Report{{Token: tok.Reveal(), Type: "fav_live_api_key",
		URL: "https://github.com/octocat/app/blob/main/.env", Source: "content"}})
	sum := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, gh, sum[:])
	req := httptest.NewRequest("POST", "/github/secret-scanning", bytes.NewReader(body))
	req.Header.Set(secretscan.HeaderKeyID, "gh-1")
	req.Header.Set(secretscan.HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)

	var fb []secretscan.Feedback
	json.Unmarshal(rec.Body.Bytes(), &fb)
	fmt.Println(rec.Code, fb[0].TokenType, fb[0].Label)
	k, _ := m.Get(ctx, tok.ID)
	fmt.Println("state:", k.State(k.RevokedAt))
	// Output:
	// mail user 1: key "production" was found at https://github.com/octocat/app/blob/main/.env and has been revoked
	// 200 fav_live_api_key true_positive
	// state: revoked
}

// The patterns to register with GitHub for the example application's keys.
func ExampleTokenPattern() {
	fmt.Println(secretscan.TokenPattern("fav_live"))
	fmt.Println(secretscan.TokenPattern("fav_test"))
	// Output:
	// fav_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}
	// fav_test_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}
}
