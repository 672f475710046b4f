package push

import (
	"bytes"
	"context"
	"fmt"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/pushgateway"
)

// The Pushgateway never forgets a group. A target that disappears (removed
// from its poller's config, or its poller or whole DC silent) would keep
// its last values there, looking current, forever. So the receiver watches
// every group it pushed: after down_after without a new scrape it replaces
// the group with up 0 (the target is down, as Prometheus would show it, and
// its old series go stale), and after delete_after it deletes the group.

// lifecycle runs until ctx is done: it periodically marks down, deletes and
// forgets.
// The groups already in the Pushgateway were learnt by seedBook before it
// starts.
func (r *Output) lifecycle(ctx context.Context) {
	period := lifecyclePeriod(r.live.Load().DownAfter)
	tick := time.NewTicker(period)
	defer tick.Stop()
	deleting := r.live.Load().DeleteAfter > 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		live := r.live.Load()
		// Without delete_after the scheduler forgot the groups it marked
		// down; a reload that turns deleting on must find them again.
		if !deleting && live.DeleteAfter > 0 {
			deleting = r.learnGroups(ctx)
		} else if live.DeleteAfter == 0 {
			deleting = false
		}
		// A reload may have changed down_after; the period follows it
		// from the next tick, which is at most 30s away.
		if p := lifecyclePeriod(live.DownAfter); p != period {
			period = p
			tick.Reset(period)
		}
		now := r.now()
		var deleteBefore time.Time
		if live.DeleteAfter > 0 {
			deleteBefore = now.Add(-live.DeleteAfter)
		}
		downBefore := now.Add(-live.DownAfter)
		// A standby acts on no group, so it need not read the Pushgateway
		// to learn whether the active receiver pushed them.
		if r.turn.current() && r.sched.due(downBefore, deleteBefore) {
			// Before acting, learn whether someone else (another receiver
			// on the same Pushgateway) pushed these groups meanwhile.
			r.refresh(ctx)
			r.sched.reap(downBefore, deleteBefore)
		}
		r.sched.forget(live.DeleteAfter == 0)
	}
}

// lifecyclePeriod is how often the lifecycle looks for silent groups.
func lifecyclePeriod(downAfter time.Duration) time.Duration {
	return min(downAfter/4, 30*time.Second)
}

// groupsTimeout bounds listing the Pushgateway's groups, which reads its
// whole /metrics: longer than a push.
const groupsTimeout = time.Minute

// listedGroup is a group of the receiver's found in the Pushgateway, with
// its grouping key.
type listedGroup struct {
	pushgateway.Group
	key pushgateway.GroupingKey
}

// ours keys the groups found in the Pushgateway as the scheduler keys
// them, leaving out those of another shape: someone else's.
func (r *Output) ours(groups []pushgateway.Group) map[string]listedGroup {
	out := make(map[string]listedGroup, len(groups))
	for _, g := range groups {
		if key, ok := r.grouping.of(g.Labels); ok {
			out[key.Path()] = listedGroup{Group: g, key: key}
		}
	}
	return out
}

// listGroups returns the groups in the Pushgateway that carry the marker
// only the receiver adds, keyed as the scheduler keys them.
func (r *Output) listGroups(ctx context.Context) (map[string]listedGroup, error) {
	lctx, cancel := context.WithTimeout(ctx, groupsTimeout)
	defer cancel()
	groups, err := r.push.Groups(lctx, metricSamples, seedLimit)
	if err != nil {
		return nil, err
	}
	return r.ours(groups), nil
}

// refresh updates the push times of the groups from the Pushgateway.
func (r *Output) refresh(ctx context.Context) {
	groups, err := r.listGroups(ctx)
	if err != nil {
		r.log.Debug("cannot list the Pushgateway's groups before marking groups down", "err", err)
		return
	}
	for id, g := range groups {
		// A marker of 0 is a mark-down (ours or another receiver's) or a
		// failed scrape: not a sign that the target is alive.
		if g.Marker > 0 {
			r.sched.touch(id, g.PushTime)
		}
	}
}

// learnGroups has the scheduler watch every group of the receiver's in
// the Pushgateway, those it forgot once they were marked down included,
// and reports whether it could list them (if not, the next tick tries
// again).
func (r *Output) learnGroups(ctx context.Context) bool {
	groups, err := r.listGroups(ctx)
	if err != nil {
		r.log.Warn("cannot list the Pushgateway's groups to delete the silent ones after delete_after was set; trying again", "err", err)
		return false
	}
	r.log.Info("delete_after set: watching the groups found in the Pushgateway", "groups", r.watch(groups))
	return true
}

// watch has the scheduler watch groups of the receiver's (or its
// predecessor's) found in the Pushgateway, so that they are marked down
// and deleted in time even if no scrape of theirs arrives again, and
// returns how many.
func (r *Output) watch(groups map[string]listedGroup) int {
	for id, g := range groups {
		r.sched.seed(id, g.key, g.PushTime)
	}
	return len(groups)
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
		// The down body goes through the consistency check like a
		// scrape: the group then holds up and the marker alone.
		w.out.Reset()
		answered := true
		if err = downBody(&w.out, w.checkFor(g)); err == nil {
			err = r.push.Push(pctx, g.key, string(pushFormat), w.out.Bytes())
			answered = err == nil || notTaken(err)
		}
		w.finish(g, err == nil, answered)
		if err == nil {
			r.metrics.markedDown.Inc()
			r.log.Info("no scrape of the group arrived for down_after; replaced it with up 0", "group", g.key, "down_after", r.live.Load().DownAfter)
		}
	case controlDelete:
		if err = r.push.Delete(pctx, g.key); err == nil {
			r.book.forget(g.id) // before finish: the group's next push may start at once
			r.metrics.deleted.Inc()
			r.log.Info("no scrape of the group arrived for delete_after; deleted it", "group", g.key, "delete_after", r.live.Load().DeleteAfter)
		}
		r.sched.finish(g, err == nil)
	}
	if err == nil {
		return
	}
	if !pushgateway.Retryable(err) {
		// Refused for good (401, 403, 400...): retrying every tick would
		// change nothing. Stop watching; a new scrape starts it afresh.
		r.sched.remove(g)
	}
	r.logs.Log(logControlFailed, "could not update a silent group (further failures are logged at debug level for a minute)",
		"could not update a silent group", "group", g.key, "err", err)
}

// downBody is a push body that says only that the target is down, with
// scrape_samples_scraped 0 so the group still carries the marker a
// restarted receiver finds its groups by. check is as for convert.
func downBody(out *bytes.Buffer, check func([]*dto.MetricFamily) []*dto.MetricFamily) error {
	if err := encode([]*dto.MetricFamily{gauge(metricUp, upHelp, 0), gauge(metricSamples, samplesHelp, 0)}, check, out); err != nil {
		return fmt.Errorf("the down body: %w", err)
	}
	return nil
}
