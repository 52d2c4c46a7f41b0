package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/baton-ha/baton/internal/probe"
)

func TestMain(m *testing.M) {
	if os.Getenv(signalChildEnv) != "" {
		signalChild()
		return
	}
	goleak.VerifyTestMain(m)
}

const port = 8080

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: NOT ROOT — the namespace lab needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); " +
			"run `sudo go test ./internal/lab` to exercise it. Nothing in this test ran.")
	}
}

func newLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	needRoot(t)
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	l, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// ask connects from inside host's namespace to target and returns the whoami
// answer.
func ask(l *Lab, host, target string) (string, error) {
	var who string
	err := l.InNS(host, func() error {
		c, err := net.DialTimeout("tcp", target, 200*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_ = c.(*net.TCPConn).CloseWrite()
		line, err := bufio.NewReader(c).ReadString('\n')
		who = strings.TrimPrefix(strings.TrimSpace(line), "I am ")
		return err
	})
	return who, err
}

func hostPort(addr string) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }

// mustAsk retries for a few seconds: on a loaded machine (CI runs the
// packages in parallel under -race) the first exchange of a fresh lab, ARP
// included, can miss a short dial timeout.
func mustAsk(t *testing.T, l *Lab, from, to string) {
	t.Helper()
	var who string
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if who, err = ask(l, from, hostPort(l.Addr(to))); err == nil && who == to {
			return
		}
	}
	t.Fatalf("%s → %s: got %q, %v; want %q", from, to, who, err, to)
}

func mustNotReach(t *testing.T, l *Lab, from, to string) {
	t.Helper()
	if who, err := ask(l, from, hostPort(l.Addr(to))); err == nil {
		t.Fatalf("%s → %s: answered %q, want blocked", from, to, who)
	}
}

