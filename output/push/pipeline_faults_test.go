package push

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/channeltest"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/poller"
	"github.com/choria-io/prometheus-streams/pushgateway"
	"github.com/choria-io/prometheus-streams/stream"
)

// The tests in this file run the whole pipeline in-process: a real
// poller.Poller scraping httptest exporters, publishing through a real
// STANPublisher to an embedded NATS Streaming server, and a real Receiver on
// a durable STANSubscriber pushing to an embedded Pushgateway. Each injects
// one fault and waits for the pipeline to get over it.

// faultComponent is a long-lived Run(ctx) of the pipeline. Unlike testenv.Run it
// can tell whether Run returned on its own, which no fault may cause.
type faultComponent struct {
	name string
	done chan struct{}
	err  error // set before done is closed
	stop func()
}

func startFaultComponent(t *testing.T, name string, fn func(context.Context) error) *faultComponent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &faultComponent{name: name, done: make(chan struct{})}
	go func() {
		c.err = fn(ctx)
		close(c.done)
	}()
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			cancel()
			<-c.done
			if c.err != nil {
				t.Errorf("%s returned: %v", c.name, c.err)
			}
		})
	}
	t.Cleanup(c.stop)
	return c
}

// running returns an error once Run returned.
func (c *faultComponent) running() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s.Run returned early (err %w)", c.name, c.err)
	default:
		return nil
	}
}

type faultPipelineOpts struct {
	storeDir string // NATS Streaming file store; "" = memory
	// pushURL is where the receiver pushes; "" starts an embedded
	// Pushgateway. gatewayURL is where the test reads the Pushgateway,
	// defaulting to pushURL.
	pushURL, gatewayURL string
	targets             []config.Target
	interval, timeout   time.Duration
	receiver            Options
	receiverInflight    int
}

// faultPipeline is a running poller-to-Pushgateway pipeline.
type faultPipeline struct {
	nats       *embedded.Streaming
	gateway    string
	pub        *stream.STANPublisher
	poller     *poller.Poller
	pollerReg  *prometheus.Registry
	receiver   *pipe
	pushClient *pushgateway.Client
	// receiverInflight is the receivers' max_inflight; 0 is the default.
	receiverInflight int
	comps            map[string]*faultComponent
}

func faultStreamOptions(s *embedded.Streaming, client string) stream.STANOptions {
	o := streamOptions(s, client) // PingInterval 1, PingMaxOut 3, backoff 20..100ms
	o.ConnectTimeout = 2 * time.Second
	return o
}

