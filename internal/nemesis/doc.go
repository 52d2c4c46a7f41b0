// Package nemesis runs real Baton agents in the namespace lab (internal/lab)
// under a randomized schedule of overlapping faults drawn from a seed, and
// checks what a client saw: no VIP answered by two hosts, no outage beyond
// the profile's bound while an eligible member and a quorum were fault-free,
// no ownership change and no VIP gap during loss-only periods, no lost
// acknowledged PostgreSQL write (sync: on), and one agreed owner per group
// soon after the last fault healed. bench/nemesis is its command and the lab
// test suite runs it with fixed seeds. See README.md.
package nemesis
