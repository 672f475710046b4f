package loadtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/choria-io/prometheus-streams/output/serve"
)

// pgwJob is the Prometheus job that scrapes the Pushgateway; the serve
// targets carry the job their groups have (job), which /sd gives them.
const pgwJob = "bench_pushgateway"

// PrometheusResult is what a real Prometheus recorded over the window of
// its scrapes of the serve targets (found through the receiver's /sd) and
// of the Pushgateway holding the same groups (honor_labels), from its own
// up and scrape_duration_seconds.
type PrometheusResult struct {
	Version string

	ServeTargets                 int // serve targets with samples in the window
	ServeScrapes, ServeUp        int // samples of up, and those that were 1
	ServeP50, ServeP99, ServeMax time.Duration
	PGWScrapes, PGWUp            int
	PGWP50, PGWMax               time.Duration
	PGWSamplesScraped            float64 // the highest scrape_samples_scraped
	ReceiverScrapes              int     // answered ok by the receiver in the window
	// ReceiverCPUPerScrape is all the receiver's CPU over the window
	// (holding the fed scrapes included) divided by ReceiverScrapes;
	// ReceiverServingCPUPerScrape is the same less the holding cost, as
	// ServeResult's CPUPerScrape and ServingCPUPerScrape.
	ReceiverCPUPerScrape, ReceiverServingCPUPerScrape time.Duration
	ReceiverCores, PrometheusCores                    float64
	PeakRSS                                           int64 // Prometheus's VmHWM
}

// prometheus runs Prometheus against the receiver's /sd and the
// Pushgateway for one interval to discover and scrape everything once,
// then for the window, and reads back what it recorded. holdCores is the
// receiver's holding cost (ServeResult.HoldCores), subtracted for
// ReceiverServingCPUPerScrape.
func (b *bench) prometheus(ctx context.Context, recv *daemon, holdCores float64) (*PrometheusResult, error) {
	o := b.opts
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg, err := b.writePrometheusConfig(recv.monitor + serve.SDPath)
	if err != nil {
		return nil, err
	}
	b.progress("prometheus: %s scraping %d targets through /sd and the Pushgateway holding the same groups", o.Prometheus, o.Targets)
	prom, err := startChild(ctx, o.WorkDir, "prometheus", fmt.Sprintf("http://127.0.0.1:%d", port), "/-/ready", o.Prometheus,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(o.WorkDir, "prometheus-data"),
		"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	defer func() {
		if prom != nil {
			prom.stop()
		}
	}()
	res := &PrometheusResult{}
	if res.Version, err = promVersion(ctx, prom.monitor); err != nil {
		return nil, err
	}
	if err := b.waitPrometheusUp(ctx, prom.monitor); err != nil {
		return nil, err
	}
	b.progress("prometheus: window: %s", o.Window)
	served := func() (float64, error) {
		fams, err := recv.families(ctx)
		if err != nil {
			return 0, err
		}
		n, _ := sum(fams, "prometheus_streams_serve_scrape_requests_total", map[string]string{"outcome": "ok"})
		return n, nil
	}
	n0, err := served()
	if err != nil {
		return nil, err
	}
	rc0, err := recv.cpu()
	if err != nil {
		return nil, err
	}
	pc0, err := prom.cpu()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.Window):
	}
	end := time.Now()
	rc1, err := recv.cpu()
	if err != nil {
		return nil, err
	}
	pc1, err := prom.cpu()
	if err != nil {
		return nil, err
	}
	n1, err := served()
	if err != nil {
		return nil, err
	}
	elapsed := end.Sub(start).Seconds()
	res.ReceiverScrapes = int(n1 - n0)
	if res.ReceiverScrapes > 0 {
		cpu := rc1 - rc0
		res.ReceiverCPUPerScrape = seconds(cpu / float64(res.ReceiverScrapes))
		res.ReceiverServingCPUPerScrape = seconds(max(0, cpu-holdCores*elapsed) / float64(res.ReceiverScrapes))
	}
	res.ReceiverCores, res.PrometheusCores = (rc1-rc0)/elapsed, (pc1-pc0)/elapsed
	if err := b.readPrometheus(ctx, prom.monitor, end, res); err != nil {
		return nil, err
	}
	res.PeakRSS = prom.stop()
	prom = nil
	return res, nil
}

