package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextGrowsAndIsBounded(t *testing.T) {
	b := New(10*time.Millisecond, 80*time.Millisecond)
	wantMax := []time.Duration{10, 20, 40, 80, 80, 80}
	for i, w := range wantMax {
		w *= time.Millisecond
		got := b.Next()
		if got > w || got < w-w/5 {
			t.Fatalf("attempt %d: delay %v, want within [%v, %v]", i, got, w-w/5, w)
		}
	}
	b.Reset()
	if got := b.Next(); got > 10*time.Millisecond {
		t.Fatalf("after Reset: delay %v, want at most 10ms", got)
	}
}

func TestDefaults(t *testing.T) {
	b := New(0, 0)
	if b.Min != 100*time.Millisecond || b.Max != 30*time.Second {
		t.Fatalf("defaults: got min %v max %v", b.Min, b.Max)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	b := New(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait on a cancelled context reported go on")
	}
	if !New(time.Millisecond, time.Millisecond).Wait(context.Background()) {
		t.Fatal("Wait with a live context reported stop")
	}
}
