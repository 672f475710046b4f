package push

import (
	"context"
	"sync"
	"time"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// item is one scrape waiting to be pushed, with every delivery of it that
// must be acknowledged once it is dealt with (the server redelivers a
// message whose push outlasts the ack wait).
type item struct {
	env  *envelope.Envelope
	msgs []output.Delivery
	// control, when set, makes this no scrape but an action of the
	// receiver's own on the group; env and msgs are then empty.
	control control
}

// control is an action the receiver takes on a group nothing was heard
// from for a while.
type control uint8

const (
	controlNone     control = iota
	controlMarkDown         // replace the group with up 0
	controlDelete           // delete the group from the Pushgateway
)

func (it *item) start() time.Time {
	if it.env == nil {
		return time.Time{}
	}
	return it.env.ScrapeStart
}

// group is one Pushgateway grouping key. At most one of its scrapes is
// being pushed (active) and at most one waits (pending): a newer scrape
// replaces the waiting one, because the Pushgateway only shows the newest.
type group struct {
	id         string // key.Path(), the scheduler's map key
	key        pushgateway.GroupingKey
	pending    *item
	active     *item
	queued     bool
	lastPushed time.Time // scrape start (poller's clock) of the newest scrape pushed: orders scrapes
	pushedAt   time.Time // when (receiver's clock) the group was last pushed: times down and delete
	markedDown bool      // replaced with up 0 since pushedAt
	publisher  string    // of the newest scrape offered
}

// scheduler hands groups to push workers: pushes of different groups run
// concurrently, one group's never do, and only its newest scrape is pushed.
// Safe for concurrent use.
type scheduler struct {
	now    func() time.Time
	mu     sync.Mutex
	groups map[string]*group
	ready  []*group
	notify chan struct{} // has a token while ready is non-empty
}

func newScheduler() *scheduler {
	return &scheduler{now: time.Now, groups: map[string]*group{}, notify: make(chan struct{}, 1)}
}

// offer queues it for the group id and returns the items it made obsolete
// (it itself, when the group already has a scrape as new or newer), which
// the caller acknowledges as superseded.
func (s *scheduler) offer(id string, key pushgateway.GroupingKey, it *item) (superseded []*item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil {
		g = &group{id: id, key: key}
		s.groups[id] = g
	}
	start := it.start()
	if !g.lastPushed.IsZero() && !start.After(g.lastPushed) {
		return []*item{it}
	}
	if g.pending != nil && g.pending.control != controlNone {
		// A scrape newer than the last push arrived: the group is alive
		// after all, and the queued action gives way to it (the group
		// stays queued, now with the scrape).
		g.pending = nil
	}
	switch {
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
			if g.pending == nil {
				s.mu.Unlock()
				continue // nothing left to do for it
			}
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
func (s *scheduler) finish(g *group, pushed bool) []output.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := g.active
	g.active = nil
	switch {
	case it.control == controlMarkDown:
		g.markedDown = pushed
	case it.control == controlDelete && pushed:
		if g.pending == nil {
			delete(s.groups, g.id)
		}
		g.lastPushed, g.pushedAt, g.markedDown = time.Time{}, time.Time{}, false
	case pushed && it.start().After(g.lastPushed):
		g.lastPushed = it.start()
		g.pushedAt = s.now()
		g.markedDown = false
	}
	s.enqueue(g)
	return it.msgs
}

// reap queues the receiver's own actions for groups last pushed before
// downBefore (mark them down) or deleteBefore (delete them).
// A zero deleteBefore deletes nothing. Groups with work under way or
// waiting are left alone: something is still arriving for them.
func (s *scheduler) reap(downBefore, deleteBefore time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.active != nil || g.pending != nil || g.pushedAt.IsZero() {
			continue
		}
		switch {
		case !deleteBefore.IsZero() && g.pushedAt.Before(deleteBefore):
			g.pending = &item{control: controlDelete}
		case !g.markedDown && g.pushedAt.Before(downBefore):
			g.pending = &item{control: controlMarkDown}
		default:
			continue
		}
		s.enqueue(g)
	}
}

// seed records a group already in the Pushgateway (found at start) and
// when it was pushed, so a group whose target disappeared while the
// receiver was down is still marked down and deleted in time. It leaves
// lastPushed alone: a backlog of older scrapes still waiting in the stream
// must not be taken for superseded by what the Pushgateway holds.
func (s *scheduler) seed(id string, key pushgateway.GroupingKey, pushedAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.groups[id]; !ok {
		s.groups[id] = &group{id: id, key: key, pushedAt: pushedAt}
	}
}

// touch records that group id was pushed at pushedAt (by anyone, as the
// Pushgateway reports it), so a group another receiver keeps pushing is
// not marked down or deleted by this one.
func (s *scheduler) touch(id string, pushedAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[id]; g != nil && pushedAt.After(g.pushedAt) {
		g.pushedAt = pushedAt
		g.markedDown = false
	}
}

// due reports whether reap with the same arguments would act on a group.
func (s *scheduler) due(downBefore, deleteBefore time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.active != nil || g.pending != nil || g.pushedAt.IsZero() {
			continue
		}
		if (!deleteBefore.IsZero() && g.pushedAt.Before(deleteBefore)) || (!g.markedDown && g.pushedAt.Before(downBefore)) {
			return true
		}
	}
	return false
}

// remove stops watching g (an action on it was refused for good); a
// scrape arriving later starts it afresh.
func (s *scheduler) remove(g *group) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[g.id] == g && g.active == nil && g.pending == nil {
		delete(s.groups, g.id)
	}
}

// swapPublisher records the publisher of a scrape of group id and returns
// the previous one ("" for a new group).
func (s *scheduler) swapPublisher(id, publisher string) (previous string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil {
		return ""
	}
	previous, g.publisher = g.publisher, publisher
	return previous
}

// forget drops groups that have nothing to push and never pushed anything
// (every scrape of theirs was refused, stale or superseded): nothing of
// theirs is in the Pushgateway to mark down or delete. With keepDown (no
// deletes configured) it also drops groups already marked down: there is
// nothing more to do for them, and the map stays bounded by the live
// groups. Other groups stay until reap deletes them.
func (s *scheduler) forget(keepDown bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, g := range s.groups {
		if g.active != nil || g.pending != nil {
			continue
		}
		if g.pushedAt.IsZero() || (keepDown && g.markedDown) {
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

// lag is the age (by s.now, the receiver's clock) of the oldest scrape
// waiting for a push worker, since its start; 0 when none waits. A scrape
// queued behind its own group's push in progress is not waiting for a
// worker and does not count (it replaces or gets replaced, latest-wins).
func (s *scheduler) lag() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	for _, g := range s.ready {
		if g.pending == nil || g.pending.env == nil {
			continue // nothing left, or an action of the receiver's own
		}
		if start := g.pending.start(); oldest.IsZero() || start.Before(oldest) {
			oldest = start
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return max(s.now().Sub(oldest), 0)
}

// waiting is the number of groups with a scrape waiting for a worker.
func (s *scheduler) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ready)
}
