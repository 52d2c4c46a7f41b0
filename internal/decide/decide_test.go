package decide

import (
	"testing"
	"time"
)

const ms = time.Millisecond

func TestVoterHoldOutlivesLease(t *testing.T) {
	for _, tc := range []struct {
		lease time.Duration
		drift float64
		want  time.Duration
	}{
		{400 * ms, 0, 400*ms + 1},
		{400 * ms, 0.01, 408040*time.Microsecond + 1},
		{150 * ms, 0.01, 153015*time.Microsecond + 1},
	} {
		got := VoterHold(tc.lease, tc.drift)
		if got != tc.want {
			t.Errorf("VoterHold(%v, %v) = %v, want %v", tc.lease, tc.drift, got, tc.want)
		}
		// The promise, measured by the fastest allowed voter clock, must outlast the
		// lease measured by the slowest allowed owner clock.
		if real := float64(got) / (1 + tc.drift); real < float64(tc.lease)*(1+tc.drift) {
			t.Errorf("hold %v lasts %v real time, lease can last %v", got, time.Duration(real), time.Duration(float64(tc.lease)*(1+tc.drift)))
		}
	}
}

func TestLeaseExpiry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		acks     []time.Duration
		majority int
		want     time.Duration
		ok       bool
	}{
		{"no acks", nil, 2, 0, false},
		{"one of three", []time.Duration{100 * ms}, 2, 0, false},
		{"two of three", []time.Duration{100 * ms, 80 * ms}, 2, 480 * ms, true},
		{"newest majority counts", []time.Duration{100 * ms, 80 * ms, 90 * ms}, 2, 490 * ms, true},
		{"five voters", []time.Duration{10 * ms, 50 * ms, 40 * ms, 30 * ms, 20 * ms}, 3, 430 * ms, true},
		{"single voter", []time.Duration{70 * ms}, 1, 470 * ms, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := LeaseExpiry(tc.acks, tc.majority, 400*ms)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("LeaseExpiry = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestActingStopsAGuardBeforeExpiry(t *testing.T) {
	for _, tc := range []struct {
		now  time.Duration
		want bool
	}{{0, true}, {339 * ms, true}, {340 * ms, false}, {400 * ms, false}} {
		if got := Acting(tc.now, 400*ms, 60*ms); got != tc.want {
			t.Errorf("Acting(now=%v, expiry=400ms, guard=60ms) = %v, want %v", tc.now, got, tc.want)
		}
	}
}

func TestReleaseDue(t *testing.T) {
	hold := VoterHold(400*ms, 0.01)
	if ReleaseDue(1000*ms+hold-1, 1000*ms, hold) {
		t.Fatal("released before the hold ended")
	}
	if !ReleaseDue(1000*ms+hold, 1000*ms, hold) {
		t.Fatal("not released when the hold ended")
	}
}

func TestMajority(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 7: 4} {
		if got := Majority(n); got != want {
			t.Errorf("Majority(%d) = %d, want %d", n, got, want)
		}
	}
}

func up(node string, prio int) Candidate {
	return Candidate{Node: node, Priority: prio, Alive: true, Healthy: true, Eligible: true}
}

func TestBest(t *testing.T) {
	down := up("n1", 200)
	down.Alive = false
	sick := up("n1", 200)
	sick.Healthy = false
	leaving := up("n1", 200)
	leaving.Eligible = false
	ahead := up("n3", 10)
	ahead.Position = 99
	for _, tc := range []struct {
		name  string
		cands []Candidate
		want  string
	}{
		{"none", nil, ""},
		{"highest priority", []Candidate{up("n2", 100), up("n1", 150)}, "n1"},
		{"tie broken by name", []Candidate{up("n2", 100), up("n1", 100)}, "n1"},
		{"dead skipped", []Candidate{down, up("n2", 100)}, "n2"},
		{"unhealthy skipped", []Candidate{sick, up("n2", 100)}, "n2"},
		{"ineligible skipped", []Candidate{leaving, up("n2", 100)}, "n2"},
		{"nobody usable", []Candidate{down, sick}, ""},
		{"data position first", []Candidate{up("n1", 200), ahead}, "n3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Best(tc.cands); got != tc.want {
				t.Fatalf("Best = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	two := []Candidate{up("n1", 150), up("n2", 100)}
	n1down := []Candidate{{Node: "n1", Priority: 150}, up("n2", 100)}
	for _, tc := range []struct {
		name string
		in   Inputs
		want Action
	}{
		{"no owner, grace running", Inputs{GraceOver: false, Candidates: two},
			Action{Why: "startup grace: waiting for members to come up"}},
		{"no owner, grace over", Inputs{GraceOver: true, Candidates: two, Majority: 2},
			Action{Assign: true, Owner: "n1", Why: "group has no owner"}},
		{"no owner, nobody usable", Inputs{GraceOver: true, Candidates: nil},
			Action{Why: "no healthy eligible member"}},
		{"owner holds lease", Inputs{Owner: "n1", Epoch: 3, Released: 1, Majority: 2, Candidates: n1down},
			Action{Why: "owner's lease held"}},
		{"quorum released", Inputs{Owner: "n1", Epoch: 3, Released: 2, Majority: 2, Candidates: n1down},
			Action{Assign: true, Owner: "n2", Why: "owner silent: its lease was released by a quorum of voters"}},
		{"released but owner is back and best", Inputs{Owner: "n1", Epoch: 3, Released: 2, Majority: 2, Candidates: two},
			Action{Assign: true, Owner: "n1", Why: "owner silent: its lease was released by a quorum of voters"}},
		{"relinquished owner is never re-picked", Inputs{Owner: "n1", Epoch: 3, Released: 2, Majority: 2, Relinquish: true, Candidates: two},
			Action{Assign: true, Owner: "n2", Why: "owner handed the group off"}},
		{"released, nobody usable", Inputs{Owner: "n1", Epoch: 3, Released: 3, Majority: 2, Candidates: []Candidate{{Node: "n2"}}},
			Action{Why: "owner's lease released but no healthy eligible member"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(tc.in); got != tc.want {
				t.Fatalf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}
