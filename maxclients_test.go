package realtime

import "testing"

func TestMaxClientsFor(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{
		{20000, 18000}, {1024, 768}, {100, 1}, {1 << 20, 1<<20 - (1<<20)/10},
	} {
		if got := maxClientsFor(tc.limit); got != tc.want {
			t.Errorf("maxClientsFor(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
	if n := defaultMaxClients(); n < 0 {
		t.Fatalf("defaultMaxClients = %d", n)
	}
}