func startFaultPipeline(t *testing.T, o faultPipelineOpts) *faultPipeline {
	t.Helper()
	p := &faultPipeline{comps: map[string]*faultComponent{}, receiverInflight: o.receiverInflight}
	// A port no other test takes while the server restarts.
	p.nats = testenv.Streaming(t, embedded.StreamingOptions{StoreDir: o.storeDir, Port: testenv.FreePort(t)})
	if o.pushURL == "" {
		o.pushURL = startGateway(t, "").URL()
	}
	p.gateway = o.gatewayURL
	if p.gateway == "" {
		p.gateway = o.pushURL
	}

	var err error
	p.pub, err = stream.NewSTANPublisher(faultStreamOptions(p.nats, "fault-poller"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	p.comps["publisher"] = startFaultComponent(t, "publisher", p.pub.Run)

	// Our own transport, closed when the test ends, so goleak sees no
	// keep-alive connection left over.
	tr := &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	if o.interval == 0 {
		o.interval = 100 * time.Millisecond
	}
	p.pollerReg = prometheus.NewRegistry()
	p.poller, err = poller.New(poller.Options{
		Identity: "dc1", Targets: o.targets, Interval: o.interval, Timeout: o.timeout,
		ShutdownGrace: 500 * time.Millisecond, HTTPClient: &http.Client{Transport: tr},
	}, p.pub, nil, p.pollerReg)
	if err != nil {
		t.Fatal(err)
	}
	p.comps["poller"] = startFaultComponent(t, "poller", p.poller.Run)

	p.pushClient, err = pushgateway.New(pushgateway.Options{URL: o.pushURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.pushClient.CloseIdleConnections)
	p.receiver = p.startReceiver(t, o.receiver)
	return p
}

// startReceiver starts a receiver (client ID and durable "receiver")
// pushing with the pipeline's client and records it as the pipeline's
// receiver component.
func (p *faultPipeline) startReceiver(t *testing.T, opts Options) *pipe {
	t.Helper()
	return p.startReceiverWith(t, opts, p.receiverInflight, p.pushClient)
}

// startReceiverWith is startReceiver with the subscription's max_inflight
// (0 is the default) and the Pushgateway client of its own.
func (p *faultPipeline) startReceiverWith(t *testing.T, opts Options, inflight int, client *pushgateway.Client) *pipe {
	t.Helper()
	so := faultStreamOptions(p.nats, "receiver")
	so.MaxInflight = inflight
	sub, err := stream.NewSTANSubscriber(so, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = time.Minute
	}
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = 10*time.Millisecond, 100*time.Millisecond
	}
	r := newPipe(t, opts, sub, client, nil, nil)
	p.comps["receiver"] = startFaultComponent(t, "receiver", r.Run)
	return r
}

// checkRunning fails the test if any component's Run returned.
func (p *faultPipeline) checkRunning(t *testing.T) {
	t.Helper()
	for _, c := range p.comps {
		if err := c.running(); err != nil {
			t.Fatal(err)
		}
	}
}

// value reads one series from the Pushgateway.
func (p *faultPipeline) value(name string, labels map[string]string) (float64, bool) {
	fams, err := testenv.Families(p.gateway + "/metrics")
	if err != nil {
		return 0, false
	}
	return testenv.Value(fams, name, labels)
}

// waitValue polls the Pushgateway until name{labels} satisfies ok, failing
// early if a component's Run returns meanwhile. It returns how long it took.
func (p *faultPipeline) waitValue(t *testing.T, what string, timeout time.Duration, name string, labels map[string]string, ok func(float64) bool) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.WaitFor(t, what, timeout, func() bool {
		for _, c := range p.comps {
			if err := c.running(); err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		v, found := p.value(name, labels)
		return found && ok(v)
	})
	return time.Since(start)
}

// faultCounter serves fault_requests_total, incremented on every
// request, so a value in the Pushgateway says which scrape it came from.
type faultCounter struct {
	srv *httptest.Server
	n   atomic.Int64
}

func newFaultCounter(t *testing.T) *faultCounter {
	t.Helper()
	e := &faultCounter{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := e.n.Add(1)
		w.Header().Set("Content-Type", testenv.TextContentType)
		fmt.Fprintf(w, "# TYPE fault_requests_total counter\nfault_requests_total %d\n", n)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func TestFaultStreamingRestartUnderBothDaemons(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		file bool
	}{{"memory store", false}, {"file store", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := ""
			if c.file {
				dir = t.TempDir()
			}
			exp := newFaultCounter(t)
			p := startFaultPipeline(t, faultPipelineOpts{storeDir: dir, targets: []config.Target{{Job: "fault", Name: "c1", URL: exp.srv.URL + "/metrics"}}})
			labels := map[string]string{"job": "fault", "instance": "c1"}
			p.waitValue(t, "a first scrape in the Pushgateway", 10*time.Second, "fault_requests_total", labels, func(v float64) bool { return v >= 1 })

			if err := p.nats.Restart(); err != nil {
				t.Fatal(err)
			}
			// Every request the exporter answers from now on is a scrape
			// taken after the restart.
			before := float64(exp.n.Load())
			took := p.waitValue(t, fmt.Sprintf("a scrape taken after the restart (> %v) in the Pushgateway", before), 20*time.Second,
				"fault_requests_total", labels, func(v float64) bool { return v > before })
			t.Logf("%s: a scrape taken after the restart reached the Pushgateway %v after it", c.name, took.Round(time.Millisecond))
			p.checkRunning(t)
		})
	}
}

// Not parallel: it times the recovery in scrape intervals.
func TestFaultPushgatewayDownThenUp(t *testing.T) {
	const interval = 200 * time.Millisecond
	// "A few scrape intervals": one for the next scrape, the rest for the
	// retry backoff (at most 100ms here) and the race detector.
	const within = 5 * interval
	exp := newFaultCounter(t)
	var targets []config.Target
	for i := range 3 {
		targets = append(targets, config.Target{Job: "fault", Name: "g" + strconv.Itoa(i), URL: exp.srv.URL + "/metrics"})
	}
	waitAll := func(t *testing.T, p *faultPipeline, what string) {
		t.Helper()
		start := time.Now()
		testenv.WaitFor(t, what+": every group up 1 in the Pushgateway", within, func() bool {
			fams, err := testenv.Families(p.gateway + "/metrics")
			if err != nil {
				return false
			}
			for _, tg := range targets {
				if v, ok := testenv.Value(fams, "up", map[string]string{"job": "fault", "instance": tg.Name}); !ok || v != 1 {
					return false
				}
			}
			return true
		})
		p.checkRunning(t)
		t.Logf("%s: every group in the Pushgateway after %v", what, time.Since(start).Round(time.Millisecond))
	}

	t.Run("down when scrapes arrive", func(t *testing.T) {
		addr := testenv.FreeAddr(t)
		p := startFaultPipeline(t, faultPipelineOpts{pushURL: "http://" + addr, targets: targets, interval: interval})
		testenv.WaitFor(t, "pushes to fail while the Pushgateway is down", 10*time.Second, func() bool {
			return testutil.ToFloat64(p.receiver.metrics.pushes.WithLabelValues(pushError)) >= 6
		})
		p.checkRunning(t)
		startGateway(t, addr)
		waitAll(t, p, "after the Pushgateway started")
		if n := p.receiver.dropped(output.ReasonRejected); n != 0 {
			t.Fatalf("%v scrapes dropped as rejected during the outage", n)
		}
	})

	t.Run("restarts empty", func(t *testing.T) {
		addr := testenv.FreeAddr(t)
		gw := startGateway(t, addr)
		p := startFaultPipeline(t, faultPipelineOpts{pushURL: gw.URL(), targets: targets, interval: interval})
		waitAll(t, p, "first start")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := gw.Close(ctx); err != nil {
			t.Fatal(err)
		}
		startGateway(t, addr) // same address, empty store
		waitAll(t, p, "after the Pushgateway restarted empty")
		p.checkRunning(t)
	})
}

func TestFaultPushgatewayAnswers503(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, "")
	target, err := url.Parse(gw.URL())
	if err != nil {
		t.Fatal(err)
	}
	var unavailable atomic.Bool
	var refused atomic.Int64
	unavailable.Store(true)
	proxy := httputil.NewSingleHostReverseProxy(target)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	proxy.Transport = tr
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unavailable.Load() {
			refused.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(w, "upstream maintenance", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	exp := newFaultCounter(t)
	p := startFaultPipeline(t, faultPipelineOpts{
		pushURL: front.URL, gatewayURL: gw.URL(), interval: 200 * time.Millisecond,
		targets: []config.Target{{Job: "fault", Name: "c1", URL: exp.srv.URL}},
	})
	testenv.WaitFor(t, "pushes answered 503 and counted as errors", 10*time.Second, func() bool {
		return refused.Load() >= 5 && testutil.ToFloat64(p.receiver.metrics.pushes.WithLabelValues(pushError)) >= 5
	})
	p.checkRunning(t)
	labels := map[string]string{"job": "fault", "instance": "c1"}
	if _, ok := p.value("up", labels); ok {
		t.Fatal("the group reached the Pushgateway through a proxy answering 503")
	}
	unavailable.Store(false)
	took := p.waitValue(t, "the group once the proxy stops answering 503", 5*time.Second, "up", labels, func(v float64) bool { return v == 1 })
	m := p.receiver.metrics
	t.Logf("503s answered %d, push errors counted %v, group arrived %v after the 503s stopped",
		refused.Load(), testutil.ToFloat64(m.pushes.WithLabelValues(pushError)), took.Round(time.Millisecond))
	if n := testutil.ToFloat64(m.pushes.WithLabelValues(pushRejected)); n != 0 {
		t.Fatalf("%v pushes counted as rejected; 503 is retryable", n)
	}
	p.checkRunning(t)
}

// faultTarget serves fault_requests_total while healthy; while broken it
// answers 503 or hangs until the scrape times out.
type faultTarget struct {
	srv    *httptest.Server
	broken atomic.Bool
}

func newFaultTarget(t *testing.T, hang bool) *faultTarget {
	t.Helper()
	f := &faultTarget{}
	f.broken.Store(true)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.broken.Load() {
			if hang {
				<-r.Context().Done() // the poller's scrape timeout ends it
				return
			}
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", testenv.TextContentType)
		_, _ = io.WriteString(w, "fault_requests_total 1\n")
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func TestFaultTargetFailuresAreUpZeroThenRecover(t *testing.T) {
	t.Parallel()
	unavailable := newFaultTarget(t, false)
	slow := newFaultTarget(t, true)
	refusedAddr := testenv.FreeAddr(t)
	targets := []config.Target{
		{Job: "fault", Name: "unavailable", URL: unavailable.srv.URL + "/metrics"},
		{Job: "fault", Name: "timeout", URL: slow.srv.URL + "/metrics"},
		{Job: "fault", Name: "refused", URL: "http://" + refusedAddr + "/metrics"},
	}
	p := startFaultPipeline(t, faultPipelineOpts{targets: targets, interval: 200 * time.Millisecond, timeout: 100 * time.Millisecond})
	for _, tg := range targets {
		labels := map[string]string{"job": "fault", "instance": tg.Name}
		p.waitValue(t, tg.Name+": up 0", 10*time.Second, "up", labels, func(v float64) bool { return v == 0 })
		if _, ok := p.value("fault_requests_total", labels); ok {
			t.Errorf("%s: a failed scrape pushed the target's series", tg.Name)
		}
	}

	unavailable.broken.Store(false)
	slow.broken.Store(false)
	ln, err := net.Listen("tcp", refusedAddr)
	if err != nil {
		t.Fatalf("listen on the refusing target's address: %v", err)
	}
	back := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "fault_requests_total 1\n")
	}))
	_ = back.Listener.Close()
	back.Listener = ln
	back.Start()
	t.Cleanup(back.Close)

	for _, tg := range targets {
		labels := map[string]string{"job": "fault", "instance": tg.Name}
		took := p.waitValue(t, tg.Name+": up 1 after recovery", 10*time.Second, "up", labels, func(v float64) bool { return v == 1 })
		t.Logf("%s: up 1 again %v after the target recovered (or after the previous target did)", tg.Name, took.Round(time.Millisecond))
		p.waitValue(t, tg.Name+": its series after recovery", 5*time.Second, "fault_requests_total", labels, func(v float64) bool { return v == 1 })
	}
	p.checkRunning(t)
}

// faultSeqExporter serves seq, counted per path, so each of many targets on one
// server has its own sequence.
type faultSeqExporter struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   map[string]int
}

