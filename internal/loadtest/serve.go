package loadtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	stan "github.com/nats-io/stan.go"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/output/serve"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// ServeResult is what the serving phase measured: a receiver with
// serve_targets holding Options.Targets groups, scraped by the harness (and by a
// real Prometheus when asked), next to the Pushgateway's GET /metrics
// holding the same groups.
type ServeResult struct {
	// Holding alone: the receiver consuming and holding one scrape of
	// every group per interval, before anything scrapes it.
	HoldMessages  int
	HoldCPUPerMsg time.Duration
	HoldCores     float64

	// The window: the harness's scraper, one scrape of every group per
	// interval. Latency runs from the request to the body's last byte,
	// over the scrapes answered 200 with the whole body (Scrapes);
	// Failed counts the others by reason.
	Scrapes                            int
	Failed                             map[string]int
	LatencyP50, LatencyP99, LatencyMax time.Duration
	// CPUPerScrape is all the receiver's CPU over the window (holding
	// the fed scrapes included) divided by Scrapes; ServingCPUPerScrape
	// is the same less the holding cost measured before.
	CPUPerScrape, ServingCPUPerScrape time.Duration
	Cores                             float64
	SDFetches                         int
	SDMax                             time.Duration
	SDBytes                           int
	HeldBytes                         float64 // the receiver's serve_held_bytes
	PeakRSS                           int64   // the receiver's VmHWM, the whole phase until the restart

	Restart *RestartResult // the receiver killed after the window and started again

	// The Pushgateway holding the same groups: one PUT of the sample each,
	// then GET /metrics as Prometheus asks for it, timed to the last byte.
	PGWPUTRate  float64
	PGWGets     []time.Duration // sorted; only GETs that saw every group
	PGWBytes    int64           // inflated
	PGWTimedOut bool            // a GET took longer than PhaseTimeout

	Prometheus *PrometheusResult // with Options.Prometheus
}

const (
	// serveChannel is the serving phase's own channel, so its receiver
	// starts clean, whatever the earlier phases left in theirs.
	serveChannel = "bench.serve"
	publisher    = "bench"
	// pgwGets is how many times the Pushgateway's /metrics is timed.
	pgwGets = 3
)

// serve runs the serving phase. The groups are fed by the harness, which
// publishes one envelope of the sample per group per interval straight to
// the channel, each group at a stable offset as pollers spread their
// targets. That is byte for byte what a poller publishes (the same
// envelope package and compression), and it is what a central receiver
// sees of remote DCs. A poller over simulated exporters would add its own
// work (0.45 cores at 10,000 targets, see the poller phase), and that of
// the exporters, on the two cores this phase measures the receiver and the
// scraper on, while in production it runs in the DCs.
func (b *bench) serve(ctx context.Context) error {
	o := b.opts
	res := &ServeResult{}
	b.res.Serve = res
	cfg, port, err := b.writeServeConfig("receiver-serve")
	if err != nil {
		return err
	}
	recv, err := startDaemon(ctx, o.Executable, o.WorkDir, "receiver-serve", "receiver", cfg, port, readyz)
	if err != nil {
		return err
	}
	defer func() {
		if recv != nil {
			recv.stop()
		}
	}()
	fctx, stopFeed := context.WithCancel(ctx)
	feedErr := make(chan error, 1)
	go func() { feedErr <- b.feed(fctx) }()
	defer func() {
		stopFeed()
		// A failure during the phase is reported where it happens; what
		// ends the feeder here is its context.
		if err := <-feedErr; err != nil && !errors.Is(err, context.Canceled) {
			b.progress("serve: feeder: %v", err)
		}
	}()

	b.progress("serve: feeding %d groups, one scrape each per %s, to a receiver with serve_targets", o.Targets, o.Interval)
	if err := b.waitHeld(ctx, recv, feedErr); err != nil {
		return err
	}
	if err := b.measureHold(ctx, recv, res); err != nil {
		return err
	}
	if err := b.measureScrapes(ctx, recv, res); err != nil {
		return err
	}
	if err := b.pushgatewayMetrics(ctx, res); err != nil {
		return err
	}
	if o.Prometheus != "" {
		if res.Prometheus, err = b.prometheus(ctx, recv, res.HoldCores); err != nil {
			return err
		}
	}
	if o.ProfileDir != "" {
		if err := recv.save(ctx, "/debug/pprof/heap", filepath.Join(o.ProfileDir, "receiver-serve.heap.pprof")); err != nil {
			return err
		}
	}
	// The restart comes last, so that the figures above are all of one
	// receiver's life. SIGKILL, as a crash: that is what the replay at
	// start is for, and the harder case, as nothing is closed in order.
	// NATS Streaming still holds the old client when the new one connects
	// with the same client id, and the durable delivers again what the
	// old one had not acknowledged. SIGTERM would also have the
	// receiver's own shutdown in the measurement.
	b.progress("serve: restart: killing the receiver (SIGKILL) and starting it again with the same durable, the feeder publishing on")
	res.PeakRSS = recv.kill()
	recv = nil
	if res.Restart, err = b.restart(ctx, cfg, port); err != nil {
		return err
	}
	select {
	case err := <-feedErr:
		feedErr <- err // for the deferred receive
		return fmt.Errorf("feed: %w", err)
	default:
	}
	return nil
}

