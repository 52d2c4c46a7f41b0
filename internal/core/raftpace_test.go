package core

import (
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/quorum"
)

// leaderQuorum is a fixed view with a settable leader.
type leaderQuorum struct {
	s      *quorum.State
	leader string
}

func (q *leaderQuorum) View() *quorum.State          { return q.s }
func (q *leaderQuorum) IsLeader() bool               { return false }
func (q *leaderQuorum) Leader() string               { return q.leader }
func (q *leaderQuorum) Propose(quorum.Command) error { return quorum.ErrNotLeader }

func TestRaftIdleOnlyWhileTheLeaderOwnsNothing(t *testing.T) {
	q := &leaderQuorum{s: quorum.NewState()}
	n, err := NewNode(Deps{Name: "n2", Spec: testSpec(), Quorum: q, Releases: &MemReleases{}, WallNow: func() time.Time { return time.Unix(0, 0) },
		Send: func(string, *cluster.Message) {}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		owner, leader string
		idle          bool
	}{
		{"no leader known", "n1", "", false},
		{"the group has no owner: a failover may be under way", "", "w1", false},
		{"the witness leads, n1 owns", "n1", "w1", true},
		{"the standby leads, n1 owns", "n1", "n2", true},
		{"the owner leads: its death needs an election before the failover commits", "n1", "n1", false},
		{"the leader became the owner", "n2", "n2", false},
		{"leadership moved off the owner again", "n2", "w1", true},
	}
	for _, tc := range cases {
		q.s = withOwner(tc.owner, 3)
		if tc.owner == "" {
			q.s = quorum.NewState()
		}
		q.leader = tc.leader
		if got := n.RaftIdle(); got != tc.idle {
			t.Errorf("%s: RaftIdle() = %v, want %v", tc.name, got, tc.idle)
		}
	}
}

// TestQuietHeartbeats: a witness with nothing in flux heartbeats at the quiet
// interval; once it released a lease it heartbeats at the full rate until the
// group has a new owner and a failure timeout has passed; an owner always
// heartbeats at the full rate.
func TestQuietHeartbeats(t *testing.T) {
	spec := testSpec()
	spec.Timing.QuietHeartbeatInterval = 100 * time.Millisecond
	q := &fixedQuorum{}
	q.set("n1", 3)
	var sent []time.Duration
	var now time.Duration
	n, err := NewNode(Deps{Name: "w1", Spec: spec, Quorum: q, Releases: &MemReleases{}, WallNow: func() time.Time { return time.Unix(0, 0) },
		Send: func(to string, m *cluster.Message) {
			if m.Kind == cluster.KindHeartbeat && to == "n1" {
				sent = append(sent, now)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(0); err != nil {
		t.Fatal(err)
	}
	// gaps returns the gaps between heartbeats to n1 sent in [from, to).
	gaps := func(from, to time.Duration) []time.Duration {
		var out []time.Duration
		for i := 1; i < len(sent); i++ {
			if sent[i-1] >= from && sent[i] < to {
				out = append(out, sent[i]-sent[i-1])
			}
		}
		return out
	}
	// run ticks the witness up to `to`; the owner (if any) claims every 50 ms.
	owner, epoch := "n1", uint64(3)
	run := func(to time.Duration) {
		for ; now < to; now += TickPeriod(n.timing) {
			if owner != "" && now%(50*time.Millisecond) == 0 {
				if acked := n.grant(now, owner, claim(epoch)); len(acked) != 1 {
					t.Fatalf("t=%v: %s's claim of epoch %d not granted", now, owner, epoch)
				}
			}
			n.Tick(now)
		}
	}
	run(2 * time.Second)
	if len(gaps(time.Second, 2*time.Second)) < 5 {
		t.Fatalf("heartbeats to n1 at %v: too few to judge", sent)
	}
	for _, g := range gaps(time.Second, 2*time.Second) {
		if g != 100*time.Millisecond {
			t.Fatalf("witness with nothing in flux: heartbeat gaps %v, want the quiet 100 ms", gaps(time.Second, 2*time.Second))
		}
	}
	// n1 falls silent: w1 releases after the hold and heartbeats at the full rate.
	owner = ""
	run(2*time.Second + 2*n.hold)
	if n.vote["web"].releasedMax != 3 {
		t.Fatal("not released")
	}
	rel := n.vote["web"].releasedAt
	for _, g := range gaps(rel, rel+n.hold) {
		if g != 50*time.Millisecond {
			t.Fatalf("after a release: heartbeat gaps %v, want the full 50 ms", gaps(rel, rel+n.hold))
		}
	}
	// The new owner is committed; a failure timeout after the release the witness is quiet again.
	q.set("n2", 4)
	owner, epoch = "n2", 4
	run(rel + 2*time.Second)
	for _, g := range gaps(rel+time.Second, rel+2*time.Second) {
		if g != 100*time.Millisecond {
			t.Fatalf("settled after the failover: heartbeat gaps %v, want 100 ms", gaps(rel+time.Second, rel+2*time.Second))
		}
	}
}
