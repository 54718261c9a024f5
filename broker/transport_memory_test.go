package broker

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"
)

func publishRecord(tr Transport, r *Record) {
	_, _, _ = tr.Publish(context.Background(), []*Record{r})
}

func readPositions(t *testing.T, tr Transport, epoch string, after uint64) ([]uint64, bool) {
	t.Helper()
	var got []uint64
	ok := tr.ReadFrom(epoch, after, func(r *Record) bool {
		got = append(got, r.Position)
		return true
	})
	return got, ok
}

func TestMemoryTransportReadFrom(t *testing.T) {
	t.Parallel()
	var delivered []uint64
	tr := NewMemoryTransport(time.Minute, 0)
	_ = tr.Start(func(r *Record) { delivered = append(delivered, r.Position) }, Position{})
	for i := 0; i < 5; i++ {
		publishRecord(tr, &Record{Message: &Message{Name: "m", Data: json.RawMessage(`1`)}})
	}
	if len(delivered) != 5 || delivered[0] != 1 || delivered[4] != 5 {
		t.Fatalf("delivered %v, want positions 1..5 in order", delivered)
	}
	for _, tt := range []struct {
		name  string
		epoch string
		after uint64
		want  []uint64
		ok    bool
	}{
		{"from the start", tr.Epoch(), 0, []uint64{1, 2, 3, 4, 5}, true},
		{"from the middle", tr.Epoch(), 3, []uint64{4, 5}, true},
		{"up to date", tr.Epoch(), 5, nil, true},
		{"a position not reached yet", tr.Epoch(), 6, nil, false},
		{"another epoch", "AAAAAAAA", 3, nil, false},
	} {
		got, ok := readPositions(t, tr, tt.epoch, tt.after)
		if ok != tt.ok || len(got) != len(tt.want) {
			t.Errorf("%s: ReadFrom = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: ReadFrom = %v, want %v", tt.name, got, tt.want)
				break
			}
		}
	}
}

// TestMemoryTransportLimits: the log forgets what is older than the window
// or over the byte cap, and then refuses to serve from before it; a window
// of 0 keeps nothing.
func TestMemoryTransportLimits(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tr := NewMemoryTransport(time.Minute, 0)
		msg := func() *Record { return &Record{Message: &Message{Name: "m", Data: json.RawMessage(`1`)}} }
		publishRecord(tr, msg())
		time.Sleep(40 * time.Second)
		publishRecord(tr, msg())
		time.Sleep(30 * time.Second) // the first is 70s old, the second 30s
		if _, ok := readPositions(t, tr, tr.Epoch(), 0); ok {
			t.Error("ReadFrom(0) served although position 1 left the window")
		}
		if got, ok := readPositions(t, tr, tr.Epoch(), 1); !ok || len(got) != 1 || got[0] != 2 {
			t.Errorf("ReadFrom(1) = %v, %v; want [2], true", got, ok)
		}

		one := recordSize(msg())
		tr.SetLimits(time.Minute, 3*one)
		for i := 0; i < 5; i++ {
			publishRecord(tr, msg()) // positions 3..7; only the last three fit
		}
		if n, bytes := tr.Held(); n != 3 || bytes != 3*one {
			t.Errorf("held %d records, %d bytes; want 3, %d", n, bytes, 3*one)
		}
		if _, ok := readPositions(t, tr, tr.Epoch(), 3); ok {
			t.Error("ReadFrom(3) served although position 4 was dropped for resume_bytes")
		}
		if got, ok := readPositions(t, tr, tr.Epoch(), 4); !ok || len(got) != 3 {
			t.Errorf("ReadFrom(4) = %v, %v; want [5 6 7], true", got, ok)
		}

		tr.SetLimits(0, 0)
		if n, _ := tr.Held(); n != 0 {
			t.Errorf("resume_window 0 still holds %d records", n)
		}
		publishRecord(tr, msg())
		if _, ok := readPositions(t, tr, tr.Epoch(), 7); ok {
			t.Error("resume_window 0 served a record")
		}
		if _, ok := readPositions(t, tr, tr.Epoch(), 8); !ok {
			t.Error("an up-to-date position is refused with resume_window 0")
		}
	})
}
