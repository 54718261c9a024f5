//go:build linux

package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// PlotSVG draws the headline rows as horizontal bars on a log scale: how many
// times better than PocketBase ours is (ratio, or 1/ratio where lower is
// better), with the target as a tick; green when met.
func (r *Results) PlotSVG() string {
	type bar struct {
		label       string
		value, goal float64
		met         bool
	}
	var bars []bar
	for _, row := range r.Rows {
		if !row.Headline || row.Ratio == nil || row.goal == 0 || *row.Ratio <= 0 {
			continue
		}
		v, g := *row.Ratio, row.goal
		if row.lower {
			v, g = 1/v, 1/g
		}
		label := row.Workload + ": " + row.Metric
		if row.RatioOf != "ours / PocketBase" {
			label += " [" + row.RatioOf + "]"
		}
		bars = append(bars, bar{label: label, value: v, goal: g, met: row.Met != nil && *row.Met})
	}
	const (
		left, right, top, rowH = 430.0, 40.0, 70.0, 34.0
		width                  = 1000.0
		lo, hi                 = 0.1, 1000.0 // axis range, log scale
	)
	plotW := width - left - right
	x := func(v float64) float64 {
		v = math.Min(math.Max(v, lo), hi)
		return left + plotW*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	height := top + rowH*float64(max(len(bars), 1)) + 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="24" font-size="16" font-weight="bold">caddy-realtime vs PocketBase: times better (log scale), target ticks in black</text>`+"\n", 10.0)
	fmt.Fprintf(&b, `<text x="%.0f" y="44" fill="#555">%s; %s; nproc %d, %s; medians of %d run(s)</text>`+"\n", 10.0,
		html.EscapeString(r.Date), html.EscapeString(r.Mode), r.Machine.NProc, html.EscapeString(r.Machine.Kernel), r.Runs)
	bottom := top + rowH*float64(len(bars))
	for _, t := range []float64{0.1, 1, 10, 100, 1000} {
		xt := x(t)
		stroke := "#ddd"
		if t == 1 {
			stroke = "#888"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s"/>`+"\n", xt, top-6, xt, bottom, stroke)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s×</text>`+"\n", xt, bottom+16, trimFloat(t))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">1× = same as PocketBase</text>`+"\n", x(1), bottom+32)
	for i, br := range bars {
		y := top + rowH*float64(i)
		color := "#c0392b"
		if br.met {
			color = "#27ae60"
		}
		x0, x1 := x(1), x(br.value)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, y+rowH/2+4, html.EscapeString(shorten(br.label, 70)))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", math.Min(x0, x1), y+7, math.Abs(x1-x0)+0.5, rowH-14, color)
		xg := x(br.goal)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="3"/>`+"\n", xg, y+3, xg, y+rowH-3)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#333">%s×</text>`+"\n", math.Max(math.Max(x0, x1), xg)+6, y+rowH/2+4, fmtNum(br.value))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func shorten(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
