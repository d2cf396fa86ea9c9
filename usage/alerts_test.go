package usage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/usage"
)

type memAlerts struct {
	mu     sync.Mutex
	claims map[string]bool
}

func (m *memAlerts) key(user string, p time.Time, th int) string {
	return user + "|" + p.UTC().Format(time.RFC3339) + "|" + string(rune('0'+th/10))
}

func (m *memAlerts) ClaimAlert(_ context.Context, user string, p time.Time, th int) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.key(user, p, th)
	if m.claims[k] {
		return false, nil
	}
	m.claims[k] = true
	return true, nil
}

func (m *memAlerts) ReleaseAlert(_ context.Context, user string, p time.Time, th int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.claims, m.key(user, p, th))
	return nil
}

func TestAlertsOncePerThresholdAcrossInstances(t *testing.T) {
	store := &memAlerts{claims: map[string]bool{}}
	var mu sync.Mutex
	var sent []usage.Alert
	fail := true
	send := func(_ context.Context, a usage.Alert) error {
		mu.Lock()
		defer mu.Unlock()
		if fail && a.Threshold == 100 {
			fail = false
			return errors.New("mail queue full")
		}
		sent = append(sent, a)
		return nil
	}
	a := usage.NewAlerts(store, usage.AlertOptions{Send: send})
	b := usage.NewAlerts(store, usage.AlertOptions{Send: send}) // a second instance
	defer a.Close()
	defer b.Close()
	p0, p1 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	for used := int64(0); used <= 120; used += 5 {
		a.Observe("1", p0, p1, used, 100)
		b.Observe("1", p0, p1, used, 100)
		a.Drain()
		b.Drain()
	}
	a.Observe("1", p0, p1, 130, 100) // the 100 % alert failed once: sent again
	a.Drain()
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 || sent[0].Threshold != 80 || sent[1].Threshold != 100 {
		t.Fatalf("sent %+v; want one alert at 80 and one at 100", sent)
	}
	if sent[0].Subject != "You have used 80% of your API quota" || sent[0].Used < 80 || sent[0].Limit != 100 {
		t.Errorf("80 %% alert = %+v", sent[0])
	}
}

func TestAlertsOptions(t *testing.T) {
	store := &memAlerts{claims: map[string]bool{}}
	got := make(chan usage.Alert, 4)
	a := usage.NewAlerts(store, usage.AlertOptions{
		Thresholds: []int{50},
		Message:    func(a usage.Alert) (string, string) { return "Half way", "You are at 50 %." },
		Send:       func(_ context.Context, a usage.Alert) error { got <- a; return nil },
	})
	defer a.Close()
	p0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	a.Observe("1", p0, p0.AddDate(0, 1, 0), 49, 100)
	a.Observe("1", p0, p0.AddDate(0, 1, 0), 10, 0) // no quota
	a.Observe("1", p0, p0.AddDate(0, 1, 0), 50, 100)
	select {
	case al := <-got:
		if al.Threshold != 50 || al.Subject != "Half way" {
			t.Errorf("alert %+v", al)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no alert from the background sender")
	}
}
