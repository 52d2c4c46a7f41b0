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
