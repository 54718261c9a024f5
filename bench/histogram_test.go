//go:build linux

package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistogramBucketsCoverEveryValue(t *testing.T) {
	t.Parallel()
	// Every value must land in a bucket whose bounds contain it, and buckets must be ordered.
	vals := []int64{0, 1, 31, 32, 33, 63, 64, 65, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64}
	for i := range 2000 {
		vals = append(vals, rand.Int64N(1<<uint(i%62+1)))
	}
	for _, v := range vals {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", v, b)
		}
		lo, hi := bucketBounds(b)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d with bounds [%d,%d]", v, b, lo, hi)
		}
		if v >= histSub && float64(hi-lo+1)/float64(lo) > 1.0/histSub+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its value", b, lo, hi, histSub)
		}
	}
	for b := 1; b < histBuckets-histSub; b++ {
		_, prevHi := bucketBounds(b - 1)
		lo, _ := bucketBounds(b)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", b, lo, prevHi)
		}
	}
}

func TestHistogramQuantilesMatchExactWithinPrecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		gen  func(r *rand.Rand) int64
	}{
		{"uniform ms", func(r *rand.Rand) int64 { return 1_000_000 + r.Int64N(99_000_000) }},
		{"exponential", func(r *rand.Rand) int64 { return int64(r.ExpFloat64() * 5e6) }},
		{"small ints", func(r *rand.Rand) int64 { return r.Int64N(40) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(1, 2))
			h := NewHistogram()
			var exact []int64
			for range 100_000 {
				v := tc.gen(r)
				h.Record(v)
				exact = append(exact, v)
			}
			slices.Sort(exact)
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
				want := exact[int(math.Ceil(q*float64(len(exact))))-1]
				got := h.Quantile(q)
				if diff := math.Abs(float64(got - want)); diff > float64(want)/histSub+1 {
					t.Errorf("q%.3f = %d, exact %d (off by %.0f)", q, got, want, diff)
				}
			}
			if h.Max() != exact[len(exact)-1] || h.Min() != exact[0] {
				t.Errorf("min/max = %d/%d, want %d/%d", h.Min(), h.Max(), exact[0], exact[len(exact)-1])
			}
			if h.Count() != uint64(len(exact)) {
				t.Errorf("count = %d, want %d", h.Count(), len(exact))
			}
		})
	}
}

func TestHistogramMergeEqualsRecordingTogether(t *testing.T) {
	t.Parallel()
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := range int64(5000) {
		v := i * i
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
		all.Record(v)
	}
	a.Merge(b)
	a.Merge(NewHistogram()) // merging an empty one changes nothing
	if a.counts != all.counts || a.Count() != all.Count() || a.Max() != all.Max() || a.Min() != all.Min() {
		t.Fatalf("merged histogram differs from one recorded together")
	}
	if a.Quantile(0.99) != all.Quantile(0.99) || a.Mean() != all.Mean() {
		t.Fatalf("merged quantile/mean %d/%f, want %d/%f", a.Quantile(0.99), a.Mean(), all.Quantile(0.99), all.Mean())
	}
}

func TestHistogramEdgeCases(t *testing.T) {
	t.Parallel()
	h := NewHistogram()
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatalf("empty histogram should report zeros")
	}
	h.Record(-5) // a clock step counts as 0
	h.Record(7)
	if h.Min() != 0 || h.Max() != 7 {
		t.Fatalf("min/max = %d/%d, want 0/7", h.Min(), h.Max())
	}
	if got := h.Quantile(1); got != 7 {
		t.Fatalf("q1 = %d, want 7", got)
	}
	if got := h.Quantile(0); got != 0 {
		t.Fatalf("q0 = %d, want 0", got)
	}
	h.Reset()
	if h.Count() != 0 || h.Max() != 0 {
		t.Fatalf("reset left count %d max %d", h.Count(), h.Max())
	}
}
