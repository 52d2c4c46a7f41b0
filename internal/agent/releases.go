package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileReleases is the durable ReleaseStore: a small JSON file in the node's
// data_dir, replaced atomically and fsynced (file and directory) on every
// save. Saves are rare: one per batch of released leases.
type FileReleases struct {
	Path string
	// FsyncDelay, if set, is a debug fault (Debug.FsyncDelay): each save
	// waits that long before its fsync, as on a slow disk.
	FsyncDelay func() time.Duration
	mu         sync.Mutex
	m          map[string]uint64
}

// Load implements ReleaseStore.
func (f *FileReleases) Load() (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m = map[string]uint64{}
	b, err := os.ReadFile(f.Path)
	if os.IsNotExist(err) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &f.m); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it only if this node's raft state is deleted too)", f.Path, err)
	}
	out := map[string]uint64{}
	for k, v := range f.m {
		out[k] = v
	}
	return out, nil
}

// Save implements ReleaseStore: one durable write for all of released.
func (f *FileReleases) Save(released map[string]uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]uint64{}
	}
	next := map[string]uint64{}
	for k, v := range f.m {
		next[k] = v
	}
	changed := false
	for g, e := range released {
		if e > next[g] {
			next[g], changed = e, true
		}
	}
	if !changed {
		return nil
	}
	b, _ := json.Marshal(next)
	var delay time.Duration
	if f.FsyncDelay != nil {
		delay = f.FsyncDelay()
	}
	if err := writeDurably(f.Path, b, delay); err != nil {
		return err
	}
	f.m = next
	return nil
}

// writeDurably replaces path with data atomically and durably: a temporary
// file, fsynced, renamed over path, and the directory fsynced. fsyncDelay
// (a debug fault, normally 0) is slept before the fsync.
func writeDurably(path string, data []byte, fsyncDelay time.Duration) error {
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	time.Sleep(fsyncDelay)
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
