// Package benchkit holds what the benchmark commands under bench/ share:
// facts about the machine a run measured on, the command line to record,
// the parsing of their list flags, and how they stop on an error or without
// root.
package benchkit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Host describes the machine of a run. Benchmark result structs embed it, so
// its fields appear at the top level of their JSON.
type Host struct {
	CPU        string // /proc/cpuinfo model name
	NProc      int
	Kernel     string
	Go         string
	LoadAvg    string // /proc/loadavg at the start: the machine may be shared
	LoadAvgEnd string // and at the end (set by the caller)
}

// ThisHost reads the facts of this machine, load average included.
func ThisHost() Host {
	h := Host{NProc: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: LoadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// LoadAvg is the 1, 5 and 15 minute load average ("?" if unknown).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Command is this run's command line as it would be typed, for the record:
// "go run ./bench/NAME" and the arguments.
func Command(name string) string {
	return strings.Join(append([]string{"go run ./bench/" + name}, os.Args[1:]...), " ")
}

// Split splits a comma-separated flag value, dropping empty items.
func Split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseCounts reads "a=3,b=5" (the -trials-for flags); what names the keys
// in the error ("fault", "system").
func ParseCounts(s, what string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range Split(s) {
		k, n, ok := strings.Cut(kv, "=")
		v, err := strconv.Atoi(n)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("-trials-for: %q: want %s=N with N ≥ 1", kv, what)
		}
		out[k] = v
	}
	return out, nil
}

// Check ends a benchmark command if err is not nil: it prints "NAME: err"
// (NAME is the command, e.g. vipover) to stderr and exits with status 1. A
// benchmark has no caller to return an error to, and a table measured past
// a failed step would be wrong.
func Check(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", progName(), err)
		os.Exit(1)
	}
}

// NeedRoot exits with status 2 unless the process runs as root; why says what
// needs it (e.g. "network namespaces").
func NeedRoot(why string) {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: needs root (%s); run it as root, e.g. with sudo\n", progName(), why)
		os.Exit(2)
	}
}

// progName is the command's name: `go run ./bench/vipover` runs a binary
// named vipover.
func progName() string { return filepath.Base(os.Args[0]) }

// CPUTicks is the user plus system CPU time of process pid in clock ticks
// (fields 14 and 15 of /proc/PID/stat).
func CPUTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	Check(err)
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	k, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + k
}

// RSSKB is the resident set size of process pid in KiB (VmRSS).
func RSSKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	Check(err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

// Quantile is the nearest-rank q-quantile of xs (0 for none).
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// FormatMs writes a duration in milliseconds as "412 ms", or "12.3 s" from
// ten seconds on.
func FormatMs(ms float64) string {
	if ms >= 10000 {
		return fmt.Sprintf("%.1f s", ms/1000)
	}
	return fmt.Sprintf("%.0f ms", ms)
}
