// Package loadtest is the load harness behind `prometheus-streams bench`:
// the real pipeline on loopback (N simulated node exporters, an embedded
// NATS Streaming server and/or JetStream server and a Pushgateway, the
// poller and the receiver as child processes of the same binary) measured
// side by side with the floor of a poller's work and with raw Pushgateway
// PUTs of the same bodies, once per transport, and, for the serving output,
// a receiver answering a Prometheus-like scraper.
package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/freeport"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// Options configure Run. Zero values take the defaults in brackets.
type Options struct {
	// Executable is the prometheus-streams binary; its `poller`,
	// `receiver` and `bench floor` commands run as child processes.
	Executable string
	// Sample is the exposition every simulated target serves.
	Sample []byte
	// Targets is the number of simulated exporters, and of groups in the
	// serving phase [100]; PerPort how many exporters share a listener
	// [10].
	Targets, PerPort int
	// Interval is the scrape interval [15s]; Window how long the steady
	// state is measured after every target was pushed once [4 intervals].
	Interval, Window time.Duration
	// Transports are the transports the poller, delivery and drain phases
	// run on, in order: TransportSTAN and/or TransportJetStream [both].
	// The floor, the raw PUTs and the serving phase run once, on NATS
	// Streaming, whatever the transports.
	Transports []string
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
	// Serve adds the serving phase: Targets groups held by a receiver
	// with serve_targets, scraped through /sd as Prometheus would, beside
	// the Pushgateway's GET /metrics holding the same groups. ServeOnly
	// runs that phase alone (no exporters, floor, poller or backlog).
	Serve, ServeOnly bool
	// Prometheus, when set, is a Prometheus binary that the serving
	// phase also runs against the receiver's /sd and the Pushgateway
	// (implies Serve).
	Prometheus string
	// ProfileDir, when set, receives CPU profiles of the poller and the
	// receiver over the window, and of the receiver over the drain.
	ProfileDir string
	// WorkDir holds configurations and daemon logs [a temporary directory,
	// removed at the end unless Run fails].
	WorkDir string
	// Progress receives a line per phase; nil discards them.
	Progress io.Writer
}

// The transports Options.Transports names.
const (
	TransportSTAN      = "stan"      // NATS Streaming, stream sections with cluster_id
	TransportJetStream = "jetstream" // JetStream, stream sections with stream: PROMETHEUS
)

// Result is everything Run measured.
type Result struct {
	Options Options

	FloorCPUPerScrape time.Duration
	FloorBytes        float64 // per message

	RawPUTs     int
	RawPUTRate  float64
	RawTimedOut bool
	// RawProtoPUTRate is the rate for the sample as delimited protobuf,
	// the form the receiver pushes.
	RawProtoPUTRate float64

	// Transports holds the poller, delivery and drain phases of each
	// transport, in the order of Options.Transports.
	Transports []*TransportResult

	Serve *ServeResult // the serving phase (on NATS Streaming), when it ran
}

