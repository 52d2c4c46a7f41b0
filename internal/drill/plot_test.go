package drill

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func synthetic() []Report {
	var rs []Report
	for _, f := range []Fault{LinkDown, Kill9, SigStop, Loss} {
		for _, p := range []string{"default", "fast"} {
			for _, sys := range []System{Baton, Keepalived} {
				r := Report{System: string(sys), Fault: string(f), Profile: p}
				for k := range 7 {
					t := Trial{Outage: time.Duration(100+40*k) * time.Millisecond, Failover: f != Loss}
					if sys == Keepalived && f == SigStop {
						t.Outage, t.Dual = 0, 2700*time.Millisecond
					}
					if f == Loss && k == 3 {
						t.Changes = 1
					}
					r.Trials = append(r.Trials, t)
				}
				r.summarise()
				rs = append(rs, r)
			}
		}
	}
	return rs
}

func TestPlotSVG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "compare.svg")
	var buf bytes.Buffer
	if err := PlotSVG(&buf, synthetic(), "measured 2026-11-26 on a test machine"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 1000 {
		t.Fatalf("SVG is %d bytes", len(b))
	}
	// Well-formed XML whose root is <svg>.
	dec := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not valid XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	for _, want := range []string{"owner&#39;s link down", "kill -9", "SIGSTOP", "false failovers 1", "two MACs: 18.9 s in all", "keepalived", "measured 2026-11-26"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestPlotSVGEmpty(t *testing.T) {
	if err := PlotSVG(io.Discard, nil, ""); err == nil || !strings.Contains(err.Error(), "no reports") {
		t.Errorf("error %v, want one naming no reports", err)
	}
	if err := PlotSVG(io.Discard, []Report{{System: "baton", Fault: "kill9"}}, ""); err == nil || !strings.Contains(err.Error(), "no trials") {
		t.Errorf("error %v, want one naming no trials", err)
	}
}
