package agent

import (
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
