package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/apikit/apikit/ratelimit"
)

// MaxFileSize is the largest plan file [ReadCatalog] reads.
const MaxFileSize = 1 << 20

// planJSON is one plan in the file format. Pointers tell absent from empty.
type planJSON struct {
	Name    *string  `json:"name"`
	Prices  []string `json:"prices"`
	Limits  []string `json:"limits"`
	Quota   *string  `json:"quota,omitempty"`
	Budget  *string  `json:"budget"`
	Scopes  []string `json:"scopes"`
	Metered *bool    `json:"metered"`
	// MeterEvent is a pointer so that an empty name is an error, not
	// "none".
	MeterEvent *string `json:"meter_event,omitempty"`
}

// ReadCatalog reads plans in the plan file format and returns them as a
// [Catalog]:
//
//	{"plans": [
//	  {"name": "free", "prices": [], "limits": ["1/s"], "quota": "100/day",
//	   "budget": "user", "scopes": [], "metered": false},
//	  {"name": "pro", "prices": ["price_123"], "limits": ["100/s", "100000/h"],
//	   "budget": "user", "scopes": ["favorites:read", "favorites:write"], "metered": true,
//	   "meter_event": "api_requests"}
//	]}
//
// "name" and "limits" are required. "limits" are in the syntax of
// [ratelimit.ParseLimit]; "quota" is in the syntax of [ParseQuota], and
// absent (or null) for none; "budget" is "user" (the default) or "key";
// "prices", "scopes" and "metered" default to none and false;
// "meter_event" is [Plan].MeterEvent, allowed only with "metered": true,
// and absent for the application's default meter.
//
// Reading is strict: unknown fields, trailing data and bad values are
// errors, which wrap [ErrInvalidPlan] and name the field and the plan, as
// in `plan: invalid plan: plans[1].quota (plan "hobby"): "100/week": ...`.
// Files larger than [MaxFileSize] are refused.
func ReadCatalog(r io.Reader) (*Catalog, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("plan: reading plans: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: the plan file is larger than %d bytes", ErrInvalidPlan, MaxFileSize)
	}
	var file struct {
		Plans *[]json.RawMessage `json:"plans"`
	}
	if err := decodeStrict(data, &file); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	if file.Plans == nil {
		return nil, fmt.Errorf("%w: no \"plans\" list", ErrInvalidPlan)
	}
	plans := make([]Plan, len(*file.Plans))
	for i, raw := range *file.Plans {
		if err := plans[i].fromJSON(raw); err != nil {
			var fe *fieldError
			field, why, name := "", err, plans[i].Name
			if errors.As(err, &fe) {
				field, why = "."+fe.field, fe.err
			}
			return nil, fmt.Errorf("%w: plans[%d]%s (plan %q): %w", ErrInvalidPlan, i, field, name, why)
		}
	}
	return NewCatalog(plans...)
}

// LoadFile reads the plan file at path with [ReadCatalog].
func LoadFile(path string) (*Catalog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	defer f.Close()
	c, err := ReadCatalog(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// fromJSON fills p from one plan of a file. Its name is set as soon as it
// is known, so that errors can name the plan.
func (p *Plan) fromJSON(raw json.RawMessage) error {
	var j planJSON
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return errors.New("a plan is a JSON object")
	}
	if err := decodeStrict(raw, &j); err != nil {
		// Take the name if there is one, to say which plan is wrong.
		var named struct{ Name string }
		_ = json.Unmarshal(raw, &named)
		p.Name = named.Name
		return err
	}
	if j.Name == nil {
		return fieldErr("name", "missing")
	}
	p.Name = *j.Name
	p.Prices = j.Prices
	p.Scopes = j.Scopes
	if j.Limits == nil {
		return fieldErr("limits", "missing; a plan has at least one limit, such as \"10/s\"")
	}
	for i, s := range j.Limits {
		l, err := ratelimit.ParseLimit(s)
		if err != nil {
			return &fieldError{fmt.Sprintf("limits[%d]", i), err}
		}
		p.Limits = append(p.Limits, l)
	}
	if j.Quota != nil {
		q, err := ParseQuota(*j.Quota)
		if err != nil {
			return &fieldError{"quota", err}
		}
		p.Quota = q
	}
	if j.Budget != nil {
		b, err := ParseBudget(*j.Budget)
		if err != nil {
			return &fieldError{"budget", err}
		}
		p.Budget = b
	}
	if j.Metered != nil {
		p.Metered = *j.Metered
	}
	if j.MeterEvent != nil {
		if *j.MeterEvent == "" {
			return fieldErr("meter_event", "empty; name the Stripe meter's event name, or leave the field out for the default meter")
		}
		p.MeterEvent = *j.MeterEvent
	}
	return nil
}

// MarshalJSON returns c in the plan file format that [ReadCatalog] reads,
// every field written (but "quota" and "meter_event" only when the plan
// has one), so that reading it back gives an equal Catalog.
func (c *Catalog) MarshalJSON() ([]byte, error) {
	type planOut struct {
		Name    string   `json:"name"`
		Prices  []string `json:"prices"`
		Limits  []string `json:"limits"`
		Quota   string   `json:"quota,omitempty"`
		Budget  string   `json:"budget"`
		Scopes  []string `json:"scopes"`
		Metered bool     `json:"metered"`
		Meter   string   `json:"meter_event,omitempty"`
	}
	out := struct {
		Plans []planOut `json:"plans"`
	}{Plans: make([]planOut, 0, len(c.plans))}
	for _, p := range c.plans {
		o := planOut{
			Name:    p.Name,
			Prices:  append([]string{}, p.Prices...),
			Limits:  make([]string, len(p.Limits)),
			Quota:   p.Quota.String(),
			Budget:  p.Budget.String(),
			Scopes:  append([]string{}, p.Scopes...),
			Metered: p.Metered,
			Meter:   p.MeterEvent,
		}
		for i, l := range p.Limits {
			o.Limits[i] = l.String()
		}
		out.Plans = append(out.Plans, o)
	}
	return json.Marshal(out)
}

// WriteTo writes c to w in the plan file format, indented for people to
// read and edit, ending with a newline. It implements [io.WriterTo].
func (c *Catalog) WriteTo(w io.Writer) (int64, error) {
	data, err := c.MarshalJSON()
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "  "); err != nil {
		return 0, err
	}
	buf.WriteByte('\n')
	return buf.WriteTo(w)
}
