package stripemock_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/apikit/apikit/internal/testkit/stripemock"
)

func TestStart(t *testing.T) {
	url := stripemock.Start(t)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("Start = %q; want a loopback URL", url)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/customers/cus_123", nil)
	req.Header.Set("Authorization", "Bearer sk_test_123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/customers/cus_123 = %d", resp.StatusCode)
	}
}
