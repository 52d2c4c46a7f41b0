// Command proxy measures Baton's TCP proxy (internal/frontdoor/proxy) on loopback against a direct connection and
// against HAProxy in tcp mode: bulk throughput both ways, and the round-trip latency of small messages on one
// persistent connection and on a new connection per message. The backend is in this process for every path; HAProxy
// (started in a temp dir, killed at the end) runs in its own process, the Baton proxy in this one.
//
//	go run ./bench/proxy
//	go run ./bench/proxy -bytes 4294967296 -rounds 50000 -conns 5000
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/frontdoor/proxy"
)

// The backend's protocol: the first byte of a connection picks the mode.
const (
	modeEcho = 'e' // echo everything back
	modeSink = 's' // read until EOF, then write the byte count (8 bytes, big endian)
	modeGen  = 'g' // read a count (8 bytes), write that many bytes, close
)

func main() {
	total := flag.Int64("bytes", 1<<30, "bytes per bulk transfer")
	runs := flag.Int("runs", 3, "bulk transfers per direction and path; the best counts")
	rounds := flag.Int("rounds", 20000, "round trips on the persistent connection")
	conns := flag.Int("conns", 2000, "new connections, one round trip each")
	size := flag.Int("size", 64, "bytes per round-trip message")
	haproxyBin := flag.String("haproxy", "/usr/sbin/haproxy", "HAProxy binary; empty to skip it")
	child := flag.String("child-proxy", "", "internal: run only the Baton proxy to this backend, in this process")
	flag.Parse()
	if *child != "" {
		if err := childProxy(*child); err != nil {
			fmt.Fprintln(os.Stderr, "bench/proxy child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*total, *runs, *rounds, *conns, *size, *haproxyBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench/proxy:", err)
		os.Exit(1)
	}
}

type path struct {
	name string
	addr string
}

type result struct {
	up, down           float64 // MB/s
	p50, p99, n50, n99 time.Duration
}

func run(total int64, runs, rounds, conns, size int, haproxyBin string) error {
	backend, err := startBackend()
	if err != nil {
		return err
	}
	defer backend.Close()

	// The Baton proxy runs in a process of its own, as HAProxy does and as it does in the agent, so that it does
	// not share this process's scheduler with the clients and the backend.
	bp, bpAddr, err := startChildProxy(backend.Addr().String())
	if err != nil {
		return err
	}
	defer bp.stop()

	paths := []path{{"direct", backend.Addr().String()}, {"baton proxy", bpAddr}}
	version := "not run"
	if haproxyBin != "" {
		dir, err := os.MkdirTemp("", "baton-bench-proxy-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		out, err := exec.Command(haproxyBin, "-v").Output()
		if err != nil {
			return fmt.Errorf("%s -v: %w (install haproxy, or pass -haproxy '' to skip it)", haproxyBin, err)
		}
		if f := strings.Fields(string(out)); len(f) >= 3 {
			version = strings.Join(f[:3], " ") // "HAProxy version X"
		}
		for _, v := range []struct {
			name, extra string
		}{{"haproxy", ""}, {"haproxy splice-auto", "    option splice-auto\n"}} {
			hp, addr, err := startHAProxy(haproxyBin, filepath.Join(dir, strings.ReplaceAll(v.name, " ", "-")),
				backend.Addr().String(), v.extra)
			if err != nil {
				return err
			}
			defer hp.stop()
			paths = append(paths, path{v.name, addr})
		}
	}

	results := make([]result, len(paths))
	for i, pa := range paths {
		fmt.Fprintf(os.Stderr, "measuring %s...\n", pa.name)
		r := &results[i]
		for range runs {
			up, err := upload(pa.addr, total)
			if err != nil {
				return fmt.Errorf("%s: upload: %w", pa.name, err)
			}
			down, err := download(pa.addr, total)
			if err != nil {
				return fmt.Errorf("%s: download: %w", pa.name, err)
			}
			r.up, r.down = max(r.up, up), max(r.down, down)
		}
		if r.p50, r.p99, err = persistentRTT(pa.addr, rounds, size); err != nil {
			return fmt.Errorf("%s: round trips: %w", pa.name, err)
		}
		if r.n50, r.n99, err = newConnRTT(pa.addr, conns, size); err != nil {
			return fmt.Errorf("%s: new connections: %w", pa.name, err)
		}
	}

	fmt.Printf("Loopback, %d CPUs, %s, %s. Throughput: best of %d transfers of %d MiB on one connection. "+
		"Round trips: %d-byte messages, %d on one persistent connection, and %d each on a new connection "+
		"(connect, write, read, close).\n\n",
		runtime.NumCPU(), runtime.Version(), version, runs, total>>20, size, rounds, conns)
	fmt.Println("| path | upload MB/s | download MB/s | persistent p50 | persistent p99 | new conn p50 | new conn p99 |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for i, pa := range paths {
		r := results[i]
		fmt.Printf("| %s | %.0f | %.0f | %s | %s | %s | %s |\n", pa.name, r.up, r.down,
			us(r.p50), us(r.p99), us(r.n50), us(r.n99))
	}
	return nil
}

// childProxy runs a Baton proxy to backend on a free loopback port, prints the port's address on stdout, and
// runs until stdin ends (the parent exits or closes it).
func childProxy(backend string) error {
	p, err := proxy.Listen(proxy.Options{Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer p.Close()
	p.Update([]proxy.Target{{Node: "bench", Addr: backend}}, proxy.Failover)
	fmt.Println(p.Addr())
	io.Copy(io.Discard, os.Stdin)
	s := p.Stats()
	if s.Refused+s.Unreachable+s.DialFailures > 0 {
		return fmt.Errorf("%d connections refused, %d unreachable, %d dial failures",
			s.Refused, s.Unreachable, s.DialFailures)
	}
	return nil
}

type child struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

func startChildProxy(backend string) (*child, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(exe, "-child-proxy", backend)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	c := &child{cmd, stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		c.stop()
		return nil, "", fmt.Errorf("the proxy process did not start: %w", err)
	}
	return c, strings.TrimSpace(line), nil
}

func (c *child) stop() {
	c.stdin.Close()
	c.cmd.Wait()
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func startBackend() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c.(*net.TCPConn))
		}
	}()
	return ln, nil
}

func serve(c *net.TCPConn) {
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeEcho:
		io.Copy(c, c)
	case modeSink:
		buf := make([]byte, 256<<10)
		var n uint64
		for {
			k, err := c.Read(buf)
			n += uint64(k)
			if err != nil {
				break
			}
		}
		binary.Write(c, binary.BigEndian, n)
	case modeGen:
		var n uint64
		if binary.Read(c, binary.BigEndian, &n) != nil {
			return
		}
		buf := make([]byte, 256<<10)
		for n > 0 {
			k := min(n, uint64(len(buf)))
			if _, err := c.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	}
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func upload(addr string, total int64) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	if _, err := c.Write([]byte{modeSink}); err != nil {
		return 0, err
	}
	for left := total; left > 0; {
		k, err := c.Write(buf[:min(left, int64(len(buf)))])
		if err != nil {
			return 0, err
		}
		left -= int64(k)
	}
	c.(*net.TCPConn).CloseWrite()
	var got uint64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return 0, err
	}
	el := time.Since(start)
	if got != uint64(total) {
		return 0, fmt.Errorf("backend received %d bytes of %d", got, total)
	}
	return mbps(total, el), nil
}

