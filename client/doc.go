// Package client is Baton's failover-aware dialer for application logic.
//
// A Client asks Baton where a group is served and dials it: the owner in an
// active-passive group, the owners spread round-robin in an active-active
// group. During a failover there is a short window with no owner, so Dial
// retries with backoff (Options.Backoff doubling up to one second) for up to
// Options.RetryFor before it gives up.
//
// Endpoints come from any Baton agent's HTTP API
// (GET /v1/groups/{group}/endpoints; every agent serves the replicated state,
// so the client tries Options.Agents in turn and sticks to one that answers),
// or, when only DNS is reachable, straight from the authoritative DNS server of
// the cluster (A and AAAA records for <group>.<zone>; the service port is
// Options.Port). In DNS mode NXDOMAIN means the group is unknown and an empty
// answer means the group has no owner right now.
//
// # Cutting connections to a deposed owner
//
// Every connection returned by Dial is tracked with the endpoint it went to.
// While a group has open connections from Dial, a watcher re-resolves it
// every Options.Refresh. When the group's generation changes (any ownership
// change; in DNS mode, any change of the address set) connections to
// endpoints that are no longer listed are closed at once: an application
// blocked on a read from a deposed owner gets an error wrapping ErrDeposed
// immediately and redials, instead of waiting for a TCP timeout on a node that
// may be gone or, worse, may still answer as a stale primary. Closing a
// connection untracks it; Client.Close stops the watchers and closes every
// tracked connection.
//
// DialContext has the signature of net.Dialer.DialContext and takes the group
// as the address ("web" or "web:80"), so a Client plugs into
// http.Transport.DialContext and into drivers that accept a dial function.
package client
