package driver

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		in   string
		want State
		err  string
	}{
		{in: "role=primary timeline=2 lsn=0/3000060", want: State{Role: RolePrimary, Pos: Position{2, 0x3000060}}},
		{in: "# comment\nrole=standby\n lsn=50331744 # decimal\ntimeline=1\n", want: State{Role: RoleStandby, Pos: Position{1, 50331744}}},
		{in: "role=primary timeline=3 lsn=1/0 sync=n3,n2 lag=n2:0:0.25,n3:4096",
			want: State{Role: RolePrimary, Pos: Position{3, 1 << 32}, Sync: []string{"n2", "n3"},
				Lag: map[string]Lag{"n2": {0, 0.25}, "n3": {4096, 0}}}},
		{in: "role=stopped", want: State{Role: RoleStopped}},
		{in: "", err: "no role="},
		{in: "lsn=0/1", err: "no role="},
		{in: "role=master", err: "role=master: not a role"},
		{in: "role=primary lsn=0/xyz", err: `lsn=0/xyz: "0/xyz" is not an LSN`},
		{in: "role=primary timeline=-1", err: "timeline=-1: not a timeline"},
		{in: "role=primary role=standby", err: "role appears twice"},
		{in: "role=primary position=0/1", err: "position=0/1: unknown key"},
		{in: "role=primary lsn", err: `"lsn" is not key=value`},
		{in: "role=primary sync=n2,,n3", err: "empty item"},
		{in: "role=primary sync=n2,n2", err: "n2 is listed twice"},
		{in: "role=primary lag=n2:x", err: "bytes must be a decimal number"},
		{in: "role=primary lag=n2:1:-1", err: "seconds must be a finite number"},
		{in: "role=primary lag=n2:1:NaN", err: "seconds must be a finite number"},
		{in: "role=primary lag=n2", err: "is not node:bytes[:seconds]"},
		{in: "role=primary lag=n2:1,n2:2", err: "n2 is listed twice"},
		{in: strings.Repeat(" ", maxStateOutput+1), err: "the limit is"},
	}
	for _, tt := range tests {
		got, err := ParseState(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseState(%.40q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseState(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseState(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestFormatStateRoundTrip(t *testing.T) {
	st := State{Role: RolePrimary, Pos: Position{7, 0x1_0000_00AB}, Sync: []string{"db-2"},
		Lag: map[string]Lag{"db-2": {12, 0.001}, "db-3": {1 << 40, 3}}}
	s, err := FormatState(st)
	if err != nil {
		t.Fatal(err)
	}
	if want := "role=primary timeline=7 lsn=1/AB sync=db-2 lag=db-2:12:0.001,db-3:1099511627776:3"; s != want {
		t.Errorf("FormatState = %q, want %q", s, want)
	}
	back, err := ParseState(s)
	if err != nil || !reflect.DeepEqual(back, st) {
		t.Errorf("round trip: %+v, %v; want %+v", back, err, st)
	}
	for _, bad := range []State{{Role: "leader"}, {Role: RolePrimary, Sync: []string{"a b"}}, {Role: RolePrimary, Lag: map[string]Lag{"a:b": {}}}} {
		if _, err := FormatState(bad); err == nil {
			t.Errorf("FormatState(%+v) succeeded; want an error", bad)
		}
	}
}

func TestPositionAndLSN(t *testing.T) {
	for _, tt := range []struct {
		a, b Position
		want int
	}{
		{Position{1, 100}, Position{1, 100}, 0},
		{Position{1, 99}, Position{1, 100}, -1},
		{Position{2, 0}, Position{1, 1 << 40}, 1},
		{Position{1, 1 << 40}, Position{2, 0}, -1},
	} {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	for _, s := range []string{"0/0", "0/3000060", "1/AB", "FFFFFFFF/FFFFFFFF"} {
		n, err := ParseLSN(s)
		if err != nil || FormatLSN(n) != s {
			t.Errorf("ParseLSN(%q) = %d, %v; formats back as %q", s, n, err, FormatLSN(n))
		}
	}
	for _, s := range []string{"", "/", "0/", "1/2/3", "100000000/0", "-1", "0x10"} {
		if _, err := ParseLSN(s); err == nil {
			t.Errorf("ParseLSN(%q) succeeded; want an error", s)
		}
	}
	if got := (Position{2, 0x3000060}).String(); got != "2/0/3000060" {
		t.Errorf("String = %q", got)
	}
}

// FuzzParseState: anything ParseState accepts formats to a line it reads back identically.
func FuzzParseState(f *testing.F) {
	for _, s := range []string{
		"role=primary timeline=2 lsn=0/3000060",
		"role=standby lsn=123\n# x\n",
		"role=primary sync=a,b lag=a:1:0.5,b:2",
		"role=unknown timeline=4294967295 lsn=FFFFFFFF/FFFFFFFF",
		"role=primary lag=n:0:1e308",
		"role=primary sync=\u00e9",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		st, err := ParseState(in)
		if err != nil {
			return
		}
		out, err := FormatState(st)
		if err != nil {
			t.Fatalf("ParseState(%q) = %+v, which FormatState rejects: %v", in, st, err)
		}
		back, err := ParseState(out)
		if err != nil {
			t.Fatalf("ParseState(FormatState(...)) = %v for %q", err, out)
		}
		if !reflect.DeepEqual(normalize(back), normalize(st)) {
			t.Fatalf("round trip changed the state:\n in  %+v\n out %+v\n via %q", st, back, out)
		}
	})
}

// normalize makes empty and nil collections equal.
func normalize(s State) State {
	if len(s.Sync) == 0 {
		s.Sync = nil
	}
	if len(s.Lag) == 0 {
		s.Lag = nil
	}
	return s
}
