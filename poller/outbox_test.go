package poller

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/envelope"
)

func TestOutboxKeepsNewestPerTarget(t *testing.T) {
	o := newOutbox()
	t0 := time.Unix(1000, 0)
	a1 := &message{key: "a", data: []byte("a1"), env: envelope.Envelope{ScrapeStart: t0}}
	a2 := &message{key: "a", data: []byte("a2"), env: envelope.Envelope{ScrapeStart: t0.Add(time.Second)}}
	b1 := &message{key: "b", data: []byte("b1"), env: envelope.Envelope{ScrapeStart: t0}}
	if o.put(a1) || o.put(b1) {
		t.Fatal("first put of a target reported a replacement")
	}
	if !o.put(a2) {
		t.Fatal("second put of target a did not report replacing a1")
	}
	if o.len() != 2 {
		t.Fatalf("len = %d, want 2", o.len())
	}
	ctx := context.Background()
	if got := o.next(ctx); got != a2 {
		t.Fatalf("first out: %s, want a2 (a was queued first, and a2 replaced a1)", got.data)
	}
	if got := o.next(ctx); got != b1 {
		t.Fatalf("second out: %s, want b1", got.data)
	}
	// A failed publish goes back unless a newer scrape is waiting.
	if o.restore(a2) {
		t.Fatal("restore into an empty slot reported a drop")
	}
	a3 := &message{key: "a", data: []byte("a3"), env: envelope.Envelope{ScrapeStart: t0.Add(2 * time.Second)}}
	o.put(a3)
	if o.restore(b1) || o.len() != 2 {
		t.Fatalf("restore of b1 into its empty slot: len %d, want 2", o.len())
	}
	if !o.restore(a2) {
		t.Fatal("restore of a2 with a newer a3 waiting was not dropped")
	}
	if got := o.next(ctx); got != a3 {
		t.Fatalf("after restore: %s, want a3", got.data)
	}
	cctx, cancel := context.WithCancel(ctx)
	o.next(cctx) // b1
	cancel()
	if got := o.next(cctx); got != nil {
		t.Fatalf("next on an empty outbox with a cancelled context: %v", got)
	}
}

func TestOffsetIsStableAndWithinInterval(t *testing.T) {
	interval := 15 * time.Second
	now := time.Unix(1_700_000_000, 123)
	seen := map[time.Duration]bool{}
	for _, target := range []string{"a", "b", "c", "d", "e"} {
		d := offset(now, interval, "dc1", "node", target)
		if d < 0 || d >= interval {
			t.Fatalf("offset %v for %s outside [0, %v)", d, target, interval)
		}
		if again := offset(now, interval, "dc1", "node", target); again != d {
			t.Fatalf("offset for %s not stable: %v then %v", target, d, again)
		}
		// One interval later the slot is the same point in the cycle.
		if later := offset(now.Add(interval), interval, "dc1", "node", target); later != d {
			t.Fatalf("offset for %s moved across intervals: %v then %v", target, d, later)
		}
		seen[d] = true
	}
	if len(seen) < 4 {
		t.Fatalf("5 targets got only %d distinct offsets: load is not spread", len(seen))
	}
}

// TestDefaults keeps the README's figures true: a scrape times out after
// min(interval, 10s), and shutdown waits up to 5s for acknowledgements.
func TestDefaults(t *testing.T) {
	for _, c := range []struct{ interval, timeout time.Duration }{{time.Minute, 10 * time.Second}, {5 * time.Second, 5 * time.Second}} {
		p, err := New(Options{Interval: c.interval}, nil, nil, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if p.opts.Timeout != c.timeout || p.opts.ShutdownGrace != 5*time.Second || p.opts.BodyLimit != 16<<20 || p.opts.MaxInflight != 64 {
			t.Fatalf("interval %v: defaults %+v", c.interval, p.opts)
		}
	}
}
