package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/config"
)

// tcpChecker passes when a TCP connection to addr opens within the timeout.
type tcpChecker struct {
	addr    string
	timeout time.Duration
}

func newTCP(c config.Check) *tcpChecker { return &tcpChecker{addr: c.Address, timeout: c.Timeout.D()} }

func (t *tcpChecker) Check(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel, budget := withTimeout(ctx, t.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		detail := err.Error()
		if why := interrupted(ctx, budget); why != "" {
			detail = "dial tcp " + t.addr + ": " + why
		}
		return Result{Detail: detail, Took: time.Since(start), At: start}
	}
	_ = conn.Close()
	return Result{OK: true, Detail: "connected to " + t.addr, Took: time.Since(start), At: start}
}

// httpChecker passes on a GET answered with a status in [lo, hi] whose body (the first MaxBody bytes) contains
// want, if want is set.
type httpChecker struct {
	url     string
	secrets []string // forms of url that show its password or query, as they may appear in a detail
	public  string   // url with the password and query values replaced by "xxxxx"
	lo, hi  int
	want    []byte
	timeout time.Duration
	client  *http.Client
}

func newHTTP(c config.Check) *httpChecker {
	lo, hi := c.ExpectStatusRange()
	public, secrets := redactURL(c.URL)
	return &httpChecker{
		url:     c.URL,
		public:  public,
		secrets: secrets,
		lo:      lo,
		hi:      hi,
		want:    []byte(c.BodyContains),
		timeout: c.Timeout.D(),
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:       nil, // a local health check must not go through $HTTP_PROXY
				DialContext: (&net.Dialer{}).DialContext,
				// A fresh connection per probe: a reused one can hide a server that no longer accepts new ones.
				DisableKeepAlives: true,
				// Operators set tls_skip_verify for self-signed certificates on local endpoints.
				TLSClientConfig:        &tls.Config{InsecureSkipVerify: c.TLSSkipVerify}, //nolint:gosec
				MaxResponseHeaderBytes: MaxBody,
			},
			// The check judges the endpoint itself: a redirect is its answer (3xx counts against expect_status),
			// and following it could probe some other service.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (h *httpChecker) Check(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel, budget := withTimeout(ctx, h.timeout)
	defer cancel()
	res := func(ok bool, detail string) Result {
		r := Result{OK: ok, Detail: detail, Took: time.Since(start), At: start}
		if len(h.secrets) > 0 {
			r.Redacted = detail
			for _, s := range h.secrets {
				r.Redacted = strings.ReplaceAll(r.Redacted, s, h.public)
			}
		}
		return r
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return res(false, err.Error())
	}
	req.Header.Set("User-Agent", "baton-health-check")
	resp, err := h.client.Do(req)
	if err != nil {
		if why := interrupted(ctx, budget); why != "" {
			return res(false, "GET "+h.url+": "+why)
		}
		return res(false, err.Error())
	}
	defer resp.Body.Close()
	status := fmt.Sprintf("http %d from %s", resp.StatusCode, h.url)
	if resp.StatusCode < h.lo || resp.StatusCode > h.hi {
		return res(false, status)
	}
	if len(h.want) == 0 {
		return res(true, status)
	}
	found, err := bodyContains(resp.Body, h.want)
	switch {
	case found:
		return res(true, status)
	case interrupted(ctx, budget) != "":
		return res(false, status+": reading body: "+interrupted(ctx, budget))
	case err != nil:
		return res(false, status+": reading body: "+err.Error())
	default:
		return res(false, fmt.Sprintf("%s: body does not contain %q (in the first %d KiB)", status, h.want, MaxBody>>10))
	}
}

// redactURL returns raw with its password and query values replaced by "xxxxx", and the forms of raw that would
// give them away in a detail (raw itself, and net/http's error form with the password as "***"); no forms when
// raw has neither a password nor a query.
func redactURL(raw string) (public string, secrets []string) {
	u, err := url.Parse(raw)
	if err != nil {
		return raw, nil
	}
	_, hasPassword := u.User.Password()
	if !hasPassword && u.RawQuery == "" {
		return raw, nil
	}
	p := *u
	if hasPassword {
		p.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		p.RawQuery = q.Encode()
	}
	public = p.String()
	secrets = []string{raw, u.String()}
	if hasPassword {
		// net/http's errors print the URL with the password as "***" (and the query as it is).
		s := *u
		s.User = url.UserPassword(u.User.Username(), "***")
		secrets = append(secrets, s.String())
	}
	if u.RawQuery != "" {
		secrets = append(secrets, "?"+u.RawQuery) // whatever else quotes the query
	}
	return public, secrets
}

// bodyContains reads up to MaxBody bytes of r and reports whether they contain want. It stops reading as soon as
// want is seen, so an endpoint that streams after its status line still passes. err is the read error, if any
// other than EOF.
func bodyContains(r io.Reader, want []byte) (bool, error) {
	buf := make([]byte, 0, 4096)
	r = io.LimitReader(r, MaxBody)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		// Only the new bytes and the len(want)-1 before them can complete a match.
		from := max(0, len(buf)-len(want)+1)
		buf = buf[:len(buf)+n]
		if bytes.Contains(buf[from:], want) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// execChecker passes when argv exits 0. It runs directly (no shell) in its own process group, which is killed
// with SIGKILL when the probe times out or is cancelled, so a hung check leaves nothing behind.
type execChecker struct {
	argv    []string
	timeout time.Duration
}

// execWaitDelay bounds the wait for a check's output pipes after it exits or is killed: a descendant that left
// the process group (setsid) and kept stdout open must not hang the probe.
const execWaitDelay = 250 * time.Millisecond

func newExec(c config.Check) *execChecker {
	return &execChecker{argv: c.Command, timeout: c.Timeout.D()}
}

func (e *execChecker) Check(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel, budget := withTimeout(ctx, e.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.argv[0], e.argv[1:]...)
	// Pdeathsig: a check must not outlive the agent that runs it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	out := &headBuffer{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()

	r := Result{Took: time.Since(start), At: start}
	switch {
	case cmd.Process == nil: // did not start, e.g. no such file
		r.Detail = err.Error()
		return r
	case err == nil:
		r.OK, r.Detail = true, "exit status 0"
		return r
	case interrupted(ctx, budget) != "":
		r.Detail = interrupted(ctx, budget) + " (killed)"
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success():
		// It exited 0; only a background child of its kept the output open.
		r.OK, r.Detail = true, "exit status 0"
		return r
	default:
		r.Detail = err.Error() // "exit status 1", "signal: segmentation fault"
	}
	if o := out.String(); o != "" {
		// The output may hold anything the check prints (connection strings, tokens): only readers with the
		// API token see it.
		r.Redacted = r.Detail + " (output hidden: send the API token to see it)"
		r.Detail += ": " + o
	}
	return r
}

// headBuffer keeps the first max bytes written to it and drops the rest, never failing a write so the child is
// never blocked on (or killed by) a full pipe.
type headBuffer struct {
	max       int
	buf       []byte
	truncated bool
}

func (b *headBuffer) Write(p []byte) (int, error) {
	room := b.max - len(b.buf)
	if len(p) > room {
		b.truncated = true
	}
	b.buf = append(b.buf, p[:min(len(p), max(room, 0))]...)
	return len(p), nil
}

// String returns the kept output as trimmed, valid UTF-8, with "…" when some was dropped.
func (b *headBuffer) String() string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b.buf), "\uFFFD"))
	if b.truncated && s != "" {
		s += "…"
	}
	return s
}
