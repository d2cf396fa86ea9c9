package loopback

import "testing"

func TestHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "app.localhost": true, "127.0.0.1": true, "127.8.9.10": true, "::1": true,
		"localhost.example.com": false, "example.com": false, "0.0.0.0": false, "10.0.0.1": false, "::": false, "": false,
		"notlocalhost": false,
	} {
		if got := Host(host); got != want {
			t.Errorf("Host(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestURL(t *testing.T) {
	for raw, want := range map[string]bool{
		"http://localhost:8080": true, "http://[::1]:8080/x": true, "https://127.0.0.1": true,
		"https://api.example.com": false, "http://0.0.0.0:8080": false, "::bad": false,
	} {
		if got := URL(raw); got != want {
			t.Errorf("URL(%q) = %v, want %v", raw, got, want)
		}
	}
}
