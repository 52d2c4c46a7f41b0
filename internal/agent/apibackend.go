package agent

import (
	"fmt"
	"net/http"
	"time"

	"github.com/baton-ha/baton/internal/quorum"
)

// Status answers the API's status request from the agent loop.
func (a *Agent) Status(r *http.Request) (Status, error) {
	var st Status
	err := a.call(r.Context(), func(now time.Duration) { st = a.node.Status(now) })
	st.RejectedPackets = a.udp.Stats.Rejected()
	st.RejectedQuorumConns = a.raft.RejectedConns()
	return st, err
}

// Events returns the replicated ownership history.
func (a *Agent) Events(r *http.Request) ([]quorum.Event, error) {
	return a.raft.View().Events, nil
}

// Ready reports whether the agent knows a quorum leader.
func (a *Agent) Ready() bool { return a.raft.Leader() != "" }

// TransferLeadership moves quorum leadership to another voter, if this node leads.
func (a *Agent) TransferLeadership(r *http.Request, to string) error {
	if !a.raft.IsLeader() {
		return fmt.Errorf("this node (%s) does not lead the quorum; ask the leader %q", a.self.Name, a.raft.Leader())
	}
	if to == a.self.Name {
		return nil
	}
	return a.raft.TransferLeadership(to)
}

// Token returns the configured API token.
func (a *Agent) Token() string { return a.cfg.APIToken }
