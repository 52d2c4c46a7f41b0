package raftstore

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Writes wait for the delay; reads do not.
func TestSlowStore(t *testing.T) {
	mem := raft.NewInmemStore()
	s := &slowStore{LogStore: mem, StableStore: mem, delay: func() time.Duration { return 80 * time.Millisecond }}
	for name, write := range map[string]func() error{
		"StoreLog":  func() error { return s.StoreLog(&raft.Log{Index: 1, Term: 1}) },
		"StoreLogs": func() error { return s.StoreLogs([]*raft.Log{{Index: 2, Term: 1}}) },
		"SetUint64": func() error { return s.SetUint64([]byte("k"), 7) },
		"Set":       func() error { return s.Set([]byte("j"), []byte("v")) },
	} {
		t0 := time.Now()
		if err := write(); err != nil {
			t.Fatal(name, err)
		}
		if took := time.Since(t0); took < s.delay() {
			t.Errorf("%s took %v, want ≥ %v", name, took, s.delay())
		}
	}
	if v, err := s.GetUint64([]byte("k")); err != nil || v != 7 {
		t.Errorf("GetUint64 = %d, %v", v, err)
	}
	if last, err := s.LastIndex(); err != nil || last != 2 {
		t.Errorf("LastIndex = %d, %v", last, err)
	}
}
