package receiver

import (
	"context"

	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/stream"
)

// replaying returns the outputs of rt that take the replay at start.
func replaying(rt Route) []output.Output {
	var outs []output.Output
	for _, o := range rt.Outputs {
		if o.Replays() {
			outs = append(outs, o)
		}
	}
	return outs
}

// replay re-reads the last max_age of the stream for outs, beside the
// durable subscription, so an output that holds scrapes in memory has every
// group again within seconds of a start instead of after a scrape interval.
// The replayed messages are never acknowledged (the replay's subscription
// is not the durable one) and are checked like any other; what the durable
// then delivers again is superseded or replaces them, latest-wins.
//
// Each output that replays is told when the replay has ended (ReplayDone),
// also when it was cut short or the subscriber cannot replay.
func (r *Receiver) replay(ctx context.Context, rt Route) {
	outs := replaying(rt)
	if len(outs) == 0 {
		return
	}
	defer func() {
		for _, o := range outs {
			o.ReplayDone()
		}
	}()
	if snap, ok := rt.Sub.(stream.Snapshotter); ok {
		// The subscription starts with the stream's state (JetStream's
		// follower): it is the replay, through handle.
		select {
		case <-snap.Snapshotted():
			r.log.Info("the subscription delivered the stream's newest scrape of every group")
		case <-ctx.Done():
		}
		return
	}
	replayer, ok := rt.Sub.(stream.Replayer)
	if !ok {
		return
	}
	window := r.live.Load().MaxAge
	start := r.now()
	n := 0
	err := replayer.Replay(ctx, window, func(m stream.Message) {
		r.metrics.replayed.Inc()
		if r.stopping.Load() {
			return
		}
		env, reason, _ := r.accept(m.Data(), true)
		if reason != "" {
			return // dropped again, and counted, when the durable delivers it
		}
		n++
		for _, o := range outs {
			o.Offer(env, replayed{})
		}
	})
	if err != nil {
		r.log.Warn("replaying the stream's recent scrapes at start was cut short; the groups missing come back with their next scrape", "err", err, "offered", n)
		return
	}
	r.log.Info("replayed the stream's recent scrapes", "window", window, "offered", n, "took", r.now().Sub(start).Round(1e6))
}

// replayed is the Delivery of a replayed message: there is nothing to
// acknowledge.
type replayed struct{}

// Done implements output.Delivery.
func (replayed) Done(string, error) {}
