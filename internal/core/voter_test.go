package core

import (
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/quorum"
)

// testSpec is two members and a witness with one group, default profile.
func testSpec() *Spec {
	web := &Group{Name: "web", Mode: ModeActivePassive, Standby: "hot",
		Members: []Member{{Node: "n1", Priority: 150}, {Node: "n2", Priority: 100}}}
	return &Spec{Cluster: "t", Profile: "default", Timing: Timing{
		HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 400 * time.Millisecond, LeaseGuard: 60 * time.Millisecond,
		ClockDrift: 0.01, RaftHeartbeatTimeout: 150 * time.Millisecond, RaftElectionTimeout: 150 * time.Millisecond,
		RaftLeaderLease: 100 * time.Millisecond, RaftCommitTimeout: 50 * time.Millisecond, StartupGrace: 2 * time.Second},
		Nodes:  []NodeSpec{{Name: "n1", Address: "10.0.0.1"}, {Name: "n2", Address: "10.0.0.2"}, {Name: "w1", Address: "10.0.0.3", Witness: true}},
		Groups: []*Group{web}, Units: []*Group{web}}
}

type fixedQuorum struct{ s *quorum.State }

func (q *fixedQuorum) View() *quorum.State            { return q.s }
func (q *fixedQuorum) IsLeader() bool                 { return false }
func (q *fixedQuorum) Leader() string                 { return "" }
func (q *fixedQuorum) Propose(quorum.Command) error   { return quorum.ErrNotLeader }
func (q *fixedQuorum) set(owner string, epoch uint64) { q.s = withOwner(owner, epoch) }

func withOwner(owner string, epoch uint64) *quorum.State {
	s := quorum.NewState()
	s.Index = epoch
	s.Groups["web"] = quorum.GroupState{Owner: owner, Epoch: epoch}
	return s
}