func TestLab(t *testing.T) {
	l := newLab(t, Options{Hosts: 3, IPv6: true})
	if got := strings.Join(l.Hosts(), ","); got != "h1,h2,h3" {
		t.Fatalf("Hosts() = %s", got)
	}
	for _, h := range l.Hosts() {
		if err := l.StartWhoami(h, port); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("addresses", func(t *testing.T) {
		for _, c := range []struct{ host, v4, v6, mac string }{
			{"h1", "10.77.0.11", "fd77::11", "02:77:00:00:00:0b"},
			{"h3", "10.77.0.13", "fd77::13", "02:77:00:00:00:0d"},
			{"client", "10.77.0.2", "fd77::2", "02:77:00:00:00:02"},
			{"h4", "", "", ""},
		} {
			if got := l.Addr(c.host); got != c.v4 {
				t.Errorf("Addr(%s) = %q, want %q", c.host, got, c.v4)
			}
			if got := l.Addr6(c.host); got != c.v6 {
				t.Errorf("Addr6(%s) = %q, want %q", c.host, got, c.v6)
			}
			if got := l.MAC(c.host).String(); got != c.mac {
				t.Errorf("MAC(%s) = %q, want %q", c.host, got, c.mac)
			}
		}
		out, err := l.Run("h2", "ip", "-br", "addr", "show", "dev", l.Iface())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"10.77.0.12/24", "fd77::12/64", "UP"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("h2 ip addr: %q lacks %q", out, want)
			}
		}
		if strings.Contains(string(out), "tentative") {
			t.Errorf("h2 has a tentative address (DAD not off): %q", out)
		}
	})

	t.Run("prober reaches every host", func(t *testing.T) {
		for _, h := range l.Hosts() {
			p, err := l.StartProber(hostPort(l.Addr(h)), 5*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Millisecond)
			probes := p.Stop()
			if len(probes) < 5 {
				t.Errorf("%s: only %d probes in 60ms", h, len(probes))
			}
			for _, pr := range probes {
				if pr.Who != h || pr.Err != "" {
					t.Errorf("%s: probe %+v", h, pr)
					break
				}
			}
		}
		who, err := ask(l, Client, net.JoinHostPort(l.Addr6("h2"), strconv.Itoa(port)))
		if err != nil || who != "h2" {
			t.Errorf("client → [%s]: %q, %v", l.Addr6("h2"), who, err)
		}
	})

	t.Run("whoami speaks HTTP and raw TCP", func(t *testing.T) {
		var body string
		err := l.InNS(Client, func() error {
			c, err := net.DialTimeout("tcp", hostPort(l.Addr("h3")), time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: h3\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			body = resp.Status + " " + string(b)
			return err
		})
		if err != nil || body != "200 OK I am h3\n" {
			t.Errorf("HTTP GET: %q, %v", body, err)
		}
		// A raw client that neither writes nor half-closes still gets the line.
		var line string
		err = l.InNS(Client, func() error {
			c, err := net.DialTimeout("tcp", hostPort(l.Addr("h1")), time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			b, err := io.ReadAll(c)
			line = string(b)
			return err
		})
		if err != nil || line != "I am h1\n" {
			t.Errorf("raw TCP: %q, %v", line, err)
		}
	})

	t.Run("partition", func(t *testing.T) {
		if err := l.Partition([]string{"h1"}, []string{"h2"}); err != nil {
			t.Fatal(err)
		}
		mustNotReach(t, l, "h1", "h2")
		mustNotReach(t, l, "h2", "h1")
		mustAsk(t, l, "h1", "h3")
		mustAsk(t, l, "h2", "h3")
		mustAsk(t, l, Client, "h1")
		if err := l.Partition([]string{Client}, []string{"h3"}); err != nil {
			t.Fatal(err)
		}
		mustNotReach(t, l, Client, "h3")
		mustAsk(t, l, Client, "h2")
		if err := l.Heal(); err != nil {
			t.Fatal(err)
		}
		mustAsk(t, l, "h1", "h2")
		mustAsk(t, l, "h2", "h1")
		mustAsk(t, l, Client, "h3")
		if err := l.Partition([]string{"h1"}, []string{"h1"}); err == nil {
			t.Error("Partition with h1 on both sides: no error")
		}
		if err := l.Partition([]string{"h9"}, []string{"h1"}); err == nil || !strings.Contains(err.Error(), `unknown host "h9"`) {
			t.Errorf("Partition with h9: %v", err)
		}
	})

	t.Run("setnet", func(t *testing.T) {
		// h1 cannot hear h2 (one direction), h3 loses everything from hosts.
		if err := l.SetNet(Net{Drops: []Drop{{From: []string{"h2"}, To: []string{"h1"}}}, Loss: map[string]int{"h3": 100}}); err != nil {
			t.Fatal(err)
		}
		mustNotReach(t, l, "h2", "h1")
		mustNotReach(t, l, "h1", "h3")
		mustAsk(t, l, Client, "h3")
		// What h1 sends still arrives at h2: a UDP datagram h1 → h2 is received.
		var pc net.PacketConn
		if err := l.InNS("h2", func() (err error) { pc, err = net.ListenPacket("udp4", l.Addr("h2")+":9999"); return err }); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if err := l.InNS("h1", func() error {
			c, err := net.Dial("udp4", l.Addr("h2")+":9999")
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("hello"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "hello" {
			t.Errorf("h1 → h2 under Drop{h2 → h1}: %q, %v; want the datagram", buf[:n], err)
		}
		// A new set replaces the old one.
		if err := l.SetNet(Net{Loss: map[string]int{"h2": 100}}); err != nil {
			t.Fatal(err)
		}
		mustAsk(t, l, "h3", "h1")
		mustAsk(t, l, "h1", "h3")
		mustNotReach(t, l, "h1", "h2")
		if err := l.SetNet(Net{}); err != nil {
			t.Fatal(err)
		}
		mustAsk(t, l, "h1", "h2")
		if err := l.SetNet(Net{Drops: []Drop{{From: []string{"h9"}, To: []string{"h1"}}}}); err == nil || !strings.Contains(err.Error(), `unknown host "h9"`) {
			t.Errorf("SetNet with h9: %v", err)
		}
	})

	t.Run("loss", func(t *testing.T) {
		if err := l.Loss([]string{"h2"}, 100); err != nil {
			t.Fatal(err)
		}
		mustNotReach(t, l, "h1", "h2")
		mustAsk(t, l, Client, "h2") // the client is not listed
		mustAsk(t, l, "h1", "h3")
		if err := l.Loss([]string{"h2"}, 30); err != nil {
			t.Fatal(err)
		}
		out, err := l.Run("h2", "nft", "list", "table", "inet", "batonlab")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "mod 100 < 30 drop") || strings.Contains(string(out), "< 100") {
			t.Errorf("Loss 30 did not replace Loss 100:\n%s", out)
		}
		if err := l.Heal(); err != nil {
			t.Fatal(err)
		}
		mustAsk(t, l, "h1", "h2")
		if _, err := l.Run("h2", "nft", "list", "table", "inet", "batonlab"); err == nil {
			t.Error("table inet batonlab still present after Heal")
		}
		if err := l.Loss([]string{"h1"}, 101); err == nil || !strings.Contains(err.Error(), "percent = 101, want 0..100") {
			t.Errorf("Loss 101: %v", err)
		}
	})

	t.Run("link down is an outage the prober sees", func(t *testing.T) {
		p, err := l.StartProber(hostPort(l.Addr("h1")), 5*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		waitFor(t, "probes before link down", func() bool { return countOK(p.Probes()) >= 5 })
		down := time.Now()
		if err := l.LinkDown("h1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		if err := l.LinkUp("h1"); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		waitFor(t, "probes after link up", func() bool {
			ps := p.Probes()
			return countOK(ps) > 0 && ps[len(ps)-1].OK() && ps[len(ps)-1].At.After(up)
		})
		outs := probe.Outages(p.Stop(), down)
		if len(outs) != 1 {
			t.Fatalf("outages = %+v, want exactly one", outs)
		}
		o := outs[0]
		if o.Before != "h1" || o.After != "h1" || o.Ongoing || o.Duration < 140*time.Millisecond || o.Duration > 2*time.Second {
			t.Errorf("outage %+v", o)
		}
		t.Logf("outage: %v (%d failed probes)", o.Duration, o.Failed)
	})

	t.Run("arp watch counts owners", func(t *testing.T) {
		w, err := l.StartARPWatch(l.Addr("h1"), 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		rep := w.Stop()
		if rep.Rounds < 5 || rep.MaxDistinctMACs != 1 || rep.DualRounds != 0 || len(rep.MACs) != 1 || rep.MACs[l.MAC("h1").String()] == 0 {
			t.Errorf("single owner: %+v", rep)
		}

		const vip = "10.77.0.100"
		for _, h := range []string{"h1", "h2"} {
			if _, err := l.Run(h, "ip", "addr", "add", vip+"/24", "dev", l.Iface()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = l.Run(h, "ip", "addr", "del", vip+"/24", "dev", l.Iface()) })
		}
		w, err = l.StartARPWatch(vip, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		rep = w.Stop()
		if rep.MaxDistinctMACs != 2 || rep.DualRounds == 0 || rep.MACs[l.MAC("h1").String()] == 0 || rep.MACs[l.MAC("h2").String()] == 0 {
			t.Errorf("two owners not detected: %+v", rep)
		}
		if _, err := l.StartARPWatch("192.168.1.1", 10*time.Millisecond); err == nil {
			t.Error("ARP watch outside the lab prefix: no error")
		}
	})

	t.Run("processes", func(t *testing.T) {
		dir := t.TempDir()
		log := filepath.Join(dir, "out.log")
		p, err := l.Start("h3", "show", []string{"sh", "-c", "ip -br addr show dev eth0; echo LABVAR=$LABVAR; exit 3"}, []string{"LABVAR=x"}, log)
		if err != nil {
			t.Fatal(err)
		}
		var exit *exec.ExitError
		if err := p.Wait(5 * time.Second); !errors.As(err, &exit) || exit.ExitCode() != 3 {
			t.Errorf("Wait: %v, want exit status 3", err)
		}
		b, _ := os.ReadFile(log)
		if !strings.Contains(string(b), "10.77.0.13/24") || !strings.Contains(string(b), "LABVAR=x") {
			t.Errorf("log: %q", b)
		}

		// Kill takes the whole process group, not just the leader.
		p, err = l.Start("h1", "tree", []string{"sh", "-c", "sleep 60 & echo child=$!; wait"}, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		var child int
		waitFor(t, "child pid in log", func() bool {
			b, _ := os.ReadFile(log)
			_, after, ok := strings.Cut(string(b), "child=")
			if !ok || !strings.Contains(after, "\n") {
				return false
			}
			child, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(after, "\n", 2)[0]))
			return child > 0
		})
		if err := p.Wait(20 * time.Millisecond); !errors.Is(err, ErrTimeout) {
			t.Errorf("Wait on a running process: %v, want ErrTimeout", err)
		}
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Error(err)
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGCONT); !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("Signal after Kill: %v", err)
		}
		waitFor(t, "group member gone", func() bool { return gone(child) })
	})

	t.Run("observers refuse outside targets", func(t *testing.T) {
		for _, target := range []string{"192.0.2.1:80", "[2001:db8::1]:80", "8.8.8.8:53", "10.78.0.1:80"} {
			if _, err := l.StartProber(target, 5*time.Millisecond); err == nil || !strings.Contains(err.Error(), "outside the lab") {
				t.Errorf("StartProber(%s): %v", target, err)
			}
		}
	})

	// Close: processes, namespaces and rules go away, and it is idempotent.
	p, err := l.Start("h2", "sleeper", []string{"sleep", "60"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Partition([]string{"h1"}, []string{"h3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartProber(hostPort(l.Addr("h1")), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartARPWatch(l.Addr("h1"), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	names := []string{l.NS(Bridge), l.NS(Client), l.NS("h1"), l.NS("h2"), l.NS("h3")}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("process still running after Close")
	}
	assertNoNamespaces(t, names...)
	if err := l.Partition([]string{"h1"}, []string{"h2"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Partition after Close: %v", err)
	}
	if _, err := l.StartProber(hostPort(l.Addr("h1")), 10*time.Millisecond); !errors.Is(err, ErrClosed) {
		t.Errorf("StartProber after Close: %v", err)
	}
}

func TestOptions(t *testing.T) {
	if os.Geteuid() != 0 {
		if _, err := New(Options{Hosts: 1}); !errors.Is(err, ErrNotRoot) {
			t.Errorf("New as non-root: %v, want ErrNotRoot", err)
		}
		needRoot(t)
	}
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Hosts: 0}, "lab: Options.Hosts = 0, want 1..200"},
		{Options{Hosts: 201}, "lab: Options.Hosts = 201, want 1..200"},
	} {
		_, err := New(c.opts)
		if err == nil || err.Error() != c.want {
			t.Errorf("New(%+v) = %v, want %q", c.opts, err, c.want)
		}
	}
}

// TestIPv4Only builds the smallest lab: one host, no IPv6.
func TestIPv4Only(t *testing.T) {
	l := newLab(t, Options{Hosts: 1})
	if err := l.StartWhoami("h1", port); err != nil {
		t.Fatal(err)
	}
	if err := l.StartWhoami("h1", port); err == nil {
		t.Error("second whoami on the same port: no error")
	}
	mustAsk(t, l, Client, "h1")
	if l.Addr6("h1") != "" {
		t.Errorf("Addr6 = %q with IPv6 off", l.Addr6("h1"))
	}
	if err := l.Partition([]string{"h1"}, []string{Client}); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, l, Client, "h1")
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := l.StopWhoami("h1", port); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, l, Client, "h1")
}

