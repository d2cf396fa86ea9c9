package plan_test

import (
	"testing"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
)

func TestMemoryConformance(t *testing.T) {
	plantest.Run(t, func(t *testing.T, o plantest.Options) plan.Decider {
		return plan.NewMemory(plan.MemoryOptions{Now: o.Now, Usage: o.Usage, Overrides: o.Overrides})
	})
}
