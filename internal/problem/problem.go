// Package problem forwards to [github.com/apikit/apikit/problem], where
// apikit's problem documents now live.
//
// Deprecated: import github.com/apikit/apikit/problem. This package is
// kept only until billing and the example have switched over.
package problem

import (
	"net/http"

	"github.com/apikit/apikit/problem"
)

// ContentType is [problem.ContentType].
const ContentType = problem.ContentType

// Problem is [problem.Problem].
type Problem = problem.Problem

// InvalidParam is [problem.InvalidParam].
type InvalidParam = problem.InvalidParam

// New calls [problem.New].
func New(status int, code, detail string) Problem { return problem.New(status, code, detail) }

// Write calls [problem.Write].
func Write(w http.ResponseWriter, p Problem) { problem.Write(w, p) }