// feed publishes one scrape of every group per interval until ctx ends:
// group i at i/N of the interval, stamped with the moment it is due.
func (b *bench) feed(ctx context.Context) error {
	o := b.opts
	codec, payload, err := b.payload()
	if err != nil {
		return err
	}
	sc, err := stan.Connect(b.nats.ClusterID(), "bench-serve-feed", stan.NatsURL(b.nats.URL()), stan.MaxPubAcksInflight(4096))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = sc.Close() }()
	var (
		ackMu  sync.Mutex
		ackErr error
	)
	onAck := func(_ string, err error) {
		if err != nil && ctx.Err() == nil {
			ackMu.Lock()
			ackErr = cmp.Or(ackErr, err)
			ackMu.Unlock()
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var msg []byte
	start := time.Now()
	for round := 0; ; round++ {
		for i := range o.Targets {
			due := start.Add(time.Duration(round)*o.Interval + time.Duration(i)*o.Interval/time.Duration(o.Targets))
			if d := time.Until(due); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			} else if ctx.Err() != nil {
				return nil
			}
			env := envelope.Envelope{
				Job: job, Instance: instance(i), Publisher: publisher,
				ScrapeStart: due, ScrapeDuration: 5 * time.Millisecond,
				Outcome: envelope.OutcomeSuccess, ContentType: exporterContentType,
				Codec: codec, Payload: payload,
			}
			if msg, err = envelope.Append(msg[:0], &env); err != nil {
				return err
			}
			// PublishAsync marshals msg into a message of its own before
			// it returns, so the buffer is reused.
			if _, err := sc.PublishAsync(serveChannel, msg, onAck); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("publish: %w", err)
			}
		}
		ackMu.Lock()
		err := ackErr
		ackMu.Unlock()
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
}

// waitHeld waits until the receiver holds every group.
func (b *bench) waitHeld(ctx context.Context, recv *daemon, feedErr chan error) error {
	limit := 2*b.opts.Interval + 30*time.Second
	deadline := time.Now().Add(limit)
	for {
		fams, err := recv.families(ctx)
		if err != nil {
			return err
		}
		if n, _ := sum(fams, "prometheus_streams_serve_groups", map[string]string{"state": "ok"}); int(n) >= b.opts.Targets {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("serve: the receiver did not hold every group within %s: %w", limit, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-feedErr:
			feedErr <- err
			return fmt.Errorf("feed: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// measureHold measures the receiver over one interval of holding alone.
func (b *bench) measureHold(ctx context.Context, recv *daemon, res *ServeResult) error {
	o := b.opts
	b.progress("serve: measuring %s of the receiver holding alone", o.Interval)
	offers := func() (float64, error) {
		fams, err := recv.families(ctx)
		if err != nil {
			return 0, err
		}
		n, _ := sum(fams, "prometheus_streams_serve_offers_total", nil)
		return n, nil
	}
	n0, err := offers()
	if err != nil {
		return err
	}
	c0, err := recv.cpu()
	if err != nil {
		return err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Interval):
	}
	c1, err := recv.cpu()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	n1, err := offers()
	if err != nil {
		return err
	}
	res.HoldMessages = int(n1 - n0)
	if res.HoldMessages <= 0 {
		return errors.New("serve: the receiver was offered nothing while holding")
	}
	res.HoldCPUPerMsg = seconds((c1 - c0) / float64(res.HoldMessages))
	res.HoldCores = (c1 - c0) / elapsed.Seconds()
	return nil
}

// measureScrapes runs the harness's scraper against the receiver: one
// interval for every loop to start, then the window.
func (b *bench) measureScrapes(ctx context.Context, recv *daemon, res *ServeResult) error {
	o := b.opts
	s := newScraper(recv.monitor+serve.SDPath, o.Interval, int64(len(o.Sample)))
	urls, err := b.waitTargets(ctx, s)
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	var scraping sync.WaitGroup
	scraping.Go(func() { s.run(sctx, urls) })
	defer func() {
		stop()
		scraping.Wait()
	}()
	b.progress("serve: scraping %d targets from /sd once per %s; the window starts after one interval", len(urls), o.Interval)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Interval):
	}
	var profiled sync.WaitGroup
	var profErr error
	if o.ProfileDir != "" {
		profiled.Go(func() {
			profErr = recv.profile(ctx, max(1, int(o.Window/time.Second)), filepath.Join(o.ProfileDir, "receiver-serve.cpu.pprof"))
		})
	}
	b.progress("serve: window: measuring %s of scrapes", o.Window)
	c0, err := recv.cpu()
	if err != nil {
		return err
	}
	s.recording.Store(true)
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Window):
	}
	s.recording.Store(false)
	c1, err := recv.cpu()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	stop()
	scraping.Wait()
	profiled.Wait()
	if profErr != nil {
		return profErr
	}

	lat, failed, sd, sdBytes, sdErr := s.results()
	if sdErr != nil {
		return sdErr
	}
	if len(lat) == 0 {
		return fmt.Errorf("serve: no scrape succeeded in the window (failures %v)", failed)
	}
	res.Scrapes, res.Failed = len(lat), failed
	res.LatencyP50, res.LatencyP99, res.LatencyMax = quantile(lat, 0.50), quantile(lat, 0.99), lat[len(lat)-1]
	cpu := c1 - c0
	res.CPUPerScrape = seconds(cpu / float64(len(lat)))
	res.ServingCPUPerScrape = seconds(max(0, cpu-res.HoldCores*elapsed.Seconds()) / float64(len(lat)))
	res.Cores = cpu / elapsed.Seconds()
	res.SDFetches, res.SDBytes = len(sd), sdBytes
	if len(sd) > 0 {
		res.SDMax = sd[len(sd)-1]
	}
	fams, err := recv.families(ctx)
	if err != nil {
		return err
	}
	res.HeldBytes, _ = sum(fams, "prometheus_streams_serve_held_bytes", nil)
	return nil
}