// voter builds the witness w1 as a voter, started at time 0.
func voter(t *testing.T, q *fixedQuorum, rel ReleaseStore) (*Node, *[]*cluster.Message) {
	t.Helper()
	var sent []*cluster.Message
	n, err := NewNode(Deps{Name: "w1", Spec: testSpec(), Quorum: q, Releases: rel, WallNow: func() time.Time { return time.Unix(0, 0) },
		Send: func(to string, m *cluster.Message) { sent = append(sent, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(0); err != nil {
		t.Fatal(err)
	}
	return n, &sent
}

// tickTo ticks the node at its regular period up to and including `to`, as the
// runtime does (a jump would look like a stall).
func tickTo(n *Node, from, to time.Duration) {
	for t := from; t < to; t += TickPeriod(n.timing) {
		n.Tick(t)
	}
	n.Tick(to)
}

func claim(epoch uint64) []cluster.Claim { return []cluster.Claim{{Group: "web", Epoch: epoch}} }

func TestGrantRules(t *testing.T) {
	q := &fixedQuorum{}
	q.set("n1", 3)
	n, _ := voter(t, q, &MemReleases{})
	now := time.Second
	cases := []struct {
		name   string
		from   string
		epoch  uint64
		grants bool
	}{
		{"owner of the current epoch", "n1", 3, true},
		{"someone else claiming the owner's epoch", "n2", 3, false},
		{"an old epoch", "n1", 2, false},
		{"a newer epoch than this voter's view (committed elsewhere)", "n2", 4, true},
		{"after granting 4, epoch 3 is superseded", "n1", 3, false},
		{"and another node cannot claim 4 too", "n1", 4, false},
	}
	for _, tc := range cases {
		got := len(n.grant(now, tc.from, claim(tc.epoch))) == 1
		if got != tc.grants {
			t.Fatalf("%s: grant(%s, epoch %d) = %v, want %v", tc.name, tc.from, tc.epoch, got, tc.grants)
		}
	}
}

func TestReleaseIsDurableAndFinal(t *testing.T) {
	q := &fixedQuorum{}
	q.set("n1", 5)
	store := &MemReleases{} // the harness keeps it across a restart, as a file would
	n, _ := voter(t, q, store)
	if acked := n.grant(100*time.Millisecond, "n1", claim(5)); len(acked) != 1 {
		t.Fatal("owner's claim not granted")
	}
	// Before the hold runs out the voter keeps its promise.
	tickTo(n, 0, 100*time.Millisecond+n.hold-time.Millisecond)
	if n.vote["web"].releasedMax != 0 {
		t.Fatal("released before the hold ended")
	}
	n.Tick(100*time.Millisecond + n.hold)
	if n.vote["web"].releasedMax != 5 {
		t.Fatal("not released after the hold")
	}
	// A restarted voter (new Node, same store) remembers and refuses the old claim.
	n2, _ := voter(t, q, store)
	if acked := n2.grant(time.Hour, "n1", claim(5)); len(acked) != 0 {
		t.Fatal("restarted voter acked a lease it had released")
	}
}

func TestRestartedVoterWaitsAFullHold(t *testing.T) {
	q := &fixedQuorum{}
	q.set("n1", 1)
	n, _ := voter(t, q, &MemReleases{})
	// Never heard from the owner since start: still no release before start + hold,
	// because this voter may have acked it just before it restarted.
	tickTo(n, 0, n.hold-time.Millisecond)
	if n.vote["web"].releasedMax != 0 {
		t.Fatal("a freshly started voter released at once")
	}
	n.Tick(n.hold)
	if n.vote["web"].releasedMax != 1 {
		t.Fatal("no release after a full hold of silence")
	}
}

func TestStalledVoterDistrustsSilence(t *testing.T) {
	q := &fixedQuorum{}
	q.set("n1", 1)
	n, _ := voter(t, q, &MemReleases{})
	n.grant(10*time.Millisecond, "n1", claim(1))
	n.Tick(20 * time.Millisecond)
	// The process was frozen for 2 s: packets may be waiting unread.
	resumed := 2 * time.Second
	n.Tick(resumed)
	if n.vote["web"].releasedMax != 0 {
		t.Fatal("released right after a stall")
	}
	tickTo(n, resumed, resumed+n.hold-time.Millisecond)
	if n.vote["web"].releasedMax != 0 {
		t.Fatal("released before a full hold after the stall")
	}
	n.Tick(resumed + n.hold)
	if n.vote["web"].releasedMax != 1 {
		t.Fatal("no release a full hold after the stall")
	}
}

func TestRelinquishReleasesAtOnce(t *testing.T) {
	q := &fixedQuorum{}
	q.set("n1", 2)
	n, _ := voter(t, q, &MemReleases{})
	n.Receive(50*time.Millisecond, "n1", &cluster.Message{Kind: cluster.KindHeartbeat, Relinquished: claim(2), RelinquishReason: "shutdown"})
	if n.vote["web"].releasedMax != 2 {
		t.Fatal("owner's relinquish not released at once")
	}
	// A relinquish from a node that is not the owner is ignored.
	q.set("n1", 3)
	n.Tick(60 * time.Millisecond)
	n.Receive(70*time.Millisecond, "n2", &cluster.Message{Kind: cluster.KindHeartbeat, Relinquished: claim(3)})
	if n.vote["web"].releasedMax != 2 {
		t.Fatal("released on a non-owner's word")
	}
}

// countingReleases records each Save call.
type countingReleases struct {
	MemReleases
	saves []map[string]uint64
}

func (c *countingReleases) Save(rels map[string]uint64) error {
	c.saves = append(c.saves, rels)
	return c.MemReleases.Save(rels)
}

// TestSilentOwnerOfManyGroupsIsReleasedInOneWrite: when the owner of many
// groups falls silent, the voter releases all of them at one instant with one
// durable write and one heartbeat naming every release, not one fsync and one
// heartbeat per group in series.
func TestSilentOwnerOfManyGroupsIsReleasedInOneWrite(t *testing.T) {
	spec := testSpec()
	spec.Groups, spec.Units = nil, nil
	s := quorum.NewState()
	var claims []cluster.Claim
	for i := range 50 {
		g := &Group{Name: "g" + string(rune('A'+i/26)) + string(rune('a'+i%26)), Mode: ModeActivePassive, Standby: "hot",
			Members: []Member{{Node: "n1", Priority: 150}, {Node: "n2", Priority: 100}}}
		spec.Groups, spec.Units = append(spec.Groups, g), append(spec.Units, g)
		s.Groups[g.Name] = quorum.GroupState{Owner: "n1", Epoch: 3}
		claims = append(claims, cluster.Claim{Group: g.Name, Epoch: 3})
	}
	s.Index = 50
	store := &countingReleases{}
	var sent []*cluster.Message
	n, err := NewNode(Deps{Name: "w1", Spec: spec, Quorum: &fixedQuorum{s: s}, Releases: store, WallNow: func() time.Time { return time.Unix(0, 0) },
		Send: func(to string, m *cluster.Message) { sent = append(sent, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(0); err != nil {
		t.Fatal(err)
	}
	if acked := n.grant(100*time.Millisecond, "n1", claims); len(acked) != len(claims) {
		t.Fatalf("granted %d of %d claims", len(acked), len(claims))
	}
	tickTo(n, 0, 100*time.Millisecond+n.hold-time.Millisecond)
	if len(store.saves) != 0 {
		t.Fatalf("released before the hold ended: %v", store.saves)
	}
	sent = nil
	n.Tick(100*time.Millisecond + n.hold)
	if len(store.saves) != 1 || len(store.saves[0]) != len(claims) {
		t.Fatalf("releases written in %d saves (sizes %v), want all %d in one", len(store.saves), store.saves, len(claims))
	}
	var hbs int
	for _, m := range sent {
		if m.Kind == cluster.KindHeartbeat {
			hbs++
			if len(m.Released) != len(claims) {
				t.Fatalf("heartbeat names %d releases, want %d", len(m.Released), len(claims))
			}
		}
	}
	if peers := 2; hbs != peers {
		t.Fatalf("%d heartbeats sent at the release, want one to each of %d peers", hbs, peers)
	}
}
