package poller

import (
	"context"
	"sync"

	"github.com/choria-io/prometheus-streams/envelope"
)

// message is one encoded scrape waiting to be published.
type message struct {
	key  string // job and instance: one slot per target
	data []byte
	env  envelope.Envelope // data's header, without the payload
}

// outbox holds at most one unpublished message per target. A Pushgateway
// only ever shows a group's newest scrape, so while the stream is slow or
// unreachable an older unpublished scrape is worthless once a newer one
// exists: put replaces it and reports so. Safe for concurrent use.
type outbox struct {
	mu      sync.Mutex
	pending map[string]*message
	order   []string      // keys with a pending message, oldest first
	notify  chan struct{} // has a token while pending is non-empty
}

func newOutbox() *outbox {
	return &outbox{pending: map[string]*message{}, notify: make(chan struct{}, 1)}
}

// put stores m, replacing any pending message of the same target; it
// reports whether one was replaced.
func (o *outbox) put(m *message) (replaced bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, replaced = o.pending[m.key]; !replaced {
		o.order = append(o.order, m.key)
	}
	o.pending[m.key] = m
	o.signal()
	return replaced
}

// restore puts back a message whose publish failed, unless a newer scrape
// of the target is already waiting: it reports whether m was dropped for
// that reason.
func (o *outbox) restore(m *message) (dropped bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.pending[m.key]; ok {
		return true
	}
	o.pending[m.key] = m
	o.order = append(o.order, m.key)
	o.signal()
	return false
}

// next blocks until a message is pending or ctx is done (nil).
func (o *outbox) next(ctx context.Context) *message {
	for {
		o.mu.Lock()
		if len(o.order) > 0 {
			key := o.order[0]
			o.order = o.order[1:]
			m := o.pending[key]
			delete(o.pending, key)
			if len(o.order) > 0 {
				o.signal()
			}
			o.mu.Unlock()
			return m
		}
		o.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-o.notify:
		}
	}
}

// len is the number of pending messages.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.order)
}

// signal must be called with mu held.
func (o *outbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}
