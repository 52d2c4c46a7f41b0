package nemesis

import (
	"context"
	"crypto/rand"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
)

// floodPorts are the ports every node listens on: heartbeats (UDP) and the
// quorum (TCP) on 7946, the API on 7480, the whoami service on 8080 and
// PostgreSQL on 5432.
var floodPorts = []int{7946, 7480, 8080, 5432}

// Per node and port: connections kept open, each writing junk now and then;
// and junk datagrams per second to the heartbeat port. About what the
// attack of issue 13 used (~70 idle TCP connections per node), at a rate a
// shared CI machine can afford.
const (
	floodConns = 16
	floodUDP   = 200
)

// flood sends junk from the client namespace, an address that is not a
// cluster node, to every port of every host: TCP connections that open,
// send random bytes (never a valid TLS or HTTP request) and stay open, and
// random UDP datagrams to the heartbeat port.
type flood struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

func startFlood(l *lab.Lab) (*flood, error) {
	f := &flood{done: make(chan struct{}), open: map[net.Conn]bool{}}
	dial := l.Dialer(lab.Client)
	for _, h := range l.Hosts() {
		for _, p := range floodPorts {
			addr := net.JoinHostPort(l.Addr(h), strconv.Itoa(p))
			for range floodConns {
				f.wg.Add(1)
				go f.tcp(dial, addr)
			}
		}
		var pc net.Conn
		if err := l.InNS(lab.Client, func() (err error) { pc, err = net.Dial("udp4", net.JoinHostPort(l.Addr(h), "7946")); return err }); err != nil {
			f.stop()
			return nil, err
		}
		f.wg.Add(1)
		go f.udp(pc)
	}
	return f, nil
}

func (f *flood) tcp(dial probe.DialFunc, addr string) {
	defer f.wg.Done()
	junk := make([]byte, 64)
	for {
		select {
		case <-f.done:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := dial(ctx, "tcp", addr)
		cancel()
		if err != nil {
			if f.sleep(200 * time.Millisecond) {
				return
			}
			continue
		}
		f.mu.Lock()
		f.open[c] = true
		f.mu.Unlock()
		for {
			_, _ = rand.Read(junk)
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(junk[:1+int(junk[0])%len(junk)]); err != nil {
				break
			}
			if f.sleep(500 * time.Millisecond) {
				break
			}
		}
		c.Close()
		f.mu.Lock()
		delete(f.open, c)
		f.mu.Unlock()
	}
}

func (f *flood) udp(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	t := time.NewTicker(time.Second / floodUDP)
	defer t.Stop()
	junk := make([]byte, 512)
	for {
		select {
		case <-f.done:
			return
		case <-t.C:
		}
		_, _ = rand.Read(junk)
		_, _ = c.Write(junk[:16+int(junk[0])%(len(junk)-16)])
	}
}

// sleep waits d; it reports true when the flood is stopping.
func (f *flood) sleep(d time.Duration) bool {
	select {
	case <-f.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (f *flood) stop() {
	select {
	case <-f.done:
		return
	default:
	}
	close(f.done)
	f.mu.Lock()
	for c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
