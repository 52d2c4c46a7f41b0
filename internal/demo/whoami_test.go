package demo

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWhoamiServer asks the service the three ways clients do: HTTP,
// raw TCP with a half-close (probe.Whoami), and raw TCP that stays silent (a
// tcp health check that reads).
func TestWhoamiServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := NewWhoamiServer("n1")
	s.Serve(ln)
	stop := s.Close
	defer stop()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "I am n1\n" {
		t.Errorf("GET: %s %q", resp.Status, body)
	}
	resp, err = client.Head("http://" + addr + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("HEAD: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, halfClose := range []bool{true, false} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if halfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(line) != "I am n1\n" {
			t.Errorf("raw (half-close %v): %q, %v", halfClose, line, err)
		}
	}
	stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting after stop")
	} else if !strings.Contains(err.Error(), "refused") {
		t.Logf("dial after stop: %v", err)
	}
}
