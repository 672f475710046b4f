package push

import (
	"context"
	"sync"
)

// turn decides whether this output may push now. With NATS Streaming a
// receiver is the Pushgateway's only writer and always may. With JetStream
// the receivers share a pinned consumer and take turns: a receiver that
// lost the pin (another one took over, or its connection went) must not
// push what it still holds, since the other one may already have pushed
// newer scrapes of the same groups; and one that gets the pin first reads
// the Pushgateway again, so its consistency check knows what the other
// pushed, before it pushes.
type turn struct {
	mu      sync.Mutex
	active  bool
	started bool          // Run has decided whether it reads the Pushgateway
	ready   chan struct{} // closed while no Resync runs
}

func newTurn() *turn {
	ready := make(chan struct{})
	close(ready)
	return &turn{active: true, ready: ready}
}

// wait returns once no Resync runs, and whether this output may push.
func (t *turn) wait(ctx context.Context) bool {
	t.mu.Lock()
	ready := t.ready
	t.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}

// start is called once by Run before its first read of the Pushgateway:
// it reports whether Run reads it now (the output is active), or leaves it
// to the turn that begins later.
func (t *turn) start() (read bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	return t.active
}

// current reports whether it is this output's turn (a Resync may still
// run).
func (t *turn) current() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}

// begin starts a turn whose pushes wait for the returned function to be
// called; read reports whether the turn must read the Pushgateway itself
// (Run has started: otherwise Run's first read serves the turn).
func (t *turn) begin() (done func(), read bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	read = t.started
	t.active = true
	ready := make(chan struct{})
	t.ready = ready
	var once sync.Once
	return func() { once.Do(func() { close(ready) }) }, read
}

// end ends the turn: nothing more is pushed until the next begins.
func (t *turn) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = false
}
