package driver

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// The state line: what an exec driver's "state" command prints on stdout, and how [FormatState] writes a [State].
//
//	role=primary timeline=2 lsn=0/3000060 sync=n2 lag=n2:0:0.001,n3:8192:0.5
//
// Tokens are key=value pairs separated by blanks or newlines; "#" starts a comment that runs to the end of the line.
// Keys:
//
//	role      primary | standby | stopped | unknown (required)
//	timeline  decimal, 0 to 4294967295; bumped by every promotion (default 0 for databases without timelines)
//	lsn       replication position: PostgreSQL notation (hex "0/3000060") or a decimal byte offset (default 0)
//	sync      comma-separated standbys that are synchronous now (primary only)
//	lag       comma-separated node:bytes[:seconds] per standby (primary only)
//
// A key may appear once. Unknown keys are errors, so that a typo does not silently report position 0.

// maxStateOutput bounds what ParseState reads from a command.
const maxStateOutput = 64 << 10

// ParseState reads a state line. Errors name the offending token.
func ParseState(s string) (State, error) {
	var st State
	if len(s) > maxStateOutput {
		return st, fmt.Errorf("state output is %d bytes; the limit is %d", len(s), maxStateOutput)
	}
	seen := map[string]bool{}
	for line := range strings.SplitSeq(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, tok := range strings.Fields(line) {
			k, v, ok := strings.Cut(tok, "=")
			if !ok {
				return State{}, fmt.Errorf("state output: %q is not key=value", tok)
			}
			if seen[k] {
				return State{}, fmt.Errorf("state output: %s appears twice", k)
			}
			seen[k] = true
			if err := parseStateField(&st, k, v); err != nil {
				return State{}, fmt.Errorf("state output: %s=%s: %w", k, v, err)
			}
		}
	}
	if !seen["role"] {
		return State{}, fmt.Errorf("state output: no role=; print e.g. \"role=primary timeline=1 lsn=0/3000060\"")
	}
	return st, nil
}

func parseStateField(st *State, k, v string) error {
	switch k {
	case "role":
		if !Role(v).valid() {
			return fmt.Errorf("not a role; use primary, standby, stopped or unknown")
		}
		st.Role = Role(v)
	case "timeline":
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("not a timeline (a decimal number below 2^32)")
		}
		st.Pos.Timeline = uint32(n)
	case "lsn":
		n, err := ParseLSN(v)
		if err != nil {
			return err
		}
		st.Pos.LSN = n
	case "sync":
		names, err := splitNames(v)
		if err != nil {
			return err
		}
		for _, n := range names {
			if !validName(n) {
				return fmt.Errorf("%q is not a node name", n)
			}
		}
		slices.Sort(names)
		if i := duplicate(names); i >= 0 {
			return fmt.Errorf("%s is listed twice", names[i])
		}
		st.Sync = names
	case "lag":
		items, err := splitNames(v)
		if err != nil {
			return err
		}
		st.Lag = make(map[string]Lag, len(items))
		for _, it := range items {
			name, l, err := parseLag(it)
			if err != nil {
				return err
			}
			if _, dup := st.Lag[name]; dup {
				return fmt.Errorf("%s is listed twice", name)
			}
			st.Lag[name] = l
		}
	default:
		return fmt.Errorf("unknown key; use role, timeline, lsn, sync or lag")
	}
	return nil
}

func parseLag(item string) (string, Lag, error) {
	parts := strings.Split(item, ":")
	if len(parts) < 2 || len(parts) > 3 || !validName(parts[0]) {
		return "", Lag{}, fmt.Errorf("%q is not node:bytes[:seconds]", item)
	}
	var l Lag
	b, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return "", Lag{}, fmt.Errorf("%q: bytes must be a decimal number", item)
	}
	l.Bytes = b
	if len(parts) == 3 {
		f, err := strconv.ParseFloat(parts[2], 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", Lag{}, fmt.Errorf("%q: seconds must be a finite number ≥ 0", item)
		}
		l.Seconds = f
	}
	return parts[0], l, nil
}

func splitNames(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	out := strings.Split(v, ",")
	for _, n := range out {
		if n == "" {
			return nil, fmt.Errorf("empty item in a comma-separated list")
		}
	}
	return out, nil
}

// validName reports whether s can appear as a node name in a state line.
func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, ",:=#") && !strings.ContainsFunc(s, unicode.IsSpace)
}

func duplicate(sorted []string) int {
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return i
		}
	}
	return -1
}

// FormatState writes st as a state line that ParseState reads back. Names that cannot appear in a state line
// (empty, or holding blanks, ',', ':', '=' or '#') are an error.
func FormatState(st State) (string, error) {
	if !st.Role.valid() {
		return "", fmt.Errorf("role %q is not a role", st.Role)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "role=%s timeline=%d lsn=%s", st.Role, st.Pos.Timeline, FormatLSN(st.Pos.LSN))
	if len(st.Sync) > 0 {
		for _, n := range st.Sync {
			if !validName(n) {
				return "", fmt.Errorf("sync: %q cannot appear in a state line", n)
			}
		}
		b.WriteString(" sync=" + strings.Join(st.Sync, ","))
	}
	if len(st.Lag) > 0 {
		names := make([]string, 0, len(st.Lag))
		for n := range st.Lag {
			if !validName(n) {
				return "", fmt.Errorf("lag: %q cannot appear in a state line", n)
			}
			names = append(names, n)
		}
		slices.Sort(names)
		b.WriteString(" lag=")
		for i, n := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			l := st.Lag[n]
			b.WriteString(n + ":" + strconv.FormatUint(l.Bytes, 10) + ":" + strconv.FormatFloat(l.Seconds, 'g', -1, 64))
		}
	}
	return b.String(), nil
}