// TransportResult is what the poller, delivery and drain phases measured
// on one transport.
type TransportResult struct {
	Transport string

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

	// BacklogMessages is the backlog: on NATS Streaming rounds over the
	// targets' groups, on JetStream (one message per subject) as many
	// groups of their own.
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
	if opts.PollerOnly && opts.ServeOnly {
		return nil, errors.New("bench: poller-only and serve-only exclude each other")
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
	if len(o.Transports) == 0 {
		o.Transports = []string{TransportSTAN, TransportJetStream}
	}
	if o.Compression == "" {
		o.Compression = "snappy"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ServeOnly || o.Prometheus != "" {
		o.Serve = true
	}
	return o
}

// channel is the pipeline's (on JetStream the subject prefix, in
// jsStream); floorChannel the floor's own.
const (
	channel      = "bench"
	floorChannel = "bench.floor"
	jsStream     = "PROMETHEUS"
	job          = "node"
)

type bench struct {
	opts     Options
	progress func(string, ...any)
	res      *Result

	exp   *exporters
	nats  *embedded.Streaming
	js    *embedded.NATS // when JetStream is among the transports
	pgw   *embedded.Pushgateway
	paths map[string]int // push path -> target (or JetStream backlog group)

	// transport is the one the running phase uses, tr its figures, and
	// first whether it is the first of Options.Transports.
	transport string
	tr        *TransportResult
	first     bool

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
	// On JetStream the backlog is as many groups as messages.
	groups := o.Targets
	if slices.Contains(o.Transports, TransportJetStream) && !o.PollerOnly {
		groups = max(groups, b.backlogRounds()*o.Targets)
	}
	b.paths = make(map[string]int, groups)
	for i := range groups {
		key := pushgateway.GroupingKey{Job: job, Labels: []pushgateway.Label{{Name: "instance", Value: instance(i)}}}
		b.paths[key.Path()] = i
	}
	if b.nats, err = embedded.StartStreaming(embedded.StreamingOptions{}); err != nil {
		return err
	}
	defer b.nats.Shutdown()
	if slices.Contains(o.Transports, TransportJetStream) && !o.ServeOnly {
		// A temporary file store, removed by Shutdown.
		if b.js, err = embedded.StartNATS(embedded.NATSOptions{}); err != nil {
			return err
		}
		defer b.js.Shutdown()
		b.progress("JetStream %s (file store in a temporary directory)", b.js.URL())
	}
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
	b.progress("NATS Streaming %s, Pushgateway %s (consistency check %s)", b.nats.URL(), b.pgw.URL(), onOff(o.PushgatewayCheck))
	if !o.ServeOnly {
		if err := b.pipeline(ctx); err != nil {
			return err
		}
	}
	if o.Serve {
		return b.serve(ctx)
	}
	return nil
}

// pipeline runs the poller's phases and, unless PollerOnly, the
// receiver's Pushgateway phases, over simulated exporters, once per
// transport. The floor and the raw PUTs run once, with the first.
func (b *bench) pipeline(ctx context.Context) error {
	for k, t := range b.opts.Transports {
		b.transport, b.first = t, k == 0
		b.tr = &TransportResult{Transport: t}
		b.res.Transports = append(b.res.Transports, b.tr)
		if err := b.pipelineOn(ctx); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	return nil
}

// pipelineOn runs the pipeline's phases on b.transport, with exporters of
// their own (so every target starts unseen).
func (b *bench) pipelineOn(ctx context.Context) error {
	o := b.opts
	var err error
	if b.exp, err = startExporters(o.Targets, o.PerPort, o.Sample); err != nil {
		return err
	}
	defer b.exp.close()
	b.progress("transport %s: %d targets on %d listeners", b.transport, o.Targets, len(b.exp.servers))
	if b.first {
		if err := b.floor(ctx); err != nil {
			return err
		}
	}
	if err := b.steady(ctx); err != nil {
		return err
	}
	if o.PollerOnly {
		return nil
	}
	if b.first {
		if err := b.rawPUTs(ctx); err != nil {
			return err
		}
	}
	return b.drain(ctx)
}

// name is a daemon's (and its log's and profiles') name on b.transport:
// as it was for the first transport, prefixed by the transport otherwise.
func (b *bench) name(n string) string {
	if b.first {
		return n
	}
	return b.transport + "-" + n
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
				if b.recording.Load() && i < len(b.exp.lastServe) {
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

// Content types: the text format as raw PUTs send it, as the node
// exporter serves it, and the receiver's push format.
const (
	textContentType     = "text/plain; version=0.0.4"
	exporterContentType = "text/plain; version=0.0.4; charset=utf-8"
	protobufContentType = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

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

// freePort is a port for a daemon or Prometheus to take on its command
// line: freeport.Pick's, so that a server started on port 0 beside the
// harness (as in the e2e tests, which run it in parallel with others) does
// not take it first.
func freePort() (int, error) { return freeport.Pick() }
