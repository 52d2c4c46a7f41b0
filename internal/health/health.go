// Package health runs a group's local health checks (tcp, http, exec) and turns their probe results into one
// healthy/unhealthy answer per group, with HAProxy-style rise and fall counts so that one slow or failed probe does
// not give a group away. It plays the part of keepalived's vrrp_script/track_script.
//
// A Checker makes one probe; New builds one from a config.Check. A Group runs every check of a group, each in its
// own goroutine on its own interval and timeout, keeps each check's state, and calls back when the group's overall
// health flips. A check starts unhealthy: a node that has just started must pass `rise` probes in a row before it
// may be given a group. A group without checks is always healthy.
//
// See README.md for the check types and their fields.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/config"
)

// Result is the outcome of one probe.
type Result struct {
	OK bool `json:"ok"`
	// Detail is a short reason for people, such as "http 503 from http://127.0.0.1:8080/healthz",
	// "dial tcp 127.0.0.1:5432: connect: connection refused", "exit status 1: <output>" or "timed out after 1s".
	Detail string `json:"detail"`
	// Took is how long the probe ran.
	Took time.Duration `json:"took"`
	// At is when the probe started; zero if there has been no probe yet.
	At time.Time `json:"at,omitzero"`
	// Redacted is Detail without what only the API token's holders may see (the password and query of an http
	// check's URL, an exec check's output); "" when Detail holds nothing of the kind. Never in JSON: Public
	// puts it in Detail's place.
	Redacted string `json:"-"`
}

// Public returns r as an API reader without the token may see it: Detail replaced by Redacted, if set.
func (r Result) Public() Result {
	if r.Redacted != "" {
		r.Detail = r.Redacted
	}
	r.Redacted = ""
	return r
}

// Public returns s with its results made public (see Result.Public).
func (s CheckState) Public() CheckState {
	s.Last, s.LastFailure = s.Last.Public(), s.LastFailure.Public()
	return s
}

// PublicStates returns states with every result made public, leaving states as they are.
func PublicStates(states []CheckState) []CheckState {
	out := make([]CheckState, len(states))
	for i, s := range states {
		out[i] = s.Public()
	}
	return out
}

// resultJSON is Result on the wire: Took is written as a duration string ("1.5ms"), as config.Duration is.
type resultJSON struct {
	OK     bool            `json:"ok"`
	Detail string          `json:"detail"`
	Took   config.Duration `json:"took"`
	At     time.Time       `json:"at,omitzero"`
}

// MarshalJSON writes r with Took as a duration string such as "1.5ms".
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{OK: r.OK, Detail: r.Detail, Took: config.Duration(r.Took), At: r.At})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w resultJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Result{OK: w.OK, Detail: w.Detail, Took: w.Took.D(), At: w.At}
	return nil
}

// Checker makes one probe of a service.
//
// Check blocks for at most the check's own timeout or until ctx is done, whichever comes first; on either it gives
// up, cleans up (an exec check's process group is killed) and returns a failed Result. It is safe to call from
// several goroutines at once.
type Checker interface {
	Check(ctx context.Context) Result
}

// Probe limits.
const (
	// MaxBody is how much of an http response body is read and searched for body_contains.
	MaxBody = 64 << 10
	// MaxOutput is how much of an exec check's combined stdout and stderr is kept for Detail.
	MaxOutput = 1 << 10
)

// New returns the Checker for c. Zero interval, timeout, rise, fall and expect_status take config's defaults, as
// config.Parse would fill them in; anything else that is wrong is an error naming the field (a config.FieldError
// whose Path is the field, e.g. "url").
func New(c config.Check) (Checker, error) {
	c, err := normalize(c)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "tcp":
		return newTCP(c), nil
	case "http":
		return newHTTP(c), nil
	default: // "exec"; normalize accepts nothing else
		return newExec(c), nil
	}
}

