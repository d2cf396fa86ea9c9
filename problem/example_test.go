package problem_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/apikit/apikit/problem"
)

// An application answers a validation error of its own in the shape every
// apikit handler uses.
func Example() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := problem.New(http.StatusUnprocessableEntity, "validation_failed", "url: must be an absolute http(s) URL")
		p.InvalidParams = []problem.InvalidParam{{Name: "url", Reason: "must be an absolute http(s) URL"}}
		problem.Write(w, p)
	})

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/favorites", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Print(rec.Body.String())
	// Output:
	// 422 application/problem+json
	// {"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"url: must be an absolute http(s) URL","code":"validation_failed","invalid-params":[{"name":"url","reason":"must be an absolute http(s) URL"}]}
}

// Headers set before Write, such as Retry-After, are kept.
func ExampleWrite() {
	rec := httptest.NewRecorder()
	rec.Header().Set("Retry-After", "30")
	problem.Write(rec, problem.New(http.StatusServiceUnavailable, "unavailable", "Try again shortly."))
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Cache-Control"))
	// Output:
	// 503 30 no-store
}
