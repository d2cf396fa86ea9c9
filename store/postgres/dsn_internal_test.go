package postgres

import "testing"

func TestParam(t *testing.T) {
	for _, c := range []struct{ dsn, want string }{
		{"postgres://u:p@db:5432/app?sslmode=require&binary_parameters=yes", "yes"},
		{"postgresql://db/app?binary_parameters=no", "no"},
		{"postgres://db/app", ""},
		{"host=db dbname=app binary_parameters=yes", "yes"},
		{"host=db binary_parameters=yes binary_parameters=no", "no"},
		{"host=db dbname=app", ""},
		{withParam("postgres://db/app?sslmode=disable", "binary_parameters", "yes"), "yes"},
		{withParam("host=db dbname=app", "binary_parameters", "yes"), "yes"},
	} {
		if got := param(c.dsn, "binary_parameters"); got != c.want {
			t.Errorf("param(%q) = %q, want %q", c.dsn, got, c.want)
		}
	}
}
