package raftstore

import (
	"time"

	"github.com/hashicorp/raft"
)

// slowStore delays every write to the log and stable stores by delay: the
// slow-disk fault of the nemesis runner (RaftConfig.FsyncDelay, read before each write). Each write
// is one bolt transaction ending in an fsync, so sleeping before it is what
// a disk whose fsync takes that long does to raft. Reads are not delayed
// (they come from the page cache on a real slow disk too).
type slowStore struct {
	raft.LogStore
	raft.StableStore
	delay func() time.Duration
}

func (s *slowStore) StoreLog(l *raft.Log) error {
	time.Sleep(s.delay())
	return s.LogStore.StoreLog(l)
}

func (s *slowStore) StoreLogs(ls []*raft.Log) error {
	time.Sleep(s.delay())
	return s.LogStore.StoreLogs(ls)
}

func (s *slowStore) DeleteRange(lo, hi uint64) error {
	time.Sleep(s.delay())
	return s.LogStore.DeleteRange(lo, hi)
}

func (s *slowStore) Set(k, v []byte) error {
	time.Sleep(s.delay())
	return s.StableStore.Set(k, v)
}

func (s *slowStore) SetUint64(k []byte, v uint64) error {
	time.Sleep(s.delay())
	return s.StableStore.SetUint64(k, v)
}
