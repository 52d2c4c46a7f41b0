// Package clusterkey stretches the cluster secret into the cluster key, from which every key of cluster traffic is
// derived: the heartbeat MAC key (internal/cluster) and the raft TLS key (internal/quorum/raftstore), each through
// HKDF with its own label.
//
// Why a slow KDF: the raft certificate's public key is derived from the secret and is shown to anyone who opens a
// TLS connection to the quorum port, and a captured heartbeat carries a MAC under a key derived from it. Either lets
// an outsider test guesses of the secret offline, as fast as they can compute the derivation. A random 32-byte
// secret cannot be guessed at any speed; argon2id makes each guess of a weaker, human-chosen one cost 32 MiB of
// memory and tens of milliseconds of a core, so a dictionary or brute-force run costs ten thousand times or more
// what it would against HKDF alone.
// The agent pays that once, at start.
package clusterkey

import (
	"crypto/sha256"
	"runtime/debug"
	"sync"

	"golang.org/x/crypto/argon2"
)

// The argon2id parameters: 2 passes over 32 MiB with 4 lanes. That is above OWASP's password-storage minimum for
// argon2id (19 MiB, 2 passes) and below RFC 9106's second recommended option (3 passes over 64 MiB), which was
// measured too slow for a start on the shared 2-core test machine: 0.63-1.5 s, and up to 6 s, at a load average of
// 15, against 0.17-0.22 s for these (the same work as one pass over 64 MiB, which took 41 ms nearly idle); a fresh 64 MiB also costs more in page faults than
// the passes themselves. Memory is what makes guessing dear on GPUs and ASICs, passes only add time; the agent pays
// it once per start, and an in-process test cluster once per process.
const (
	Passes    = 2
	MemoryKiB = 32 * 1024
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
	// The 32 MiB work area is garbage now; hand it back rather than let the agent's resident size keep it.
	debug.FreeOSMemory()
	return key
}
