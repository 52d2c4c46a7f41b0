package drill

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// faultTitles name the panels; the order is the order of the panels.
var faultTitles = []struct {
	f     Fault
	title string
}{
	{LinkDown, "owner's link down"},
	{Kill9, "kill -9 of the owner's agent / keepalived"},
	{SigStop, "SIGSTOP of the owner's agent / keepalived for 3 s"},
	{Partition, "owner cut off from the other hosts for 3 s (the client reaches all)"},
	{Loss, "packet loss on every host (nothing should fail over)"},
}

// Colours per system: the same in every panel.
var systemColors = map[string]color.Color{
	string(Baton):      color.RGBA{R: 31, G: 119, B: 180, A: 255},
	string(Keepalived): color.RGBA{R: 230, G: 110, B: 0, A: 255},
}

// PlotSVG writes an SVG of the client-visible outage of every trial in rs:
// one panel per fault, and in each, per system × profile, a box (quartiles,
// median, whiskers to 1.5 IQR) over the trials drawn as dots. The outage axis
// is linear in ms from 0, because keepalived's honest outage can be 0 (its
// old master keeps answering): a log axis would hide exactly those trials.
// Under each box the label names the trial count and, when the ARP watch saw
// two MACs answer for the VIP, the dual-ownership time; for loss also the
// false failovers. header, if not empty, is printed above the panels
// (e.g. the date and the machine).
func PlotSVG(w io.Writer, rs []Report, header string) error {
	c, err := plotOn(func(w, h vg.Length) vg.CanvasWriterTo { return vgsvg.New(w, h) }, rs, header)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// plotOn draws the panels on a canvas of the size they need.
func plotOn(canvas func(w, h vg.Length) vg.CanvasWriterTo, rs []Report, header string) (vg.CanvasWriterTo, error) {
	if len(rs) == 0 {
		return nil, errors.New("drill: PlotSVG: no reports")
	}
	var panels []*plot.Plot
	for _, ft := range faultTitles {
		var cell []Report
		for _, r := range rs {
			if r.Fault == string(ft.f) && len(r.Trials) > 0 {
				cell = append(cell, r)
			}
		}
		if len(cell) == 0 {
			continue
		}
		p, err := panel(ft.title, cell)
		if err != nil {
			return nil, err
		}
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return nil, errors.New("drill: PlotSVG: no trials")
	}
	const cols = 2
	rows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
		for j := range cols {
			if k := i*cols + j; k < len(panels) {
				grid[i][j] = panels[k]
			}
		}
	}
	headH := vg.Length(0)
	if header != "" {
		headH = 28
	}
	width, height := 26*vg.Centimeter, vg.Length(rows)*9.5*vg.Centimeter+headH
	c := canvas(width, height)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadTop: headH + 4, PadBottom: 4, PadLeft: 4, PadRight: 8, PadX: 18, PadY: 14}
	canvases := plot.Align(grid, tiles, dc)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	if header != "" {
		sty := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 11), Handler: plot.DefaultTextHandler,
			XAlign: draw.XCenter, YAlign: draw.YTop}
		dc.FillText(sty, vg.Point{X: width / 2, Y: height - 6}, header)
	}
	return c, nil
}

// panel draws one fault: a box and its dots per system × profile, ordered by
// profile, then system, so the two systems sit side by side per profile.
func panel(title string, rs []Report) (*plot.Plot, error) {
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b Report) int {
		return cmp.Or(cmp.Compare(profileRank(a.Profile), profileRank(b.Profile)), cmp.Compare(a.System, b.System))
	})
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 11
	p.Y.Label.Text = "client-visible outage per trial (ms)"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	var labels []string
	top := 0.0
	for i, r := range rs {
		vs := make(plotter.Values, len(r.Trials))
		dots := make(plotter.XYs, len(r.Trials))
		for k, t := range r.Trials {
			v := float64(t.Outage) / float64(1e6)
			vs[k] = v
			dots[k] = plotter.XY{X: float64(i) + jitter(k), Y: v}
			top = max(top, v)
		}
		clr := systemColors[r.System]
		if clr == nil {
			clr = color.Gray{Y: 90}
		}
		box, err := plotter.NewBoxPlot(vg.Points(34), float64(i), vs)
		if err != nil {
			return nil, fmt.Errorf("drill: plot %s %s %s: %w", r.System, r.Fault, r.Profile, err)
		}
		box.BoxStyle.Color, box.MedianStyle.Color, box.WhiskerStyle.Color = clr, clr, clr
		box.MedianStyle.Width = vg.Points(2)
		box.GlyphStyle.Radius = 0 // outliers are drawn as dots below anyway
		sc, err := plotter.NewScatter(dots)
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: withAlpha(clr, 150), Radius: vg.Points(1.8), Shape: draw.CircleGlyph{}}
		p.Add(box, sc)
		labels = append(labels, label(r))
	}
	p.NominalX(labels...)
	p.X.Tick.Label.Font.Size = 8
	p.X.Min, p.X.Max = -0.6, float64(len(rs))-0.4
	// Room above the highest dot, and a visible axis when every outage is 0.
	p.Y.Max = max(top*1.08, 10)
	return p, nil
}

func label(r Report) string {
	s := fmt.Sprintf("%s\n%s, %d trials", r.System, r.Profile, len(r.Trials))
	if r.Dual > 0 {
		s += fmt.Sprintf("\ntwo MACs: %.1f s in all", r.Dual.Seconds())
	}
	if Fault(r.Fault) == Loss {
		s += fmt.Sprintf("\nfalse failovers %d", r.FalseFailovers)
	}
	return s
}

func profileRank(p string) int {
	switch p {
	case "default":
		return 0
	case "fast":
		return 1
	}
	return 2
}

// jitter spreads the dots of one box horizontally, deterministically (golden
// ratio sequence), so the plot is the same for the same reports.
func jitter(k int) float64 {
	_, f := math.Modf(float64(k) * 0.6180339887)
	return (f - 0.5) * 0.36
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	// Premultiplied, as color.RGBA expects.
	return color.RGBA{R: uint8(r >> 8 * uint32(a) / 255), G: uint8(g >> 8 * uint32(a) / 255), B: uint8(b >> 8 * uint32(a) / 255), A: a}
}
