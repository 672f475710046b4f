package push

import (
	"context"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// fakeMsg stands in for a delivery in scheduler tests, which exercise
// bookkeeping only; the integration tests use the real stream.
type fakeMsg struct{ id string }

func (m *fakeMsg) Done(string, error) {}

func newItem(id string, start time.Time) *item {
	return &item{env: &envelope.Envelope{ScrapeStart: start}, msgs: []output.Delivery{&fakeMsg{id}}}
}

func ids(items []*item) []string {
	var out []string
	for _, it := range items {
		for _, m := range it.msgs {
			out = append(out, m.(*fakeMsg).id)
		}
	}
	return out
}

func msgIDs(msgs []output.Delivery) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.(*fakeMsg).id)
	}
	return out
}

func TestSchedulerLatestWinsPerGroup(t *testing.T) {
	s := newScheduler()
	key := pushgateway.GroupingKey{Job: "j"}
	t0 := time.Unix(1000, 0)
	ctx := context.Background()

	if got := s.offer("g", key, newItem("m1", t0)); len(got) != 0 {
		t.Fatalf("first offer superseded %v", ids(got))
	}
	g, active := s.next(ctx)
	if active.msgs[0].(*fakeMsg).id != "m1" {
		t.Fatalf("active %v, want m1", msgIDs(active.msgs))
	}
	// While m1 is pushed: m2 waits, m3 replaces it, an older m0 and a
	// redelivery of m1 are handled without a second push.
	steps := []struct {
		id         string
		start      time.Time
		superseded []string
	}{
		{"m2", t0.Add(time.Second), nil},
		{"m3", t0.Add(2 * time.Second), []string{"m2"}},
		{"m0", t0.Add(-time.Second), []string{"m0"}},
		{"m1-again", t0, nil},
		{"m3-again", t0.Add(2 * time.Second), nil},
	}
	for _, st := range steps {
		got := ids(s.offer("g", key, newItem(st.id, st.start)))
		if len(got) != len(st.superseded) || (len(got) > 0 && got[0] != st.superseded[0]) {
			t.Fatalf("offer %s superseded %v, want %v", st.id, got, st.superseded)
		}
	}
	if !s.hasNewer(g) {
		t.Fatal("hasNewer = false with m3 waiting")
	}
	if s.waiting() != 0 {
		t.Fatalf("a group with an active push is queued again before it finishes: waiting %d", s.waiting())
	}
	if got := msgIDs(s.finish(g, true)); len(got) != 2 || got[0] != "m1" || got[1] != "m1-again" {
		t.Fatalf("finish returned %v, want [m1 m1-again]", got)
	}
	g2, active := s.next(ctx)
	if g2 != g || len(active.msgs) != 2 || active.start() != t0.Add(2*time.Second) {
		t.Fatalf("next after finish: %v", msgIDs(active.msgs))
	}
	s.finish(g, true)
	// Anything not newer than what was pushed is superseded at once.
	if got := ids(s.offer("g", key, newItem("late", t0.Add(time.Second)))); len(got) != 1 {
		t.Fatalf("an offer older than the last push was queued: superseded %v", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if g, _ := s.next(cctx); g != nil {
		t.Fatal("next returned a group with nothing queued")
	}
}

func TestSchedulerGroupsRunIndependently(t *testing.T) {
	s := newScheduler()
	t0 := time.Unix(1000, 0)
	s.offer("a", pushgateway.GroupingKey{Job: "a"}, newItem("a1", t0))
	s.offer("b", pushgateway.GroupingKey{Job: "b"}, newItem("b1", t0))
	ctx := context.Background()
	ga, _ := s.next(ctx)
	gb, _ := s.next(ctx)
	if ga == gb || ga.key.Job != "a" || gb.key.Job != "b" {
		t.Fatalf("groups were not handed out in order to two workers: %v %v", ga.key, gb.key)
	}
}

func TestSchedulerForgetsGroupsThatNeverPushed(t *testing.T) {
	s := newScheduler()
	t0 := time.Unix(1000, 0)
	ctx := context.Background()
	s.offer("refused", pushgateway.GroupingKey{Job: "refused"}, newItem("r", t0))
	g, _ := s.next(ctx)
	s.finish(g, false)
	s.offer("pushed", pushgateway.GroupingKey{Job: "pushed"}, newItem("p", t0))
	g, _ = s.next(ctx)
	s.finish(g, true)
	s.offer("busy", pushgateway.GroupingKey{Job: "busy"}, newItem("b", t0))
	s.forget(false)
	if s.size() != 2 {
		t.Fatalf("after forget: %d groups, want 2 (the pushed one and the one with a scrape waiting)", s.size())
	}
}

func TestSchedulerMarksDownThenDeletesSilentGroups(t *testing.T) {
	s := newScheduler()
	t0 := time.Unix(1000, 0)
	clock := t0
	s.now = func() time.Time { return clock }
	ctx := context.Background()
	key := pushgateway.GroupingKey{Job: "j"}
	s.offer("g", key, newItem("m1", t0))
	g, _ := s.next(ctx)
	s.finish(g, true)

	s.reap(t0, time.Time{}) // nothing older than t0: no action
	if s.waiting() != 0 {
		t.Fatal("a group pushed at the cut-off was reaped")
	}
	s.reap(t0.Add(time.Minute), time.Time{})
	g, it := s.next(ctx)
	if it.control != controlMarkDown {
		t.Fatalf("control %v, want mark down", it.control)
	}
	s.finish(g, true)
	s.reap(t0.Add(time.Minute), time.Time{})
	if s.waiting() != 0 {
		t.Fatal("a group already marked down was marked again")
	}
	// A scrape arriving revives it; one waiting replaces a queued action.
	s.reap(t0.Add(time.Minute), t0.Add(time.Minute))
	if got := s.offer("g", key, newItem("m2", t0.Add(2*time.Minute))); len(got) != 0 {
		t.Fatalf("offer superseded %v", ids(got))
	}
	g, it = s.next(ctx)
	if it.control != controlNone {
		t.Fatal("the queued delete was not replaced by the scrape that arrived")
	}
	clock = t0.Add(2 * time.Minute)
	s.finish(g, true)
	if g.markedDown {
		t.Fatal("a pushed scrape did not clear the down mark")
	}
	s.reap(t0.Add(3*time.Minute), t0.Add(3*time.Minute))
	g, it = s.next(ctx)
	if it.control != controlDelete {
		t.Fatalf("control %v, want delete", it.control)
	}
	s.finish(g, true)
	if s.size() != 0 {
		t.Fatalf("%d groups after the delete, want 0", s.size())
	}
}

func TestSchedulerOldScrapeDoesNotCancelAQueuedAction(t *testing.T) {
	// A redelivered old scrape arriving while a mark-down is queued is
	// superseded; the mark-down still runs (and next never hands out a
	// group with nothing to do).
	s := newScheduler()
	t0 := time.Unix(1000, 0)
	ctx := context.Background()
	key := pushgateway.GroupingKey{Job: "j"}
	s.offer("g", key, newItem("m1", t0))
	g, _ := s.next(ctx)
	s.finish(g, true)
	s.reap(s.now().Add(time.Hour), time.Time{})
	if got := ids(s.offer("g", key, newItem("old", t0))); len(got) != 1 {
		t.Fatalf("the old scrape was not superseded: %v", got)
	}
	g, it := s.next(ctx)
	if it == nil || it.control != controlMarkDown {
		t.Fatalf("next returned %v, want the queued mark-down", it)
	}
	s.finish(g, true)
}

func TestSchedulerLag(t *testing.T) {
	s := newScheduler()
	t0 := time.Unix(1000, 0)
	clock := t0
	s.now = func() time.Time { return clock }
	ctx := context.Background()
	if got := s.lag(); got != 0 {
		t.Fatalf("lag with nothing waiting = %v, want 0", got)
	}
	// a waits with the oldest scrape; b's newer one waits behind it.
	s.offer("a", pushgateway.GroupingKey{Job: "a"}, newItem("a1", t0))
	s.offer("b", pushgateway.GroupingKey{Job: "b"}, newItem("b1", t0.Add(2*time.Second)))
	clock = t0.Add(5 * time.Second)
	if got := s.lag(); got != 5*time.Second {
		t.Fatalf("lag = %v, want 5s (a's scrape)", got)
	}
	// A newer scrape of a replaces the waiting one: latest-wins keeps the
	// lag down while workers keep up.
	s.offer("a", pushgateway.GroupingKey{Job: "a"}, newItem("a2", t0.Add(4*time.Second)))
	if got := s.lag(); got != 3*time.Second {
		t.Fatalf("lag = %v, want 3s (b's scrape, now the oldest)", got)
	}
	// Workers take both; a scrape of b arriving meanwhile waits for b's
	// push, not for a worker, and does not count.
	ga, _ := s.next(ctx)
	gb, _ := s.next(ctx)
	if got := s.offer("b", pushgateway.GroupingKey{Job: "b"}, newItem("b2", t0.Add(6*time.Second))); len(got) != 0 {
		t.Fatalf("b2 superseded %v", ids(got))
	}
	if got := s.lag(); got != 0 {
		t.Fatalf("lag with both groups at a worker = %v, want 0", got)
	}
	// Once b's push is over, b2 waits for a worker.
	clock = t0.Add(10 * time.Second)
	s.finish(gb, true)
	if got := s.lag(); got != 4*time.Second {
		t.Fatalf("lag = %v, want 4s (b2)", got)
	}
	gb, _ = s.next(ctx)
	s.finish(gb, true)
	// The receiver's own actions have no scrape and no age.
	s.finish(ga, true)
	s.reap(clock.Add(time.Hour), time.Time{})
	if s.waiting() != 2 || s.lag() != 0 {
		t.Fatalf("queued mark-downs: waiting %d, lag %v; want 2 and 0", s.waiting(), s.lag())
	}
	// A clock behind the scrape's start (the poller's clock ahead) is no
	// negative lag.
	s.offer("c", pushgateway.GroupingKey{Job: "c"}, newItem("c1", clock.Add(time.Second)))
	if got := s.lag(); got != 0 {
		t.Fatalf("lag of a scrape from the future = %v, want 0", got)
	}
}
