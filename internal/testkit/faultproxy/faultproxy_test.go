package faultproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo starts a line echo server on loopback.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

func TestDownAndUp(t *testing.T) {
	p := Start(t, echo(t))
	if err := roundTrip(p.Addr()); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	live, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	time.Sleep(50 * time.Millisecond) // let the proxy pick the connection up
	p.Down()
	if err := roundTrip(p.Addr()); err == nil {
		t.Fatal("a new connection worked while the proxy was down")
	}
	live.SetDeadline(time.Now().Add(2 * time.Second))
	live.Write([]byte("ping\n"))
	if _, err := bufio.NewReader(live).ReadString('\n'); err == nil {
		t.Fatal("a live connection survived Down")
	}
	p.Up()
	if err := roundTrip(p.Addr()); err != nil {
		t.Fatalf("after Up: %v", err)
	}
}

func TestDelay(t *testing.T) {
	p := Start(t, echo(t))
	p.SetDelay(200 * time.Millisecond)
	start := time.Now()
	if err := roundTrip(p.Addr()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("round trip took %v with 200ms delay each way", d)
	}
}