// normalize fills in defaults the way config.ApplyDefaults does and checks c the way config.Validate does, so that
// a Check built in code (not parsed) behaves the same. It returns the first problem.
func normalize(c config.Check) (config.Check, error) {
	bad := func(field, format string, args ...any) (config.Check, error) {
		return c, config.FieldError{Path: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch c.Type {
	case "tcp":
		if c.Address == "" {
			return bad("address", "missing (a tcp check needs e.g. address: 127.0.0.1:5432)")
		}
		if !validHostPort(c.Address) {
			return bad("address", "%q is not host:port (e.g. 127.0.0.1:5432)", c.Address)
		}
	case "http":
		if c.URL == "" {
			return bad("url", "missing (an http check needs e.g. url: http://127.0.0.1:8080/healthz)")
		}
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("url", "%q is not an http or https URL (e.g. http://127.0.0.1:8080/healthz)", c.URL)
		}
		if c.ExpectStatus == "" {
			c.ExpectStatus = config.DefaultExpectStatus
		}
		if _, _, ok := config.ParseStatusRange(c.ExpectStatus); !ok {
			return bad("expect_status", "%q is not a status or range (e.g. 200 or 200-399)", c.ExpectStatus)
		}
	case "exec":
		if len(c.Command) == 0 {
			return bad("command", "missing (an exec check needs an argv list, e.g. command: [/usr/local/bin/check-web, --quick])")
		}
		if strings.TrimSpace(c.Command[0]) == "" {
			return bad("command[0]", "empty program name; the first element is the program to run (there is no shell)")
		}
	case "":
		return bad("type", "missing; use tcp, http or exec")
	default:
		return bad("type", "%q is not a check type; use tcp, http or exec", c.Type)
	}
	// A field only another check type reads is most likely meant for a different check.
	for _, f := range []struct {
		name  string
		set   bool
		users string
	}{
		{"address", c.Address != "", "tcp"},
		{"url", c.URL != "", "http"},
		{"command", len(c.Command) > 0, "exec"},
		{"expect_status", c.ExpectStatus != "", "http"},
		{"body_contains", c.BodyContains != "", "http"},
		{"tls_skip_verify", c.TLSSkipVerify, "http"},
	} {
		if f.set && f.users != c.Type {
			return bad(f.name, "%s check does not use %s (only %s checks do)", article(c.Type), f.name, f.users)
		}
	}

	if c.Interval == 0 {
		c.Interval = config.DefaultCheckInterval
	}
	if c.Interval.D() < config.MinCheckInterval {
		return bad("interval", "%v is too short; use at least %v", c.Interval, config.MinCheckInterval)
	}
	if c.Timeout == 0 {
		c.Timeout = min(config.DefaultCheckTimeout, c.Interval)
	}
	if c.Timeout < 0 {
		return bad("timeout", "%v must be above 0 (e.g. 1s)", c.Timeout)
	}
	if c.Fall == 0 {
		c.Fall = config.DefaultFall
	}
	if c.Fall < 0 {
		return bad("fall", "%d must be at least 1 (failures in a row that make the service unhealthy)", c.Fall)
	}
	if c.Rise == 0 {
		c.Rise = config.DefaultRise
	}
	if c.Rise < 0 {
		return bad("rise", "%d must be at least 1 (successes in a row that make it healthy again)", c.Rise)
	}
	return c, nil
}

// article returns "a tcp", "an http", "an exec".
func article(typ string) string {
	if typ == "tcp" {
		return "a " + typ
	}
	return "an " + typ
}

// validHostPort reports whether s is host:port with a numeric port, as config requires.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || strings.ContainsAny(host, " \t/") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// withTimeout bounds one probe by the check's own timeout and returns the time it has, for "timed out after" in
// Detail (less than the timeout when the caller's deadline is earlier).
func withTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc, time.Duration) {
	budget := timeout
	if parent, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(parent).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, cancel, budget
}

// interrupted describes why ctx ended a probe early, or "" if it did not.
func interrupted(ctx context.Context, budget time.Duration) string {
	switch ctx.Err() {
	case nil:
		return ""
	case context.DeadlineExceeded:
		return fmt.Sprintf("timed out after %v", budget)
	default:
		return "cancelled"
	}
}