// waitTargets reads the targets from /sd until it lists every group: it
// answers 503 until the receiver's replay at start has ended, and
// Prometheus too keeps asking.
func (b *bench) waitTargets(ctx context.Context, s *scraper) ([]string, error) {
	limit := b.opts.Interval + 30*time.Second
	deadline := time.Now().Add(limit)
	for {
		urls, err := s.targets(ctx)
		if err == nil && len(urls) == b.opts.Targets {
			return urls, nil
		}
		if err == nil {
			err = fmt.Errorf("/sd lists %d targets, want %d", len(urls), b.opts.Targets)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("serve: %w after %s", err, limit)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pushgatewayMetrics PUTs the sample once into each group of the
// Pushgateway and times its GET /metrics, as Prometheus asks for it.
func (b *bench) pushgatewayMetrics(ctx context.Context, res *ServeResult) error {
	o := b.opts
	rate, n, timedOut, err := b.putAll(ctx, "the sample (one per group)", o.Sample, textContentType, o.Targets)
	if err != nil {
		return err
	}
	if timedOut {
		return fmt.Errorf("serve: %d of %d PUTs to the Pushgateway within %s", n, o.Targets, o.PhaseTimeout)
	}
	res.PGWPUTRate = rate
	client := newPromClient()
	defer client.CloseIdleConnections()
	// The Pushgateway answers a PUT (check off) before its store applies
	// it, so a GET may come before the last few writes: a GET that did not
	// see every group is repeated, not counted.
	for attempt := 0; len(res.PGWGets) < pgwGets && attempt < 2*pgwGets; attempt++ {
		b.progress("serve: GET /metrics of the Pushgateway holding %d groups", o.Targets)
		groups := &patternCounter{pattern: []byte("\n" + pushgateway.PushTimeMetric + "{")}
		gctx, cancel := context.WithTimeout(ctx, o.PhaseTimeout)
		start := time.Now()
		bytes, reason := fetchTo(gctx, client, scrapeTimeout(o.Interval), b.pgw.URL()+"/metrics", groups)
		took := time.Since(start)
		cancel()
		switch {
		case reason == "timeout":
			res.PGWTimedOut = true
			return nil
		case reason != "":
			return fmt.Errorf("serve: GET %s/metrics: %s", b.pgw.URL(), reason)
		case groups.n < o.Targets:
			continue
		}
		res.PGWGets, res.PGWBytes = append(res.PGWGets, took), bytes
	}
	if len(res.PGWGets) == 0 {
		return errors.New("serve: no GET /metrics of the Pushgateway saw every group")
	}
	slices.Sort(res.PGWGets)
	return nil
}

// writeServeConfig writes the serving receiver's configuration: the
// serving output alone (no push_gateway), on its own channel and durable.
func (b *bench) writeServeConfig(name string) (string, int, error) {
	o := b.opts
	port, err := freePort()
	if err != nil {
		return "", 0, err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "identity: bench\nscrape_interval: %s\nmonitor_port: %d\nmonitor_listen: 127.0.0.1\n", o.Interval, port)
	if o.ProfileDir != "" {
		s.WriteString("monitor_pprof: true\n")
	}
	fmt.Fprintf(&s, "receiver_stream:\n  cluster_id: %s\n  urls: %s\n  topic: %s\n  client_id: bench_serve_receiver\nserve_targets: true\n",
		b.nats.ClusterID(), b.nats.URL(), serveChannel)
	path := filepath.Join(o.WorkDir, name+".yaml")
	return path, port, os.WriteFile(path, []byte(s.String()), 0o600)
}
