package poller

import (
	"context"
	"errors"
	"time"

	"github.com/choria-io/prometheus-streams/internal/backoff"
	"github.com/choria-io/prometheus-streams/stream"
)

// send publishes outbox messages, at most MaxInflight unacknowledged at a
// time, until ctx is done; then it waits up to ShutdownGrace for the
// outstanding acknowledgements.
func (p *Poller) send(ctx context.Context) {
	slots := make(chan struct{}, p.opts.MaxInflight)
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	defer p.drain(slots)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		m := p.outbox.next(ctx)
		if m == nil {
			<-slots
			return
		}
		select {
		case <-p.pub.Ready():
		case <-ctx.Done():
			<-slots
			return
		}
		if err := p.refit(m); err != nil {
			p.log.Error("cannot encode scrape", "err", err)
			<-slots
			continue
		}
		sent := p.now()
		p.metrics.inflight.Inc()
		err := p.pub.Publish(stream.Key{Publisher: m.env.Publisher, Job: m.env.Job, Instance: m.env.Instance}, m.data, func(err error) {
			p.acked(m, sent, err)
			<-slots
		})
		if err == nil {
			b.Reset()
			continue
		}
		// Refused before it left: the connection is going or gone. Keep the
		// message and give the connection time to come back.
		p.metrics.inflight.Dec()
		p.failed(m, err)
		<-slots
		if !b.Wait(ctx) {
			return
		}
	}
}

// refit makes m fit the connected server: a scrape taken while the
// server's limit was unknown may be too large for it, and would be refused
// on every attempt instead of reaching the centre as a failure.
func (p *Poller) refit(m *message) error {
	data, err := p.fit(&m.env, m.data)
	if err != nil {
		return err
	}
	m.data = data
	return nil
}

// acked records the outcome of one publish; a failed message goes back to
// the outbox unless a newer scrape of its target is waiting.
func (p *Poller) acked(m *message, sent time.Time, err error) {
	p.metrics.inflight.Dec()
	if err == nil {
		p.metrics.published.Inc()
		p.metrics.publishLatency.Observe(p.now().Sub(sent).Seconds())
		return
	}
	p.failed(m, err)
}

func (p *Poller) failed(m *message, err error) {
	reason := pubOther
	switch {
	case errors.Is(err, stream.ErrNotConnected):
		reason = pubNotConnected
	case errors.Is(err, stream.ErrAckTimeout):
		reason = pubTimeout
	case errors.Is(err, stream.ErrConnectionClosed):
		reason = pubClosed
	case errors.Is(err, stream.ErrNoStream):
		reason = pubNoStream
	case errors.Is(err, stream.ErrPermission):
		reason = pubPermission
	case errors.Is(err, stream.ErrTooLarge):
		reason = pubTooLarge
	}
	p.metrics.publishFailures.WithLabelValues(reason).Inc()
	p.log.Debug("publish failed, keeping the scrape for another attempt", "err", err, "reason", reason)
	if p.outbox.restore(m) {
		p.metrics.replaced.Inc()
	}
}

// drain waits until every slot is free (all acknowledgements are in) or the
// grace period is over.
func (p *Poller) drain(slots chan struct{}) {
	deadline := time.NewTimer(p.opts.ShutdownGrace)
	defer deadline.Stop()
	for taken := range cap(slots) {
		select {
		case slots <- struct{}{}:
		case <-deadline.C:
			// slots holds the tokens taken back here plus one per publish
			// still waiting for its acknowledgement.
			p.log.Warn("stopping with publishes still unacknowledged", "unacknowledged", len(slots)-taken)
			return
		}
	}
}