// writePrometheusConfig writes the two jobs: the serve targets from the
// receiver's sdURL (refreshed once per interval, as the harness's scraper
// does) and the Pushgateway with honor_labels, as its documentation
// prescribes.
func (b *bench) writePrometheusConfig(sdURL string) (string, error) {
	o := b.opts
	promDuration := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }
	pgw, err := url.Parse(b.pgw.URL())
	if err != nil {
		return "", fmt.Errorf("pushgateway URL: %w", err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[2]s
scrape_configs:
  - job_name: serve
    http_sd_configs:
      - url: %[3]s
        refresh_interval: %[1]s
  - job_name: %[4]s
    honor_labels: true
    static_configs:
      - targets: ['%[5]s']
`, promDuration(o.Interval), promDuration(scrapeTimeout(o.Interval)), sdURL, pgwJob, pgw.Host)
	path := filepath.Join(o.WorkDir, "prometheus.yml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// waitPrometheusUp waits until Prometheus has scraped every serve target
// and the Pushgateway at least once.
func (b *bench) waitPrometheusUp(ctx context.Context, base string) error {
	limit := 3*b.opts.Interval + time.Minute
	deadline := time.Now().Add(limit)
	for {
		serve, err := promQuery(ctx, base, fmt.Sprintf(`count(up{job=%q})`, job), time.Time{})
		if err != nil {
			return err
		}
		pgw, err := promQuery(ctx, base, fmt.Sprintf(`count(up{job=%q})`, pgwJob), time.Time{})
		if err != nil {
			return err
		}
		if len(serve) == 1 && len(pgw) == 1 && lastValue(serve[0]) == float64(b.opts.Targets) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus: not every target scraped within %s: %w", limit, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// readPrometheus reads every sample of up and scrape_duration_seconds of
// both jobs in the window that ended at end.
func (b *bench) readPrometheus(ctx context.Context, base string, end time.Time, res *PrometheusResult) error {
	window := strconv.FormatInt(b.opts.Window.Milliseconds(), 10) + "ms"
	read := func(metric, j string) ([]promSeries, error) {
		return promQuery(ctx, base, fmt.Sprintf(`%s{job=%q}[%s]`, metric, j, window), end)
	}
	durations := func(series []promSeries) []time.Duration {
		var d []time.Duration
		for _, s := range series {
			for _, v := range s.values {
				d = append(d, seconds(v))
			}
		}
		slices.Sort(d)
		return d
	}
	ups := func(series []promSeries) (n, up int) {
		for _, s := range series {
			for _, v := range s.values {
				n++
				if v == 1 {
					up++
				}
			}
		}
		return n, up
	}
	sd, err := read("scrape_duration_seconds", job)
	if err != nil {
		return err
	}
	su, err := read("up", job)
	if err != nil {
		return err
	}
	pd, err := read("scrape_duration_seconds", pgwJob)
	if err != nil {
		return err
	}
	pu, err := read("up", pgwJob)
	if err != nil {
		return err
	}
	ps, err := read("scrape_samples_scraped", pgwJob)
	if err != nil {
		return err
	}
	d := durations(sd)
	if len(d) == 0 {
		return fmt.Errorf("prometheus: no scrape of the serve targets in the window")
	}
	res.ServeTargets = len(sd)
	res.ServeScrapes, res.ServeUp = ups(su)
	res.ServeP50, res.ServeP99, res.ServeMax = quantile(d, 0.50), quantile(d, 0.99), d[len(d)-1]
	if d = durations(pd); len(d) > 0 {
		res.PGWP50, res.PGWMax = quantile(d, 0.50), d[len(d)-1]
	}
	res.PGWScrapes, res.PGWUp = ups(pu)
	for _, s := range ps {
		for _, v := range s.values {
			res.PGWSamplesScraped = max(res.PGWSamplesScraped, v)
		}
	}
	return nil
}

// promSeries is one series of a query's answer: an instant vector's one
// value, or a range's values.
type promSeries struct {
	metric model.Metric
	values []float64
}

func lastValue(s promSeries) float64 {
	if len(s.values) == 0 {
		return 0
	}
	return s.values[len(s.values)-1]
}

// promAPI is a client of the HTTP API of the Prometheus at base.
func promAPI(base string) (promv1.API, error) {
	c, err := api.NewClient(api.Config{Address: base})
	if err != nil {
		return nil, fmt.Errorf("prometheus: API at %s: %w", base, err)
	}
	return promv1.NewAPI(c), nil
}

// promQuery runs query at the time at (zero: now) with Prometheus's HTTP
// API and returns its vector or matrix. Prometheus's warnings are not
// errors; a native histogram, which has no float value, is.
func promQuery(ctx context.Context, base, query string, at time.Time) ([]promSeries, error) {
	p, err := promAPI(base)
	if err != nil {
		return nil, err
	}
	v, _, err := p.Query(ctx, query, at)
	if err != nil {
		return nil, fmt.Errorf("prometheus: query %s: %w", query, err)
	}
	var out []promSeries
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			if s.Histogram != nil {
				return nil, fmt.Errorf("prometheus: query %s: %v is a histogram, want a float", query, s)
			}
			out = append(out, promSeries{metric: s.Metric, values: []float64{float64(s.Value)}})
		}
	case model.Matrix:
		for _, s := range v {
			if len(s.Histograms) > 0 {
				return nil, fmt.Errorf("prometheus: query %s: %s has histograms, want floats", query, s.Metric)
			}
			ps := promSeries{metric: s.Metric}
			for _, p := range s.Values {
				ps.values = append(ps.values, float64(p.Value))
			}
			out = append(out, ps)
		}
	default:
		return nil, fmt.Errorf("prometheus: query %s: result %T, want a vector or a matrix", query, v)
	}
	return out, nil
}

// promVersion is the version Prometheus reports of itself.
func promVersion(ctx context.Context, base string) (string, error) {
	p, err := promAPI(base)
	if err != nil {
		return "", err
	}
	info, err := p.Buildinfo(ctx)
	if err != nil {
		return "", fmt.Errorf("prometheus: build info: %w", err)
	}
	return info.Version, nil
}
