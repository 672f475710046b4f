package receiver

import (
	"context"
	"sync"
	"time"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/pushgateway"
	"github.com/choria-io/prometheus-streams/stream"
)

// item is one scrape waiting to be pushed, with every delivery of it that
// must be acknowledged once it is dealt with (the server redelivers a
// message whose push outlasts the ack wait).
type item struct {
	env  *envelope.Envelope
	msgs []stream.Message
}

func (it *item) start() time.Time { return it.env.ScrapeStart }

// group is one Pushgateway grouping key. At most one of its scrapes is
// being pushed (active) and at most one waits (pending): a newer scrape
// replaces the waiting one, because the Pushgateway only shows the newest.
type group struct {
	key        pushgateway.GroupingKey
	pending    *item
	active     *item
	queued     bool
	lastPushed time.Time // scrape start of the newest scrape pushed
}

// scheduler hands groups to push workers: pushes of different groups run
// concurrently, one group's never do, and only its newest scrape is pushed.
// Safe for concurrent use.
type scheduler struct {
	mu     sync.Mutex
	groups map[string]*group
	ready  []*group
	notify chan struct{} // has a token while ready is non-empty
}

func newScheduler() *scheduler {
	return &scheduler{groups: map[string]*group{}, notify: make(chan struct{}, 1)}
}

// offer queues it for the group id and returns the items it made obsolete
// (it itself, when the group already has a scrape as new or newer), which
// the caller acknowledges as superseded.
func (s *scheduler) offer(id string, key pushgateway.GroupingKey, it *item) (superseded []*item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil {
		g = &group{key: key}
		s.groups[id] = g
	}
	start := it.start()
	switch {
	case !g.lastPushed.IsZero() && !start.After(g.lastPushed):
		return []*item{it}
	case g.active != nil && start.Equal(g.active.start()):
		// A redelivery of the scrape being pushed: ack it with that push.
		g.active.msgs = append(g.active.msgs, it.msgs...)
		return nil
	case g.active != nil && start.Before(g.active.start()):
		return []*item{it}
	case g.pending != nil && start.Equal(g.pending.start()):
		g.pending.msgs = append(g.pending.msgs, it.msgs...)
		return nil
	case g.pending != nil && start.Before(g.pending.start()):
		return []*item{it}
	case g.pending != nil:
		superseded = []*item{g.pending}
	}
	g.pending = it
	s.enqueue(g)
	return superseded
}

// enqueue must be called with mu held.
func (s *scheduler) enqueue(g *group) {
	if g.active != nil || g.queued || g.pending == nil {
		return
	}
	g.queued = true
	s.ready = append(s.ready, g)
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// next blocks until a group has a scrape to push, makes it the group's
// active one and returns both; nil when ctx is done.
func (s *scheduler) next(ctx context.Context) (*group, *item) {
	for {
		s.mu.Lock()
		if len(s.ready) > 0 {
			g := s.ready[0]
			s.ready[0] = nil
			s.ready = s.ready[1:]
			g.queued = false
			g.active, g.pending = g.pending, nil
			if len(s.ready) > 0 {
				select {
				case s.notify <- struct{}{}:
				default:
				}
			}
			s.mu.Unlock()
			return g, g.active
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil
		case <-s.notify:
		}
	}
}

// hasNewer reports whether a newer scrape of g waits behind its active one.
func (s *scheduler) hasNewer(g *group) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return g.pending != nil
}

// finish ends g's active push and returns the deliveries to acknowledge
// (the caller decides whether to). pushed records that the scrape reached
// the Pushgateway, so older deliveries arriving later are superseded.
func (s *scheduler) finish(g *group, pushed bool) []stream.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := g.active
	g.active = nil
	if pushed && it.start().After(g.lastPushed) {
		g.lastPushed = it.start()
	}
	s.enqueue(g)
	return it.msgs
}

// forget drops groups with nothing to push whose last push is older than
// before (or that never pushed), bounding the map by the live groups.
func (s *scheduler) forget(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, g := range s.groups {
		if g.active == nil && g.pending == nil && g.lastPushed.Before(before) {
			delete(s.groups, id)
		}
	}
}

// size returns the number of groups the scheduler tracks.
func (s *scheduler) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.groups)
}

// waiting is the number of groups with a scrape waiting for a worker.
func (s *scheduler) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ready)
}
