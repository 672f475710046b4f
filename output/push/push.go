package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/backoff"
	"github.com/choria-io/prometheus-streams/internal/bufpool"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// process pushes the group's active scrape: at least once, retrying
// network errors and 5xx while the scrape is younger than max_age and no
// newer scrape of the group waits. When ctx ends between attempts the
// scrape is left unacknowledged for redelivery.
func (w *worker) process(ctx context.Context, g *group, it *item) {
	r := w.r
	defer w.trim()
	if it.control != controlNone {
		// A receiver waiting for its turn marks down and deletes
		// nothing: the active one's scrapes keep the groups alive.
		if !r.turn.wait(ctx) {
			r.sched.finish(g, false)
			return
		}
		w.control(ctx, g, it)
		return
	}
	contentType, err := w.prepare(g, it.env)
	if err != nil {
		settle(r.sched.finish(g, false), envelope.Reason(err), fmt.Errorf("%s: %w", g.key, err))
		return
	}
	// answered: every failed attempt so far was answered in a way that
	// says the Pushgateway did not take it.
	answered := true
	b := backoff.New(r.opts.RetryMin, r.opts.RetryMax)
	for attempt := 1; ; attempt++ {
		if r.now().Sub(it.env.ScrapeStart) > r.live.Load().MaxAge {
			settle(w.finish(g, false, answered), output.ReasonStale,
				fmt.Errorf("scrape of %s became older than max_age after %d failed push attempts", g.key, attempt-1))
			return
		}
		if !r.turn.wait(ctx) {
			// Not this receiver's turn (or shutting down): left
			// unsettled, delivered again to the one whose turn it is.
			w.finish(g, false, answered)
			return
		}
		err := w.push(ctx, g, contentType)
		if err == nil {
			r.metrics.pushes.WithLabelValues(pushSuccess).Inc()
			r.metrics.delivery.Observe(r.now().Sub(it.env.ScrapeStart).Seconds())
			// Set on a push, not on arrival: only publishers whose data
			// reaches the Pushgateway get a series.
			r.metrics.lastMessage.WithLabelValues(it.env.Publisher).Set(float64(r.now().UnixNano()) / 1e9)
			if attempt > 1 {
				r.log.Info("push succeeded after retries", "group", g.key, "attempts", attempt)
			}
			settle(w.finish(g, true, answered), "", nil)
			return
		}
		answered = answered && notTaken(err)
		if !pushgateway.Retryable(err) {
			r.metrics.pushes.WithLabelValues(pushRejected).Inc()
			settle(w.finish(g, false, answered), output.ReasonRejected, fmt.Errorf("pushgateway refused the scrape of %s: %w", g.key, err))
			return
		}
		r.metrics.pushes.WithLabelValues(pushError).Inc()
		r.logs.Log(logPushFailed,
			"push failed, retrying while the scrape is younger than max_age (further failures are logged at debug level for a minute)",
			"push failed, retrying", "group", g.key, "err", err, "attempt", attempt)
		if r.sched.hasNewer(g) {
			settle(w.finish(g, false, answered), output.ReasonSuperseded, nil)
			return
		}
		if !b.Wait(ctx) {
			w.finish(g, false, answered) // shutting down: redelivered later
			return
		}
	}
}

// finish settles the group's reservation in the consistency book, then
// ends its push in the scheduler and returns the deliveries to
// acknowledge. The order matters: once the scheduler is told, another
// worker may start the group's next push, which reserves afresh.
func (w *worker) finish(g *group, pushed, answered bool) []output.Delivery {
	o := pushApplied
	switch {
	case !pushed && answered:
		o = pushNotApplied
	case !pushed:
		o = pushUnknown
	}
	w.r.book.settle(g.id, o)
	return w.r.sched.finish(g, pushed)
}

// notTaken reports whether a failed push certainly did not change the
// Pushgateway: refused with a 4xx (by it or a proxy in front), or never
// sent. A 5xx may come from a proxy after the Pushgateway took the push,
// and a network error or timeout may hide an answer that was on its way.
func notTaken(err error) bool {
	var pe *pushgateway.Error
	if errors.As(err, &pe) && pe.Code != 0 {
		return pe.Code < 500
	}
	return errors.Is(err, pushgateway.ErrInvalidGroupingKey)
}

// prepare decompresses and converts the scrape into w.out, leaving out
// what the consistency check refuses (and reserving the rest for g in the
// book: the caller settles it), and returns the content type to push it
// with. On error nothing stays reserved.
func (w *worker) prepare(g *group, env *envelope.Envelope) (string, error) {
	r := w.r
	var err error
	w.body, err = env.Body(w.body[:0], int(r.opts.BodyLimit))
	if err != nil {
		return "", err
	}
	if len(w.body) == cap(w.body) {
		// The text parser appends a newline to the body it is given; room
		// for it here saves copying the whole body on every scrape.
		w.body = slices.Grow(w.body, 1)
	}
	w.out.Reset()
	res, err := convert(env, w.body, w.r.grouping.names, w.checkFor(g), &w.out)
	if err != nil {
		r.book.settle(g.id, pushNotApplied)
		return "", err
	}
	if res.stripped > 0 {
		r.metrics.stripped.Add(float64(res.stripped))
	}
	if res.renamed > 0 {
		r.metrics.renamed.Add(float64(res.renamed))
	}
	if res.parseErr != nil {
		r.metrics.unparseable.Inc()
		r.log.Debug("scrape body is not a readable exposition; pushing up 0", "job", env.Job, "instance", env.Instance, "err", res.parseErr)
	}
	return string(pushFormat), nil
}

// push makes one attempt. A push under way when ctx ends still completes
// (bounded by PushTimeout), so a shutdown does not cut a request in half.
func (w *worker) push(ctx context.Context, g *group, contentType string) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.r.opts.PushTimeout)
	defer cancel()
	start := w.r.now()
	err := w.r.push.Push(pctx, g.key, contentType, w.out.Bytes())
	w.r.metrics.pushDuration.Observe(w.r.now().Sub(start).Seconds())
	return err
}

// maxKeptBuffer is the most a worker keeps of its buffers between scrapes:
// one huge scrape must not pin its size for the life of the process.
const maxKeptBuffer = bufpool.MaxKept

// trim drops buffers a large scrape grew beyond maxKeptBuffer.
func (w *worker) trim() {
	if cap(w.body) > maxKeptBuffer {
		w.body = nil
	}
	if w.out.Cap() > maxKeptBuffer {
		w.out = bytes.Buffer{}
	}
}
