// Package clusterkey stretches the cluster secret into the cluster key, from which every key of cluster traffic is
// derived: the heartbeat MAC key (internal/cluster) and the raft TLS key (internal/quorum/raftstore), each through
// HKDF with its own label.
//
// Why a slow KDF: the raft certificate's public key is derived from the secret and is shown to anyone who opens a
// TLS connection to the quorum port, and a captured heartbeat carries a MAC under a key derived from it. Either lets
// an outsider test guesses of the secret offline, as fast as they can compute the derivation. A random 32-byte
// secret cannot be guessed at any speed; argon2id makes each guess of a weaker, human-chosen one cost 64 MiB of
// memory and ~0.1 s of a core, so a dictionary or brute-force run costs a million times more than against HKDF alone.
// The agent pays that once, at start.
package clusterkey

import (
	"crypto/sha256"
	"runtime/debug"
	"sync"

	"golang.org/x/crypto/argon2"
)

// The argon2id parameters are RFC 9106's second recommended option (§4: t=3, 64 MiB, 4 lanes), the one for
// machines that cannot spare the first option's 2 GiB. Measured on a 2-core test machine: ~0.11-0.2 s without the
// race detector, ~0.6 s with it; the agent derives once at start, so start-up stays well under half a second. More
// memory or passes would make guessing dearer but slow every start and every in-process test cluster; fewer would
// fall below what RFC 9106 and OWASP recommend for password hashing.
const (
	Passes    = 3
	MemoryKiB = 64 * 1024
	Lanes     = 4
	KeyLen    = 32
)

// saltPrefix versions the derivation; the cluster name follows it, so two clusters with the same secret get
// different keys and one precomputed table does not serve every Baton cluster.
const saltPrefix = "baton cluster key v1\x00"

var (
	mu    sync.Mutex
	cache = map[[sha256.Size]byte][]byte{}
)

// Derive returns the cluster key for secret and cluster name. It is deterministic: every node of the cluster
// computes the same key. The result is remembered for the life of the process, so several agents of one cluster in
// one process (tests, the in-process demo) and a restart of the runtime pay the cost once. Safe for concurrent use;
// the returned slice must not be modified.
func Derive(secret []byte, cluster string) []byte {
	id := sha256.New()
	id.Write([]byte(saltPrefix + cluster))
	id.Write([]byte{0})
	id.Write(secret)
	var k [sha256.Size]byte
	id.Sum(k[:0])
	mu.Lock()
	defer mu.Unlock()
	if key, ok := cache[k]; ok {
		return key
	}
	key := argon2.IDKey(secret, []byte(saltPrefix+cluster), Passes, MemoryKiB, Lanes, KeyLen)
	cache[k] = key
	// The 64 MiB work area is garbage now; hand it back rather than let the agent's resident size keep it.
	debug.FreeOSMemory()
	return key
}
