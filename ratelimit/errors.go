package ratelimit

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/apikit/apikit/problem"
)

// WriteLimited is the default MiddlewareOptions.OnLimited: 429 Too Many
// Requests with an RFC 9457 problem document whose code is "rate_limited".
// Applications that replace OnLimited can call it after their own work.
func WriteLimited(w http.ResponseWriter, _ *http.Request, d Decision) {
	problem.Write(w, problem.New(http.StatusTooManyRequests, "rate_limited",
		fmt.Sprintf("Rate limit %s exceeded; retry in %d s.", d.Limit, d.RetryAfterSeconds())))
}

// WriteError is the default MiddlewareOptions.OnError: for an error
// wrapping [ErrUnavailable], 503 Service Unavailable with the problem code
// "rate_limiter_unavailable"; for any other error, 500 with the code
// "rate_limiter_error". The error's text is not sent to the client: it may
// name internal hosts.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, ErrUnavailable) {
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "rate_limiter_unavailable",
			"The rate limiter is unavailable; try again shortly."))
		return
	}
	problem.Write(w, problem.New(http.StatusInternalServerError, "rate_limiter_error",
		"The rate limiter could not decide on this request."))
}