func newFaultSeqExporter(t *testing.T) *faultSeqExporter {
	t.Helper()
	e := &faultSeqExporter{n: map[string]int{}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.n[r.URL.Path]++
		n := e.n[r.URL.Path]
		e.mu.Unlock()
		fmt.Fprintf(w, "seq %d\n", n)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// faultObserver records, per instance, the newest scrape published on the
// channel (its seq and start) and how many messages it saw.
type faultObserver struct {
	mu     sync.Mutex
	newest map[string]faultObserved
	count  int
}

type faultObserved struct {
	seq   float64
	start time.Time
}

func observeFaults(t *testing.T, s *embedded.Streaming) *faultObserver {
	t.Helper()
	o := &faultObserver{newest: map[string]faultObserved{}}
	channeltest.Observe(t, s, "prometheus", "observer", func(env *envelope.Envelope) {
		body, err := env.Body(nil, 1<<20)
		if err != nil || env.Outcome != envelope.OutcomeSuccess {
			return
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(string(body), "seq ")), 64)
		if err != nil {
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		o.count++
		if v > o.newest[env.Instance].seq {
			o.newest[env.Instance] = faultObserved{seq: v, start: env.ScrapeStart}
		}
	})
	return o
}

func (o *faultObserver) snapshot() (map[string]faultObserved, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[string]faultObserved, len(o.newest))
	for k, v := range o.newest {
		m[k] = v
	}
	return m, o.count
}

func faultGathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range fams {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

// Not parallel: it bounds how long the receiver takes to stop, and the
// backlog it is about needs the receiver to lag well behind (200 scrapes a
// second against 80 pushes), which other tests' load would blur.
func TestFaultReceiverStoppedUnderLoadLosesNothing(t *testing.T) {
	const groups = 200
	exp := newFaultSeqExporter(t)
	var targets []config.Target
	for i := range groups {
		targets = append(targets, config.Target{Job: "load", Name: "g" + strconv.Itoa(i), URL: exp.srv.URL + "/" + strconv.Itoa(i)})
	}
	// The Pushgateway answers after 50ms, so the receiver's 4 workers push
	// fewer groups a second (80) than the poller publishes (200) and it
	// lags, as a receiver under load does.
	gw := startGateway(t, "")
	slow := faultSlowProxy(t, gw.URL(), 50*time.Millisecond)
	p := startFaultPipeline(t, faultPipelineOpts{
		targets: targets, interval: time.Second, pushURL: slow, gatewayURL: gw.URL(),
		// A backlog in the stream rather than in the receiver's memory.
		receiverInflight: 8,
	})
	obs := observeFaults(t, p.nats)
	first := p.receiver
	testenv.WaitFor(t, "the receiver to be pushing the load", 30*time.Second, func() bool {
		return testutil.ToFloat64(first.metrics.pushes.WithLabelValues(pushSuccess)) >= groups
	})

	// The poller stops (its DC goes quiet) while the receiver, which lags,
	// still works through a backlog of the last scrapes; then the
	// receiver gets the SIGTERM-equivalent mid-flow. Every group the
	// receiver pushes between the two had its newest scrape taken before
	// that push, and that newest scrape is somewhere in the backlog.
	p.comps["poller"].stop()
	delete(p.comps, "poller")
	pushed := testutil.ToFloat64(first.metrics.pushes.WithLabelValues(pushSuccess))
	testenv.WaitFor(t, "the receiver to push on after the poller stopped", 10*time.Second, func() bool {
		return testutil.ToFloat64(first.metrics.pushes.WithLabelValues(pushSuccess)) >= pushed+groups/5
	})
	stopAt := time.Now()
	p.comps["receiver"].stop()
	took := time.Since(stopAt)
	published := faultGathered(t, p.pollerReg, "prometheus_streams_poller_published_total")
	testenv.WaitFor(t, "the observer to see every published scrape", 10*time.Second, func() bool {
		_, n := obs.snapshot()
		return float64(n) >= published
	})
	newest, _ := obs.snapshot()
	if len(newest) != groups {
		t.Fatalf("the observer saw %d groups, want %d", len(newest), groups)
	}
	m := first.metrics
	t.Logf("first receiver: Run returned %v after its context ended; received %v, pushed %v, superseded %v; %v published in all",
		took.Round(time.Millisecond), first.received(), testutil.ToFloat64(m.pushes.WithLabelValues(pushSuccess)),
		first.dropped(output.ReasonSuperseded), published)

	firstAcked := faultAcked(first)
	// A new receiver with the same client ID and durable. More workers, a
	// max_inflight that holds the whole backlog (so that the older scrapes
	// of a group are superseded, not each pushed) and pushes straight to
	// the Pushgateway, only so that the test drains the backlog quickly.
	direct, err := pushgateway.New(pushgateway.Options{URL: gw.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(direct.CloseIdleConnections)
	second := p.startReceiverWith(t, Options{Concurrency: 8}, 1024, direct)
	start := time.Now()
	// It gets every message the first did not acknowledge (the durable
	// resumes there): wait until it has dealt with all of them.
	testenv.WaitFor(t, "the second receiver to deal with every unacknowledged message", 30*time.Second, func() bool {
		return second.received() >= published-firstAcked && faultAcked(second) >= second.received()
	})
	m = second.metrics
	t.Logf("second receiver: dealt with its %v messages in %v: pushed %v, superseded %v",
		second.received(), time.Since(start).Round(time.Millisecond),
		testutil.ToFloat64(m.pushes.WithLabelValues(pushSuccess)), second.dropped(output.ReasonSuperseded))
	var wrong []string
	faultWaitFor(t, "every group's newest scrape in the Pushgateway", 2*time.Second, func() bool {
		fams, err := testenv.Families(p.gateway + "/metrics")
		if err != nil {
			return false
		}
		wrong = wrong[:0]
		for i := range groups {
			inst := "g" + strconv.Itoa(i)
			labels := map[string]string{"job": "load", "instance": inst}
			if v, ok := testenv.Value(fams, "seq", labels); !ok || v != newest[inst].seq {
				pushed, _ := testenv.Value(fams, "push_time_seconds", labels)
				wrong = append(wrong, fmt.Sprintf("%s: newest published seq %v scraped at %s; the Pushgateway has seq %v pushed at %s",
					inst, newest[inst].seq, newest[inst].start.Format("15:04:05.000000"), v,
					time.Unix(0, int64(pushed*1e9)).Format("15:04:05.000000")))
			}
		}
		return len(wrong) == 0
	}, func() string {
		return fmt.Sprintf("%d of %d groups lack their newest scrape, e.g. %v",
			len(wrong), groups, wrong[:min(len(wrong), 3)])
	})
	if took > 3*time.Second {
		t.Errorf("the first receiver took %v to stop under load", took)
	}
}

// faultAcked is how many deliveries r acknowledged: pushed or dropped.
func faultAcked(r *pipe) float64 { return r.acked() }

// faultWaitFor is testenv.WaitFor with detail's account of what is still
// wrong in the failure message.
func faultWaitFor(t *testing.T, what string, timeout time.Duration, cond func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, detail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// faultSlowProxy forwards to target after delay: a Pushgateway under load.
func faultSlowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	proxy.Transport = tr
	proxy.ErrorLog = log.New(io.Discard, "", 0) // cancelled pushes at the end of the test
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
