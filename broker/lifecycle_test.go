package broker

import "testing"

// TestEvictionCountedOnce: whoever ends a stream first decides its reason, and
// an eviction is counted by the Close that ended the stream, never again by a
// later writer failure or budget check.
func TestEvictionCountedOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		first, later string
		counted      bool
	}{
		{ReasonWriteTimeout, ReasonQueueFull, true},
		{ReasonQueuedBytes, ReasonWriteError, true},
		{ReasonDisconnected, ReasonQueuedBytes, false},
		{ReasonClientGone, ReasonWriteTimeout, false},
		{ReasonIdleTimeout, ReasonQueueFull, false},
	} {
		b := New("t", nil)
		c := mustConnect(t, b)
		c.Close(tt.first)
		c.Close(tt.later)
		if r := c.closeReason(); r != tt.first {
			t.Errorf("%s then %s: reason %q", tt.first, tt.later, r)
		}
		var total uint64
		for _, n := range b.Stats().Evictions {
			total += n
		}
		want := uint64(0)
		if tt.counted {
			want = 1
		}
		if total != want || tt.counted && b.Stats().Evictions[tt.first] != 1 {
			t.Errorf("%s then %s: evictions %v", tt.first, tt.later, b.Stats().Evictions)
		}
		b.Disconnect(c, tt.later)
	}
}
