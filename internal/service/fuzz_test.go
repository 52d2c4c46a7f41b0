package service

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
)

// FuzzParseStat: any /proc/PID/stat content gives fields or an error, never a
// panic; a well-formed line gives its process group and start time back.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (sleep) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 8192 100 18446744073709551615\n"))
	f.Add([]byte("7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n"))
	f.Add([]byte("1 (x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pgrp, start, err := parseStat(1, b)
		if err != nil {
			return
		}
		// Re-render the fields it read into a canonical line and parse again.
		line := []byte("1 (c) S 1 ")
		line = append(line, []byte(strconv.Itoa(pgrp))...)
		line = append(line, bytes.Repeat([]byte(" 0"), 16)...)
		line = append(line, ' ')
		line = append(line, []byte(strconv.FormatUint(start, 10))...)
		p2, s2, err := parseStat(1, line)
		if err != nil || p2 != pgrp || s2 != start {
			t.Fatalf("round trip of pgrp %d start %d: %d %d %v (%q)", pgrp, start, p2, s2, err, line)
		}
	})
}

// FuzzPidRecord: a pidfile's content decodes to a record or an error; a
// decoded record encodes and decodes to itself.
func FuzzPidRecord(f *testing.F) {
	f.Add([]byte(`{"pgid":4242,"boot_id":"0b3f","start_ticks":987654}`))
	f.Add([]byte("4242\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec pidRecord
		if json.Unmarshal(b, &rec) != nil {
			return
		}
		out, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var again pidRecord
		if err := json.Unmarshal(out, &again); err != nil || again != rec {
			t.Fatalf("%+v → %s → %+v, %v", rec, out, again, err)
		}
	})
}
