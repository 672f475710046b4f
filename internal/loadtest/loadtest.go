// Package loadtest is the load harness behind `prometheus-streams bench`:
// the real pipeline on loopback (N simulated node exporters, an embedded
// NATS Streaming server and Pushgateway, the poller and the receiver as
// child processes of the same binary) measured side by side with the floor
// of a poller's work and with raw Pushgateway PUTs of the same bodies.
package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	stan "github.com/nats-io/stan.go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// Options configure Run. Zero values take the defaults in brackets.
type Options struct {
	// Executable is the prometheus-streams binary; its `poller`,
	// `receiver` and `bench floor` commands run as child processes.
	Executable string
	// Sample is the exposition every simulated target serves.
	Sample []byte
	// Targets is the number of simulated exporters [100]; PerPort how many
	// of them share a listener [10].
	Targets, PerPort int
	// Interval is the scrape interval [15s]; Window how long the steady
	// state is measured after every target was pushed once [4 intervals].
	Interval, Window time.Duration
	// Compression is the poller's codec: snappy [default] or zstd.
	Compression string
	// PushgatewayCheck leaves the Pushgateway's consistency check on (its
	// default); off is --push.disable-consistency-check.
	PushgatewayCheck bool
	// Concurrency is the receiver's push_gateway.concurrency and the
	// number of raw PUT clients [4].
	Concurrency int
	// Backlog is the number of messages the receiver drains, rounded up
	// to whole rounds over the targets [2000].
	Backlog int
	// FloorScrapes is the length of the floor's loop [2000].
	FloorScrapes int
	// PhaseTimeout bounds the raw PUTs and the drain [2m]: with the
	// Pushgateway's check on, neither finishes soon at a few hundred groups.
	PhaseTimeout time.Duration
	// PollerOnly skips the receiver and the backlog, to size a poller
	// alone at many targets.
	PollerOnly bool
	// ProfileDir, when set, receives CPU profiles of the poller and the
	// receiver over the window, and of the receiver over the drain.
	ProfileDir string
	// WorkDir holds configurations and daemon logs [a temporary directory,
	// removed at the end unless Run fails].
	WorkDir string
	// Progress receives a line per phase; nil discards them.
	Progress io.Writer
}

// Result is everything Run measured.
type Result struct {
	Options Options

	FloorCPUPerScrape time.Duration
	FloorBytes        float64 // per message

	PollerScrapes      int64
	PollerCPUPerScrape time.Duration
	PollerCores        float64 // CPU seconds per second over the window
	MessageBytes       float64 // mean of the poller's message_bytes
	PollerPeakRSS      int64
	// PollerHeap and PollerStacks are the Go heap and goroutine stacks in
	// use at the end of the window.
	PollerHeap, PollerStacks int64

	Pushes            int // during the window
	LatencyP50        time.Duration
	LatencyP99        time.Duration
	LatencyMax        time.Duration
	ReceiverCPUPerMsg time.Duration
	ReceiverPeakRSS   int64

	RawPUTs     int
	RawPUTRate  float64
	RawTimedOut bool
	// RawProtoPUTRate is the rate for the sample as delimited protobuf,
	// the form the receiver pushes.
	RawProtoPUTRate float64

	BacklogMessages int
	Drained         int // messages acknowledged
	DrainPushes     int
	DrainSeconds    float64
	DrainTimedOut   bool
	DrainStale      float64 // dropped as older than max_age
	DrainMaxLag     float64 // highest receiver_lag_seconds seen
	DrainPeakRSS    int64
	DrainCPUPerMsg  time.Duration
}

// Run measures the pipeline. It writes progress lines to opts.Progress and
// returns the figures; Report formats them.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts = withDefaults(opts)
	if opts.Executable == "" || len(opts.Sample) == 0 {
		return nil, errors.New("bench: needs the executable and a sample body")
	}
	progress := func(format string, args ...any) {
		_, _ = fmt.Fprintf(opts.Progress, "bench: "+format+"\n", args...)
	}
	keep := opts.WorkDir != ""
	if !keep {
		dir, err := os.MkdirTemp("", "prometheus-streams-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		opts.WorkDir = dir
	}
	b := &bench{opts: opts, progress: progress, res: &Result{Options: opts}}
	err := b.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: %w (logs in %s)", err, opts.WorkDir)
	}
	if !keep {
		_ = os.RemoveAll(opts.WorkDir)
	}
	return b.res, nil
}

