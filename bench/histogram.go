//go:build linux

package bench

import (
	"math"
	"math/bits"
)

// histSubBits sets the precision of a Histogram: each power of two is split
// into 2^histSubBits linear buckets, so a bucket is at most 1/32 (~3%) wide.
const histSubBits = 5

const (
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// Histogram records non-negative int64 values (nanoseconds here) in
// log-linear buckets, like HdrHistogram with a fixed ~3% relative precision.
// It is not safe for concurrent use: each epoll loop owns one, merged later.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{min: math.MaxInt64} }

// bucketOf maps v to its bucket: values below histSub have a bucket each;
// above, the bucket is the position of the top bit and the next histSubBits bits.
func bucketOf(v int64) int {
	u := uint64(v)
	if u < histSub {
		return int(u)
	}
	exp := bits.Len64(u) - histSubBits - 1 // shift that leaves histSubBits+1 bits
	mant := int(u>>uint(exp)) - histSub    // 0..histSub-1
	return (exp+1)*histSub + mant
}

// bucketBounds is the [lo, hi] range of values that land in bucket b.
func bucketBounds(b int) (lo, hi int64) {
	if b < histSub {
		return int64(b), int64(b)
	}
	exp := b/histSub - 1
	mant := b%histSub + histSub
	lo = int64(mant) << uint(exp)
	hi = lo + int64(1)<<uint(exp) - 1
	return lo, hi
}

// Record adds one value; negative values (clock steps) count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{min: math.MaxInt64} }

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value (exact), 0 when empty.
func (h *Histogram) Max() int64 {
	if h.n == 0 {
		return 0
	}
	return h.max
}

// Min is the smallest recorded value (exact), 0 when empty.
func (h *Histogram) Min() int64 {
	if h.n == 0 {
		return 0
	}
	return h.min
}

// Mean is the exact mean of recorded values, 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q (0..1): the midpoint of the bucket
// holding the ceil(q*n)-th smallest value, clamped to the exact min and max.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(b)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
