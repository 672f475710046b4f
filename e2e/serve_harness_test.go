package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// serveConfig fills testdata/serve.yaml.tmpl: the file of one poller (a
// DC) or of one receiver with serve_targets and no push_gateway.
type serveConfig struct {
	Role        string // "poller" or "receiver"
	Identity    string
	LogFile     string
	Interval    time.Duration
	MaxAge      time.Duration
	DeleteAfter time.Duration // the receiver's serve.delete_after; 0 leaves its default
	MonitorPort int
	ClusterID   string
	NATSURL     string
	ClientID    string     // the receiver's, which names its durable
	Jobs        []serveJob // the poller's
}

type serveJob struct {
	Name    string
	Targets []serveTarget
}

type serveTarget struct{ Name, URL string }

// startServeDaemon writes cfg to dir/<name>.yaml, runs the built binary in
// cfg.Role on it and waits for its /readyz (connected to NATS Streaming).
// It returns the process and the base URL of its monitor endpoint.
func startServeDaemon(t *testing.T, dir, name string, cfg serveConfig) (*process, string) {
	t.Helper()
	cfg.LogFile = filepath.Join(dir, name+".log")
	return startRendered(t, dir, name, "serve.yaml.tmpl", cfg, cfg.Role, cfg.LogFile, cfg.MonitorPort)
}

// startRendered writes the template tmpl rendered with cfg to
// dir/<name>.yaml, runs the built binary in role on it, logging to
// logFile, and waits for its /readyz on monitorPort. It returns the
// process and the base URL of its monitor endpoint.
func startRendered(t *testing.T, dir, name, tmpl string, cfg any, role, logFile string, monitorPort int) (*process, string) {
	t.Helper()
	file := writeFile(t, dir, name+".yaml", render(t, tmpl, cfg))
	p := startProcess(t, dir, name, []string{logFile}, binary, role, "--config", file)
	waitConnected(t, map[string]int{name: monitorPort}, p)
	return p, "http://" + hostPort(monitorPort)
}

// group names one served group: a target of one poller.
type group struct{ job, instance, publisher string }

func (g group) String() string { return g.publisher + "/" + g.job + "/" + g.instance }

// sdTarget is one entry of the receiver's /sd, decoded by the type
// Prometheus's http_sd decodes it with: what the tests read of it,
// Prometheus can read. Its String is its Source, empty here: print its
// Targets and Labels.
type sdTarget = targetgroup.Group

// sdGroup is the group the entry s stands for, from its target labels.
func sdGroup(s sdTarget) group {
	return group{string(s.Labels["job"]), string(s.Labels["instance"]), string(s.Labels["publisher"])}
}

// scrapeURL is the URL Prometheus scrapes the entry s at, built from the
// entry alone as Prometheus builds it: scheme, address, metrics path and
// the __param_ labels as query parameters.
func scrapeURL(s sdTarget) string {
	q := url.Values{}
	for name, v := range s.Labels {
		if p, ok := strings.CutPrefix(string(name), model.ParamLabelPrefix); ok {
			q.Set(p, string(v))
		}
	}
	addr := ""
	if len(s.Targets) == 1 {
		addr = string(s.Targets[0][model.AddressLabel])
	}
	return string(s.Labels[model.SchemeLabel]) + "://" + addr + string(s.Labels[model.MetricsPathLabel]) + "?" + q.Encode()
}

// fetchSD GETs the receiver's /sd and returns its entries by group; an
// entry that is not one target or names a group twice is an error.
func fetchSD(c *http.Client, base string) (map[group]sdTarget, error) {
	b, err := get(c, base+"/sd")
	if err != nil {
		return nil, err
	}
	var entries []sdTarget
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("/sd: %w: %s", err, b)
	}
	out := map[group]sdTarget{}
	for _, e := range entries {
		if len(e.Targets) != 1 {
			return nil, fmt.Errorf("/sd entry with %d targets, want 1: %v %v", len(e.Targets), e.Targets, e.Labels)
		}
		if _, dup := out[sdGroup(e)]; dup {
			return nil, fmt.Errorf("/sd lists %s twice", sdGroup(e))
		}
		out[sdGroup(e)] = e
	}
	return out, nil
}

// sdHas returns /sd's entries, and an error unless it lists exactly the
// groups want.
func sdHas(c *http.Client, base string, want ...group) (map[group]sdTarget, error) {
	sd, err := fetchSD(c, base)
	if err != nil {
		return nil, err
	}
	var got []string
	for g := range sd {
		got = append(got, g.String())
	}
	slices.Sort(got)
	for _, g := range want {
		if _, ok := sd[g]; !ok {
			return sd, fmt.Errorf("/sd lacks %s (lists %v)", g, got)
		}
	}
	if len(sd) != len(want) {
		return sd, fmt.Errorf("/sd lists %d groups %v, want %d", len(sd), got, len(want))
	}
	return sd, nil
}

// scrapeAnswer is a receiver's answer to one scrape of a group.
type scrapeAnswer struct {
	code        int
	contentType string
	body        []byte
}