func download(addr string, total int64) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	req := make([]byte, 9)
	req[0] = modeGen
	binary.BigEndian.PutUint64(req[1:], uint64(total))
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	var got int64
	for {
		k, err := c.Read(buf)
		got += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	el := time.Since(start)
	if got != total {
		return 0, fmt.Errorf("received %d bytes of %d", got, total)
	}
	return mbps(total, el), nil
}

func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100]
}

func persistentRTT(addr string, rounds, size int) (p50, p99 time.Duration, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		return 0, 0, err
	}
	msg, got := make([]byte, size), make([]byte, size)
	warm := rounds / 10
	ds := make([]time.Duration, 0, rounds)
	for i := range warm + rounds {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return 0, 0, err
		}
		if i >= warm {
			ds = append(ds, time.Since(start))
		}
	}
	p50, p99 = percentiles(ds)
	return p50, p99, nil
}

func newConnRTT(addr string, conns, size int) (p50, p99 time.Duration, err error) {
	msg, got := make([]byte, 1+size), make([]byte, size)
	msg[0] = modeEcho
	ds := make([]time.Duration, 0, conns)
	for range conns {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, 0, err
		}
		if _, err := c.Write(msg); err != nil {
			c.Close()
			return 0, 0, err
		}
		_, err = io.ReadFull(c, got)
		c.Close()
		if err != nil {
			return 0, 0, err
		}
		ds = append(ds, time.Since(start))
	}
	p50, p99 = percentiles(ds)
	return p50, p99, nil
}

type haproxy struct {
	cmd *exec.Cmd
}

// startHAProxy runs HAProxy in the foreground (-db) in dir, forwarding a free loopback port to backend.
func startHAProxy(bin, dir, backend, extra string) (*haproxy, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`global
    maxconn 4000
defaults
    mode tcp
    timeout connect 1s
    timeout client 1m
    timeout server 1m
listen bench
    bind %s
%s    server s1 %s
`, addr, extra, backend)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		return nil, "", err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-f", cfgPath, "-db")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // gone with us, even after a crash
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	hp := &haproxy{cmd: cmd}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return hp, addr, nil
		}
		if time.Now().After(deadline) {
			hp.stop()
			return nil, "", fmt.Errorf("haproxy did not listen on %s within 5s: %v\n%s", addr, err, tail(logf.Name()))
		}
	}
}

func (h *haproxy) stop() {
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

func tail(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	for s := bufio.NewScanner(f); s.Scan(); {
		lines = append(lines, s.Text())
	}
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