// TestSweepStale: a lab whose owner died without Close (kill -9, go test
// -timeout) is removed by the next New.
func TestSweepStale(t *testing.T) {
	needRoot(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("bl%d-stale%d", os.Getpid()%1000, time.Now().UnixNano()%1000)
	ns := prefix + "-h1"
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if err := os.MkdirAll("/run/batonlab", 0o755); err != nil {
		t.Fatal(err)
	}
	marker := "/run/batonlab/" + prefix // nsnet's marker file: the owner's pid
	if err := os.WriteFile(marker, []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(marker) })
	newLab(t, Options{Hosts: 1})
	assertNoNamespaces(t, ns)
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("marker still there: %v", err)
	}
}

const signalChildEnv = "BATON_LAB_SIGNAL_CHILD"

// signalChild is the child side of TestSignalCleanup: build a lab, report its
// namespaces, and wait to be signalled.
func signalChild() {
	l, err := New(Options{Hosts: 2})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	if _, err := l.Start("h1", "sleeper", []string{"sleep", "60"}, nil, ""); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	fmt.Println("READY", l.NS(Bridge), l.NS(Client), l.NS("h1"), l.NS("h2"))
	time.Sleep(20 * time.Second)
	fmt.Println("ERROR not signalled")
	os.Exit(3)
}

// TestSignalCleanup: SIGTERM to a process holding a lab removes the lab
// before the process dies.
func TestSignalCleanup(t *testing.T) {
	needRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), signalChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		t.Fatalf("child: %q, %v", line, err)
	}
	names := strings.Fields(strings.TrimPrefix(line, "READY "))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("child exit: %v, want killed by SIGTERM", err)
	}
	assertNoNamespaces(t, names...)
}

func countOK(ps []probe.Probe) int {
	n := 0
	for _, p := range ps {
		if p.OK() {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gone reports whether pid no longer exists (or is a zombie nobody reaped yet).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

func assertNoNamespaces(t *testing.T, names ...string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			have[f[0]] = true
		}
	}
	for _, n := range names {
		if n == "" {
			t.Errorf("empty namespace name")
		}
		if have[n] {
			t.Errorf("namespace %s still exists after Close", n)
		}
	}
}
