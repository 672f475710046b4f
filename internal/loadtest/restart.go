package loadtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/choria-io/prometheus-streams/output/serve"
)

// RestartResult is what the serving phase measured of a receiver restart
// after the window: the receiver killed, started again with the same
// configuration (so the same durable) while the feeder kept publishing,
// and the time until it served every group again. Times run from the new
// process's start.
type RestartResult struct {
	// SDReady is when /sd first answered 200 listing every group; Listed
	// is the most groups it listed (every group once it did; SDReady stays 0
	// when it did not within the limit).
	SDReady time.Duration
	Listed  int
	// AllServed is when the last group answered a scrape 200 with the
	// whole body. From SDReady on, the harness scrapes every group,
	// restartScrapers at a time, then again those that did not answer so,
	// until all have: Served counts the groups that did, Passes the
	// passes, Failed the other answers by reason. FirstPass is how long
	// the first pass over every group took, the harness's own pace, which
	// AllServed - SDReady cannot be below.
	AllServed      time.Duration
	Served, Passes int
	Failed         map[string]int
	FirstPass      time.Duration
	// Replayed is the new receiver's messages_replayed_total when /sd
	// first answered 200, which it does only once the replay has ended.
	Replayed float64
	// CPU is the new process's CPU from its start to SDReady: starting,
	// connecting, the replay, and beside it the durable delivering what
	// was published while no receiver ran and what the killed one had not
	// acknowledged.
	CPU     time.Duration
	PeakRSS int64 // the new receiver's VmHWM, at the end of the measurement
}

const (
	// restartScrapers is how many scrapes the harness has in flight after
	// a restart: half the receiver's default serve.max_concurrent_scrapes
	// (64), so that none is turned away as one too many.
	restartScrapers = 32
	// sdPoll is how often /sd is asked after a restart, the resolution of
	// SDReady.
	sdPoll = 20 * time.Millisecond
)

// restart starts the serving receiver again, after serve killed it, with
// its configuration cfg (monitor port port), and measures how soon it
// serves every group. A group that does not come back within the limit is
// a figure (Listed, Served), not an error.
func (b *bench) restart(ctx context.Context, cfg string, port int) (*RestartResult, error) {
	o := b.opts
	r := &RestartResult{Failed: map[string]int{}}
	// Ready once the monitor listens (/healthz), so that /sd is asked from
	// then on: /readyz (connected) can come after the replay at small N.
	recv, err := startDaemon(ctx, o.Executable, o.WorkDir, "receiver-serve-restart", "receiver", cfg, port, healthz)
	if err != nil {
		return nil, err
	}
	defer func() { r.PeakRSS = recv.stop() }()
	s := newScraper(recv.monitor+serve.SDPath, o.Interval, int64(len(o.Sample)))
	defer s.client.CloseIdleConnections()
	limit := 2*o.Interval + time.Minute
	deadline := recv.started.Add(limit)
	urls, err := b.awaitSD(ctx, s, recv, deadline, r)
	if err != nil {
		return nil, err
	}
	if urls == nil {
		b.progress("serve: restart: /sd did not list every group within %s of the start (%d of %d)", limit, r.Listed, o.Targets)
		return r, nil
	}
	b.progress("serve: restart: /sd lists every group %s after the start; scraping each until it answers", r.SDReady.Round(time.Millisecond))
	if err := b.scrapeAll(ctx, s, recv, urls, deadline, r); err != nil {
		return nil, err
	}
	if r.Served < len(urls) {
		b.progress("serve: restart: %d of %d groups answered a scrape within %s of the start", r.Served, len(urls), limit)
	}
	return r, nil
}

// awaitSD asks /sd every sdPoll until it answers 200 listing every group,
// and records when, with the CPU and the replayed messages at that moment.
// It returns the scrape URLs, or nil when the deadline passed first.
func (b *bench) awaitSD(ctx context.Context, s *scraper, recv *daemon, deadline time.Time, r *RestartResult) ([]string, error) {
	for {
		body, err := s.fetchSD(ctx)
		at := time.Since(recv.started)
		if err == nil {
			cpu, err := recv.cpu()
			if err != nil {
				return nil, err
			}
			urls, err := s.parseSD(body)
			if err != nil {
				return nil, err
			}
			r.Listed = max(r.Listed, len(urls))
			if len(urls) == b.opts.Targets {
				r.SDReady, r.CPU = at, seconds(cpu)
				fams, err := recv.families(ctx)
				if err != nil {
					return nil, err
				}
				r.Replayed, _ = sum(fams, "prometheus_streams_receiver_messages_replayed_total", nil)
				return urls, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-recv.done:
			return nil, fmt.Errorf("%s exited after its restart (%w); see %s", recv.name, recv.waitErr, recv.logPath)
		case <-time.After(sdPoll):
		}
	}
}

// scrapeAll scrapes every URL, then again those that did not answer 200
// with the whole body, until all have or the deadline passes.
func (b *bench) scrapeAll(ctx context.Context, s *scraper, recv *daemon, urls []string, deadline time.Time, r *RestartResult) error {
	pending := urls
	for {
		start := time.Now()
		var last time.Time
		pending, last = s.pass(ctx, pending, r.Failed)
		r.Passes++
		if r.Passes == 1 {
			r.FirstPass = time.Since(start)
		}
		r.Served = len(urls) - len(pending)
		if len(pending) == 0 {
			r.AllServed = last.Sub(recv.started)
			return nil
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pass scrapes each URL once, restartScrapers at a time, and returns those
// that did not answer 200 with the whole body (counting why in failed), and
// when the last of the others answered.
func (s *scraper) pass(ctx context.Context, urls []string, failed map[string]int) (pending []string, last time.Time) {
	var (
		mu      sync.Mutex
		workers sync.WaitGroup
	)
	next := make(chan string)
	for range min(restartScrapers, len(urls)) {
		workers.Go(func() {
			for u := range next {
				_, reason := s.scrapeOnce(ctx, u)
				now := time.Now()
				mu.Lock()
				if reason != "" {
					failed[reason]++
					pending = append(pending, u)
				} else if now.After(last) {
					last = now
				}
				mu.Unlock()
			}
		})
	}
	// Every URL is handed out even once ctx is done: its scrape then
	// fails at once, and it stays pending.
	for _, u := range urls {
		next <- u
	}
	close(next)
	workers.Wait()
	return pending, last
}