// scrapeVia GETs the group's scrape URL as /sd gives it.
func scrapeVia(c *http.Client, s sdTarget) (scrapeAnswer, error) {
	resp, err := c.Get(scrapeURL(s))
	if err != nil {
		return scrapeAnswer{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return scrapeAnswer{}, fmt.Errorf("GET %s: read body: %w", scrapeURL(s), err)
	}
	return scrapeAnswer{resp.StatusCode, resp.Header.Get("Content-Type"), b}, nil
}

// exporterBody is what a static exporter serves.
type exporterBody struct {
	contentType string
	body        []byte
}

// servesExactly returns nil when the group's scrape answers 200 with
// exactly the exporter's body and Content-Type.
func servesExactly(c *http.Client, s sdTarget, want exporterBody) error {
	a, err := scrapeVia(c, s)
	if err != nil {
		return err
	}
	switch {
	case a.code != http.StatusOK:
		return fmt.Errorf("scrape of %s: %d %s", sdGroup(s), a.code, a.body)
	case a.contentType != want.contentType:
		return fmt.Errorf("scrape of %s: Content-Type %q, the exporter's is %q", sdGroup(s), a.contentType, want.contentType)
	case string(a.body) != string(want.body):
		return fmt.Errorf("scrape of %s: a body of %d bytes, not the exporter's %d bytes", sdGroup(s), len(a.body), len(want.body))
	}
	return nil
}

// staticExporter serves testdata/<sample> with contentType until the test
// ends, and returns its URL and what it serves.
func staticExporter(t *testing.T, sample, contentType string) (string, exporterBody) {
	t.Helper()
	b := exporterBody{contentType, testenv.Sample(t, sample)}
	return testenv.Exporter(t, b.body, contentType).URL, b
}

// servePromConfig fills testdata/serve-prometheus.yml.tmpl.
type servePromConfig struct {
	ReceiverHost, NodeHost, TextHost, ProtoHost string
}

// startServePrometheus runs Debian's Prometheus on listen with the
// configuration of testdata/serve-prometheus.yml.tmpl and waits until it
// is ready.
func startServePrometheus(t *testing.T, dir, listen string, cfg servePromConfig) *prometheus {
	t.Helper()
	return runPrometheus(t, dir, listen, render(t, "serve-prometheus.yml.tmpl", cfg))
}

// targetLabels are the labels a target puts on every series it has:
// compared apart, as the direct and the streamed target differ in them.
var targetLabels = []string{"job", "instance", "publisher"}

// seriesKey is a series' labels, __name__ included, without targetLabels.
func seriesKey(m model.Metric) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(targetLabels, string(name)) {
			fmt.Fprintf(&b, "%s=%q,", name, m[name])
		}
	}
	return b.String()
}

// seriesOf runs query in Prometheus and returns the series it answers by
// seriesKey.
func seriesOf(c *http.Client, base, query string) (map[string]*model.Sample, error) {
	v, err := queryPrometheus(c, base, query)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*model.Sample, len(v))
	for _, s := range v {
		k := seriesKey(s.Metric)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s: two series %s", query, k)
		}
		out[k] = s
	}
	return out, nil
}

// sameSeries returns nil when Prometheus has the same series (names and
// labels apart from targetLabels) for the streamed query as for the direct
// one and, with values, the same value for each of them except those of
// the names in varying. It names up to 10 differences.
func sameSeries(c *http.Client, base, direct, streamed string, values bool, varying ...string) error {
	d, err := seriesOf(c, base, direct)
	if err != nil {
		return err
	}
	s, err := seriesOf(c, base, streamed)
	if err != nil {
		return err
	}
	if len(d) == 0 {
		return fmt.Errorf("%s: no series yet", direct)
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		ss, ok := s[k]
		if !ok {
			diffs = append(diffs, "only scraped directly: "+k)
			continue
		}
		dv, sv := float64(d[k].Value), float64(ss.Value)
		switch {
		case !values || slices.Contains(varying, string(d[k].Metric[model.MetricNameLabel])):
		case sv != dv && !(math.IsNaN(sv) && math.IsNaN(dv)):
			diffs = append(diffs, fmt.Sprintf("%s: %v directly, %v through the receiver", k, dv, sv))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if _, ok := d[k]; !ok {
			diffs = append(diffs, "only through the receiver: "+k)
		}
	}
	if len(diffs) > 0 {
		n := len(diffs)
		return fmt.Errorf("%s (%d series) and %s (%d series) differ in %d: %s", direct, len(d), streamed, len(s), n, strings.Join(diffs[:min(n, 10)], "; "))
	}
	return nil
}

// valuesByInstance runs query and returns the value of each series by its
// instance label.
func valuesByInstance(c *http.Client, base, query string) (map[string]float64, error) {
	v, err := queryPrometheus(c, base, query)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range v {
		out[string(s.Metric[model.InstanceLabel])] = float64(s.Value)
	}
	return out, nil
}
