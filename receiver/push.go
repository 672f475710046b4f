package receiver

import (
	"bytes"
	"context"
	"fmt"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/backoff"
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
		w.control(ctx, g, it)
		return
	}
	contentType, err := w.prepare(it.env)
	if err != nil {
		r.dropAll(r.sched.finish(g, false), envelope.Reason(err), fmt.Errorf("%s: %w", g.key, err))
		return
	}
	b := backoff.New(r.opts.RetryMin, r.opts.RetryMax)
	for attempt := 1; ; attempt++ {
		if r.now().Sub(it.env.ScrapeStart) > r.opts.MaxAge {
			r.dropAll(r.sched.finish(g, false), dropStale,
				fmt.Errorf("scrape of %s became older than max_age after %d failed push attempts", g.key, attempt-1))
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
			r.ack("", r.sched.finish(g, true))
			return
		}
		if !pushgateway.Retryable(err) {
			r.metrics.pushes.WithLabelValues(pushRejected).Inc()
			r.dropAll(r.sched.finish(g, false), dropRejected, fmt.Errorf("pushgateway refused the scrape of %s: %w", g.key, err))
			return
		}
		r.metrics.pushes.WithLabelValues(pushError).Inc()
		logged := false
		r.pushFailLog.Do(func() {
			logged = true
			r.log.Warn("push failed, retrying while the scrape is younger than max_age (further failures are logged at debug level for a minute)",
				"group", g.key, "err", err, "attempt", attempt)
		})
		if !logged {
			r.log.Debug("push failed, retrying", "group", g.key, "err", err, "attempt", attempt)
		}
		if r.sched.hasNewer(g) {
			r.ack(dropSuperseded, r.sched.finish(g, false))
			return
		}
		if !b.Wait(ctx) {
			r.sched.finish(g, false) // shutting down: redelivered later
			return
		}
	}
}

// prepare decompresses and converts the scrape into w.out and returns the
// content type to push it with.
func (w *worker) prepare(env *envelope.Envelope) (string, error) {
	r := w.r
	var err error
	w.body, err = env.Body(w.body[:0], int(r.opts.BodyLimit))
	if err != nil {
		return "", err
	}
	w.out.Reset()
	res, err := convert(env, w.body, w.r.groupLabels, &w.out)
	if err != nil {
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
const maxKeptBuffer = 4 << 20

// trim drops buffers a large scrape grew beyond maxKeptBuffer.
func (w *worker) trim() {
	if cap(w.body) > maxKeptBuffer {
		w.body = nil
	}
	if w.out.Cap() > maxKeptBuffer {
		w.out = bytes.Buffer{}
	}
}
