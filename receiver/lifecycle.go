package receiver

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// The Pushgateway never forgets a group. A target that disappears (removed
// from its poller's config, or its poller or whole DC silent) would keep
// its last values there, looking current, forever. So the receiver watches
// every group it pushed: after down_after without a new scrape it replaces
// the group with up 0 (the target is down, as Prometheus would show it, and
// its old series go stale), and after delete_after it deletes the group.

// lifecycle runs until ctx is done: it first learns the groups already in
// the Pushgateway, then periodically marks down, deletes and forgets.
func (r *Receiver) lifecycle(ctx context.Context) {
	r.seed(ctx)
	tick := time.NewTicker(min(r.opts.DownAfter/4, 30*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := r.now()
		var deleteBefore time.Time
		if r.opts.DeleteAfter > 0 {
			deleteBefore = now.Add(-r.opts.DeleteAfter)
		}
		r.sched.reap(now.Add(-r.opts.DownAfter), deleteBefore)
		r.sched.forget()
	}
}

// seed learns the groups this receiver (or its predecessor) pushed before a
// restart, recognised by the scrape_samples_scraped series only the
// receiver adds, so they are marked down and deleted in time too. It is
// best effort: with the Pushgateway unreachable, only groups pushed from
// now on are watched.
func (r *Receiver) seed(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, r.opts.PushTimeout)
	defer cancel()
	groups, err := r.push.Groups(sctx, metricSamples)
	if err != nil {
		r.log.Warn("cannot list the Pushgateway's groups; groups pushed before this start will not be marked down or deleted", "err", err)
		return
	}
	n := 0
	for _, g := range groups {
		key, ok := r.keyOf(g.Labels)
		if !ok {
			continue
		}
		r.sched.seed(key.Path(), key, g.PushTime)
		n++
	}
	r.log.Info("watching the groups found in the Pushgateway", "groups", n)
}

// keyOf turns a group's labels back into a grouping key of this receiver's
// shape (job, instance and, with publisher_label, the publisher label);
// groups of another shape are someone else's.
func (r *Receiver) keyOf(labels map[string]string) (pushgateway.GroupingKey, bool) {
	want := append([]string{"job"}, r.groupLabels[1:]...)
	if len(labels) != len(want) {
		return pushgateway.GroupingKey{}, false
	}
	for _, name := range want {
		if _, ok := labels[name]; !ok {
			return pushgateway.GroupingKey{}, false
		}
	}
	env := &envelope.Envelope{Job: labels["job"], Instance: labels["instance"]}
	if r.opts.PublisherLabel {
		env.Publisher = labels[r.opts.PublisherLabelName]
	}
	return r.groupingKey(env), true
}

// control carries out the receiver's own action on a silent group: one
// attempt; a failed one is tried again at the next lifecycle tick.
func (w *worker) control(ctx context.Context, g *group, it *item) {
	r := w.r
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.PushTimeout)
	defer cancel()
	var err error
	switch it.control {
	case controlMarkDown:
		w.out.Reset()
		if err = downBody(&w.out); err == nil {
			err = r.push.Push(pctx, g.key, string(pushFormat), w.out.Bytes())
		}
		if err == nil {
			r.metrics.markedDown.Inc()
			r.log.Info("no scrape of the group arrived for down_after; replaced it with up 0", "group", g.key, "down_after", r.opts.DownAfter)
		}
	case controlDelete:
		if err = r.push.Delete(pctx, g.key); err == nil {
			r.metrics.deleted.Inc()
			r.log.Info("no scrape of the group arrived for delete_after; deleted it", "group", g.key, "delete_after", r.opts.DeleteAfter)
		}
	}
	if err != nil {
		r.log.Warn("could not update a silent group; trying again later", "group", g.key, "err", err)
	}
	r.sched.finish(g, err == nil)
}

// downBody is a push body that says only that the target is down.
func downBody(out *bytes.Buffer) error {
	if err := expfmt.NewEncoder(out, pushFormat).Encode(gauge(metricUp, upHelp, 0)); err != nil {
		return fmt.Errorf("encode up 0: %w", err)
	}
	return nil
}