func withDefaults(o Options) Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Targets, 100)
	def(&o.PerPort, 10)
	def(&o.Concurrency, 4)
	def(&o.Backlog, 2000)
	def(&o.FloorScrapes, 2000)
	if o.Interval <= 0 {
		o.Interval = 15 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 4 * o.Interval
	}
	if o.PhaseTimeout <= 0 {
		o.PhaseTimeout = 2 * time.Minute
	}
	if o.Compression == "" {
		o.Compression = "snappy"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// channel is the pipeline's; floorChannel the floor's own.
const (
	channel      = "bench"
	floorChannel = "bench.floor"
	job          = "node"
)

type bench struct {
	opts     Options
	progress func(string, ...any)
	res      *Result

	exp   *exporters
	nats  *embedded.Streaming
	pgw   *embedded.Pushgateway
	paths map[string]int // push path -> target

	recording atomic.Bool
	latMu     sync.Mutex
	latencies []time.Duration
	puts      atomic.Int64
	firstPut  atomic.Int64 // unix nanos
	lastPut   atomic.Int64
}

func (b *bench) run(ctx context.Context) error {
	o := b.opts
	var err error
	if b.exp, err = startExporters(o.Targets, o.PerPort, o.Sample); err != nil {
		return err
	}
	defer b.exp.close()
	b.paths = make(map[string]int, o.Targets)
	for i := range o.Targets {
		key := pushgateway.GroupingKey{Job: job, Labels: []pushgateway.Label{{Name: "instance", Value: instance(i)}}}
		b.paths[key.Path()] = i
	}
	if b.nats, err = embedded.StartStreaming(embedded.StreamingOptions{}); err != nil {
		return err
	}
	defer b.nats.Shutdown()
	b.pgw, err = embedded.StartPushgateway(embedded.PushgatewayOptions{
		DisableConsistencyCheck: !o.PushgatewayCheck,
		Middleware:              b.observe,
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = b.pgw.Close(cctx)
	}()
	b.progress("%d targets on %d listeners, NATS Streaming %s, Pushgateway %s (consistency check %s)",
		o.Targets, len(b.exp.servers), b.nats.URL(), b.pgw.URL(), onOff(o.PushgatewayCheck))

	if err := b.floor(ctx); err != nil {
		return err
	}
	if err := b.steady(ctx); err != nil {
		return err
	}
	if o.PollerOnly {
		return nil
	}
	if err := b.rawPUTs(ctx); err != nil {
		return err
	}
	return b.drain(ctx)
}

// observe times every push as it reaches the Pushgateway, against the
// moment its target last served a scrape.
func (b *bench) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			now := time.Now()
			if i, ok := b.paths[r.URL.EscapedPath()]; ok {
				b.puts.Add(1)
				b.firstPut.CompareAndSwap(0, now.UnixNano())
				b.lastPut.Store(now.UnixNano())
				if b.recording.Load() {
					lat := now.Sub(time.Unix(0, b.exp.lastServe[i].Load()))
					b.latMu.Lock()
					b.latencies = append(b.latencies, lat)
					b.latMu.Unlock()
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (b *bench) resetPuts() {
	b.puts.Store(0)
	b.firstPut.Store(0)
	b.lastPut.Store(0)
}

// floor runs the floor's loop in a child process.
func (b *bench) floor(ctx context.Context) error {
	o := b.opts
	b.progress("floor: %d scrapes of GET + snappy + synchronous publish in a loop", o.FloorScrapes)
	args := []string{
		"bench", "floor", "--nats", b.nats.URL(), "--cluster-id", b.nats.ClusterID(),
		"--channel", floorChannel, "--scrapes", strconv.Itoa(o.FloorScrapes),
	}
	for _, u := range b.exp.urls[:min(len(b.exp.urls), 64)] {
		args = append(args, "--url", u)
	}
	res, err := runFloorProcess(ctx, o.Executable, args)
	if err != nil {
		return err
	}
	b.res.FloorCPUPerScrape = seconds(res.CPUSeconds / float64(res.Scrapes))
	b.res.FloorBytes = float64(res.Bytes) / float64(res.Scrapes)
	return nil
}

// steady runs the poller (and the receiver) until every target was pushed
// once, then measures a window of steady state.
func (b *bench) steady(ctx context.Context) error {
	o := b.opts
	var recv *daemon
	if !o.PollerOnly {
		cfg, port, err := b.writeConfig("receiver-1")
		if err != nil {
			return err
		}
		if recv, err = startDaemon(ctx, o.Executable, o.WorkDir, "receiver-1", "receiver", cfg, port); err != nil {
			return err
		}
		defer func() {
			if recv != nil {
				recv.stop()
			}
		}()
	}
	cfg, port, err := b.writeConfig("poller")
	if err != nil {
		return err
	}
	poller, err := startDaemon(ctx, o.Executable, o.WorkDir, "poller", "poller", cfg, port)
	if err != nil {
		return err
	}
	defer func() {
		if poller != nil {
			poller.stop()
		}
	}()

	b.progress("warm-up: waiting until every target was scraped%s once (up to one interval, %s)", map[bool]string{true: "", false: " and pushed"}[o.PollerOnly], o.Interval)
	if err := b.waitAllSeen(ctx, recv == nil, 2*o.Interval+30*time.Second); err != nil {
		return err
	}

	b.progress("window: measuring %s of steady state", o.Window)
	var profiles sync.WaitGroup
	profErrs := make([]error, 2)
	if o.ProfileDir != "" {
		secs := int(o.Window / time.Second)
		profiles.Go(func() { profErrs[0] = poller.profile(ctx, secs, filepath.Join(o.ProfileDir, "poller.cpu.pprof")) })
		if recv != nil {
			profiles.Go(func() { profErrs[1] = recv.profile(ctx, secs, filepath.Join(o.ProfileDir, "receiver.cpu.pprof")) })
		}
	}
	pc0, err := poller.cpu()
	if err != nil {
		return err
	}
	var rc0 float64
	if recv != nil {
		if rc0, err = recv.cpu(); err != nil {
			return err
		}
	}
	s0 := b.exp.served.Load()
	b.recording.Store(true)
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Window):
	}
	b.recording.Store(false)
	elapsed := time.Since(start)
	pc1, err := poller.cpu()
	if err != nil {
		return err
	}
	scrapes := b.exp.served.Load() - s0
	if scrapes == 0 {
		return errors.New("the poller scraped nothing during the window")
	}
	b.res.PollerScrapes = scrapes
	b.res.PollerCPUPerScrape = seconds((pc1 - pc0) / float64(scrapes))
	b.res.PollerCores = (pc1 - pc0) / elapsed.Seconds()
	fams, err := poller.families(ctx)
	if err != nil {
		return err
	}
	b.res.MessageBytes, _ = mean(fams, "prometheus_streams_poller_message_bytes")
	heap, _ := sum(fams, "go_memstats_heap_inuse_bytes", nil)
	stacks, _ := sum(fams, "go_memstats_stack_inuse_bytes", nil)
	b.res.PollerHeap, b.res.PollerStacks = int64(heap), int64(stacks)

	b.latMu.Lock()
	lat := slices.Clone(b.latencies)
	b.latMu.Unlock()
	if recv != nil {
		rc1, err := recv.cpu()
		if err != nil {
			return err
		}
		if len(lat) == 0 {
			return errors.New("the receiver pushed nothing during the window")
		}
		b.res.ReceiverCPUPerMsg = seconds((rc1 - rc0) / float64(len(lat)))
		slices.Sort(lat)
		b.res.Pushes = len(lat)
		b.res.LatencyP50 = quantile(lat, 0.50)
		b.res.LatencyP99 = quantile(lat, 0.99)
		b.res.LatencyMax = lat[len(lat)-1]
	}
	profiles.Wait()
	if o.ProfileDir != "" {
		if err := poller.save(ctx, "/debug/pprof/heap", filepath.Join(o.ProfileDir, "poller.heap.pprof")); err != nil {
			return err
		}
	}
	b.res.PollerPeakRSS = poller.stop()
	poller = nil
	if recv != nil {
		b.res.ReceiverPeakRSS = recv.stop()
		recv = nil
	}
	return errors.Join(profErrs...)
}

// waitAllSeen waits until every target was served (and, unless
// scrapedOnly, pushed) at least once.
func (b *bench) waitAllSeen(ctx context.Context, scrapedOnly bool, limit time.Duration) error {
	pushed := make([]bool, b.opts.Targets)
	b.recording.Store(true)
	defer func() {
		b.recording.Store(false)
		b.latMu.Lock()
		b.latencies = b.latencies[:0]
		b.latMu.Unlock()
	}()
	deadline := time.Now().Add(limit)
	for {
		all := true
		for i := range b.exp.lastServe {
			if b.exp.lastServe[i].Load() == 0 {
				all = false
				break
			}
		}
		if all && !scrapedOnly {
			b.latMu.Lock()
			n := len(b.latencies)
			b.latMu.Unlock()
			// Latencies are only counted, not attributed: every target
			// pushed once means as many pushes as targets, at least.
			all = n >= len(pushed)
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: not every target was seen within %s: %w", limit, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rawPUTs pushes the scrape bodies straight to the Pushgateway, as fast as
// Concurrency clients can, into the same groups.
func (b *bench) rawPUTs(ctx context.Context) error {
	rate, n, timedOut, err := b.putAll(ctx, "the sample body", b.opts.Sample, "text/plain; version=0.0.4")
	if err != nil {
		return err
	}
	b.res.RawPUTs, b.res.RawPUTRate, b.res.RawTimedOut = n, rate, timedOut
	// The same scrape as the receiver pushes it (delimited protobuf), to
	// show what the Pushgateway alone can take of the receiver's format.
	pb, err := protobufBody(b.opts.Sample)
	if err != nil {
		return err
	}
	b.res.RawProtoPUTRate, _, _, err = b.putAll(ctx, "its protobuf form", pb, protobufContentType)
	return err
}

// putAll PUTs body into the groups, Backlog times in all from Concurrency
// clients, and returns the rate, how many were done and whether
// PhaseTimeout cut it short.
func (b *bench) putAll(ctx context.Context, what string, body []byte, contentType string) (float64, int, bool, error) {
	o := b.opts
	total := b.backlogRounds() * o.Targets
	b.progress("raw PUTs: %d PUTs of %s from %d clients", total, what, o.Concurrency)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency}, Timeout: time.Minute}
	pctx, cancel := context.WithTimeout(ctx, o.PhaseTimeout)
	defer cancel()
	var next atomic.Int64
	var done atomic.Int64
	errs := make([]error, o.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.Concurrency {
		wg.Go(func() {
			for {
				n := next.Add(1) - 1
				if n >= int64(total) || pctx.Err() != nil {
					return
				}
				key := pushgateway.GroupingKey{Job: job, Labels: []pushgateway.Label{{Name: "instance", Value: instance(int(n) % o.Targets)}}}
				if err := put(pctx, client, b.pgw.URL()+key.Path(), body, contentType); err != nil {
					if pctx.Err() == nil {
						errs[w] = err
					}
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, false, fmt.Errorf("raw PUTs: %w", err)
	}
	n := int(done.Load())
	return float64(n) / elapsed.Seconds(), n, n < total, nil
}

func put(ctx context.Context, c *http.Client, url string, body []byte, contentType string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	discard(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: HTTP %s", url, resp.Status)
	}
	return nil
}

func (b *bench) backlogRounds() int {
	return (b.opts.Backlog + b.opts.Targets - 1) / b.opts.Targets
}

// drain publishes a backlog while no receiver runs, then starts one and
// times it through the backlog.
func (b *bench) drain(ctx context.Context) error {
	o := b.opts
	rounds := b.backlogRounds()
	total := rounds * o.Targets
	b.progress("backlog: publishing %d messages (%d rounds over %d targets) with no receiver running", total, rounds, o.Targets)
	if err := b.publishBacklog(ctx, rounds); err != nil {
		return err
	}
	b.res.BacklogMessages = total
	b.resetPuts()
	cfg, port, err := b.writeConfig("receiver-2")
	if err != nil {
		return err
	}
	start := time.Now()
	recv, err := startDaemon(ctx, o.Executable, o.WorkDir, "receiver-2", "receiver", cfg, port)
	if err != nil {
		return err
	}
	defer func() {
		if recv != nil {
			recv.stop()
		}
	}()
	b.progress("drain: a receiver started %s after the backlog was published", time.Since(start).Round(time.Millisecond))
	var profiled sync.WaitGroup
	var profErr error
	if o.ProfileDir != "" {
		secs := max(1, int(math.Ceil(float64(total)/max(b.res.RawPUTRate, 1))))
		profiled.Go(func() { profErr = recv.profile(ctx, secs, filepath.Join(o.ProfileDir, "receiver-drain.cpu.pprof")) })
	}
	c0, err := recv.cpu()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.PhaseTimeout)
	for {
		fams, err := recv.families(ctx)
		if err != nil {
			return err
		}
		acked, _ := sum(fams, "prometheus_streams_receiver_messages_acked_total", nil)
		if lag, ok := sum(fams, "prometheus_streams_receiver_lag_seconds", nil); ok {
			b.res.DrainMaxLag = max(b.res.DrainMaxLag, lag)
		}
		b.res.DrainStale, _ = sum(fams, "prometheus_streams_receiver_messages_dropped_total", map[string]string{"reason": "stale"})
		b.res.Drained = int(acked)
		if int(acked) >= total {
			break
		}
		if time.Now().After(deadline) {
			b.res.DrainTimedOut = true
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	c1, err := recv.cpu()
	if err != nil {
		return err
	}
	first, last := b.firstPut.Load(), b.lastPut.Load()
	b.res.DrainPushes = int(b.puts.Load())
	if b.res.DrainTimedOut {
		last = time.Now().UnixNano()
	}
	b.res.DrainSeconds = time.Duration(last - first).Seconds()
	if b.res.Drained > 0 {
		b.res.DrainCPUPerMsg = seconds((c1 - c0) / float64(b.res.Drained))
	}
	profiled.Wait()
	if o.ProfileDir != "" {
		if err := recv.save(ctx, "/debug/pprof/heap", filepath.Join(o.ProfileDir, "receiver-drain.heap.pprof")); err != nil {
			return err
		}
	}
	b.res.DrainPeakRSS = recv.stop()
	recv = nil
	return profErr
}

// publishBacklog publishes rounds scrapes of every target, newest last,
// encoded as the poller encodes them.
func (b *bench) publishBacklog(ctx context.Context, rounds int) error {
	o := b.opts
	codec := envelope.CodecSnappy
	var payload []byte
	if o.Compression == "zstd" {
		enc, err := envelope.NewZstdEncoder()
		if err != nil {
			return err
		}
		codec, payload = envelope.CodecZstd, enc.Compress(nil, o.Sample)
	} else {
		payload = envelope.Compress(nil, o.Sample)
	}
	sc, err := stan.Connect(b.nats.ClusterID(), "bench-backlog", stan.NatsURL(b.nats.URL()), stan.MaxPubAcksInflight(1024))
	if err != nil {
		return fmt.Errorf("backlog: connect: %w", err)
	}
	defer func() { _ = sc.Close() }()
	base := time.Now()
	acks := make(chan error, rounds*o.Targets)
	for r := range rounds {
		for i := range o.Targets {
			env := envelope.Envelope{
				Job: job, Instance: instance(i), Publisher: "bench",
				ScrapeStart:    base.Add(time.Duration(r) * time.Millisecond),
				ScrapeDuration: time.Millisecond,
				Outcome:        envelope.OutcomeSuccess,
				ContentType:    "text/plain; version=0.0.4; charset=utf-8",
				Codec:          codec,
				Payload:        payload,
			}
			msg, err := envelope.Append(nil, &env)
			if err != nil {
				return fmt.Errorf("backlog: %w", err)
			}
			if _, err := sc.PublishAsync(channel, msg, func(_ string, err error) { acks <- err }); err != nil {
				return fmt.Errorf("backlog: publish: %w", err)
			}
		}
	}
	for range rounds * o.Targets {
		select {
		case err := <-acks:
			if err != nil {
				return fmt.Errorf("backlog: publish: %w", err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// writeConfig writes a configuration in the 1.0 layout for one daemon and
// returns its path and monitor port.
func (b *bench) writeConfig(name string) (string, int, error) {
	o := b.opts
	port, err := freePort()
	if err != nil {
		return "", 0, err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "identity: bench\nscrape_interval: %s\nmonitor_port: %d\nmonitor_listen: 127.0.0.1\ncompression: %s\n",
		o.Interval, port, o.Compression)
	if o.ProfileDir != "" {
		s.WriteString("monitor_pprof: true\n")
	}
	// Both receivers use one client ID, so the second resumes the first's
	// durable subscription and finds the backlog waiting.
	for _, role := range []string{"poller", "receiver"} {
		fmt.Fprintf(&s, "%s_stream:\n  cluster_id: %s\n  urls: %s\n  topic: %s\n  client_id: bench_%s\n",
			role, b.nats.ClusterID(), b.nats.URL(), channel, role)
	}
	fmt.Fprintf(&s, "push_gateway:\n  url: %s\n  concurrency: %d\njobs:\n  %s:\n    targets:\n", b.pgw.URL(), o.Concurrency, job)
	for i, u := range b.exp.urls {
		fmt.Fprintf(&s, "      - {name: %s, url: %q}\n", instance(i), u)
	}
	path := filepath.Join(o.WorkDir, name+".yaml")
	return path, port, os.WriteFile(path, []byte(s.String()), 0o600)
}

const protobufContentType = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

// protobufBody converts a text exposition to delimited protobuf.
func protobufBody(text []byte) ([]byte, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	var out bytes.Buffer
	enc := expfmt.NewEncoder(&out, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, name := range slices.Sorted(maps.Keys(fams)) {
		if err := enc.Encode(fams[name]); err != nil {
			return nil, fmt.Errorf("sample: %w", err)
		}
	}
	return out.Bytes(), nil
}

func instance(i int) string { return fmt.Sprintf("t%05d", i) }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
