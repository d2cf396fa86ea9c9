package netlist

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := Parse(" 10.1.2.3/8,192.168.1.7\tfd00::/8,,\n2001:db8::1\r::ffff:10.0.0.0/104 ", false)
	want := []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"), // as written: the caller masks
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("::ffff:10.0.0.0/104"),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Parse = %v, %v; want %v", got, err, want)
	}
	for _, blank := range []string{"", " ", ",\t,\n"} {
		if got, err := Parse(blank, false); got != nil || err != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil", blank, got, err)
		}
	}
}

func TestParseZones(t *testing.T) {
	got, err := Parse("fe80::1%eth0", true)
	if want := []netip.Prefix{netip.MustParsePrefix("fe80::1/128")}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Parse(zone, drop) = %v, %v; want %v", got, err, want)
	}
	if _, err := Parse("fe80::1%eth0", false); !errors.Is(err, errZone) {
		t.Errorf("Parse(zone, keep) = %v; want the zone refused", err)
	}
	var e *EntryError
	if _, err := Parse("fe80::1%eth0/64", true); !errors.As(err, &e) || !e.Network {
		t.Errorf("Parse(zoned prefix) = %v; want a refused network", err)
	}
}

func TestParseEntryError(t *testing.T) {
	for _, tt := range []struct {
		in, entry string
		network   bool
	}{
		{"10.0.0.0/8, 10.0.0.0/33", "10.0.0.0/33", true},
		{"10.0.0.0/8;rm -rf", "10.0.0.0/8;rm", true},
		{"192.0.2.1 example.com 10.0.0.0/", "example.com", false},
		{"10.0.0.0/", "10.0.0.0/", true},
	} {
		got, err := Parse(tt.in, true)
		var e *EntryError
		if got != nil || !errors.As(err, &e) || e.Entry != tt.entry || e.Network != tt.network || e.Err == nil {
			t.Errorf("Parse(%q) = %v, %v; want an EntryError for %q (network %v)", tt.in, got, err, tt.entry, tt.network)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "10.0.0.0/8, 192.168.1.7 fd00::/8", "fe80::1%eth0", "fe80::1%x/64", "1.2.3.4/99", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, drop := range []bool{false, true} {
			ps, err := Parse(s, drop)
			if err != nil {
				var e *EntryError
				if ps != nil || !errors.As(err, &e) {
					t.Fatalf("Parse(%q, %v) = %v, %v", s, drop, ps, err)
				}
				continue
			}
			for _, p := range ps {
				if !p.IsValid() || p.Addr().Zone() != "" {
					t.Fatalf("Parse(%q, %v) gave %v", s, drop, p)
				}
			}
		}
	})
}
