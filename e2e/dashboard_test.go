package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/stream"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// dashboardsGlob is the Grafana dashboards, relative to the module root.
const dashboardsGlob = "packaging/grafana/*.json"

// grafanaDashboard is the part of a Grafana dashboard the test reads.
type grafanaDashboard struct {
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaVariable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Definition string `json:"definition"`
	AllValue   string `json:"allValue"`
}

type grafanaPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// grafanaBuiltins are what Grafana puts in for its own variables, for a
// Prometheus that scrapes every second.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "30s",
	"__interval":      "5s",
	"__range":         "5m",
	"__range_s":       "300",
	"__range_ms":      "300000",
}

// grafanaVarRE matches $name, ${name}, ${name:format} and [[name]].
var grafanaVarRE = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// labelValuesRE matches a query variable's label_values(metric, label).
var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\s*\)$`)

// expandGrafana replaces the variables in expr with values (and Grafana's
// built-in ones); a variable the dashboard does not define is an error.
func expandGrafana(expr string, values map[string]string) (string, error) {
	var unknown []string
	out := grafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVarRE.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		if v, ok := values[name]; ok {
			return v
		}
		unknown = append(unknown, name)
		return m
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("%s: undefined variables %v", expr, unknown)
	}
	return out, nil
}

// panelExprs returns every target expression of the dashboard's panels,
// rows' panels included, keyed by "panel title/refId".
func (d grafanaDashboard) panelExprs() map[string]string {
	out := map[string]string{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) != "" {
					out[p.Title+"/"+tg.RefID] = tg.Expr
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// liveCheck is a condition on the running Prometheus that must come true.
type liveCheck struct {
	what string
	cond func() error
}

// TestDashboardAndRulesAgainstRealPrometheus runs the pipeline into Debian's
// Prometheus as in production (the Pushgateway with honor_labels, the
// receiver's monitor port, the receiver's served targets through its /sd;
// the poller's own metrics only through the pipeline) with the rule files
// loaded, then checks that every expression of the Grafana dashboards and
// the rules returns data: each panel query for every value of its
// variables, each variable's label_values, each recording rule and the
// series it records, each alert's condition without its threshold, and
// every series selector any of them reads. It then checks that no alert's
// condition holds while everything is healthy, stops the node exporter and
// expects the target-down alert's expression to return exactly that
// target, pushed, and served in the view of a receiver that only serves.
// It does all of it once per transport (monitoredTransports): on NATS
// Streaming, and on JetStream, where the receiver's Pushgateway output
// reads the shared consumer (role="receiver") and its serving output
// follows the stream (role="follower"), so the JetStream-only metrics
// must return data too.
func TestDashboardAndRulesAgainstRealPrometheus(t *testing.T) {
	t.Parallel()
	requireDebianPrometheus(t)
	dashboards := loadDashboards(t)
	rules := loadRules(t)
	ruleFiles := globModule(t, ruleFilesGlob)
	for _, tr := range monitoredTransports {
		t.Run(tr.name, func(t *testing.T) {
			// Each transport's pipeline and Prometheus are its own.
			t.Parallel()
			checkDashboardAndRules(t, tr, dashboards, rules, ruleFiles)
		})
	}
}

// monitoredTransport is a transport the monitored pipeline runs on.
type monitoredTransport struct {
	name  string // the subtest's
	title string // for the log
	// own are the metrics only this transport's receiver exports: each
	// must be read by a query that is checked to return data.
	own map[string]string
	// noData are the metrics only the other transport's receiver
	// exports: a query that reads one is checked to be accepted, not to
	// return data, and its other selectors still must; noDataWhy says so
	// in the log.
	noData    map[string]string
	noDataWhy string
	// ready are the queries, beyond those of every transport, that must
	// return data before the checks begin.
	ready []string
}

// monitoredTransports are the transports of
// TestDashboardAndRulesAgainstRealPrometheus, in the order it runs them.
var monitoredTransports = []monitoredTransport{
	{name: "stan", title: "NATS Streaming", own: stanOnly, noData: jetStreamOnly, noDataWhy: "JetStream only"},
	{name: "jetstream", title: "JetStream", own: jetStreamOnly, noData: stanOnly, noDataWhy: "NATS Streaming only", ready: []string{
		// The Pushgateway output's connection and the shared consumer
		// it reads; the first delivery pinned it to this receiver.
		`prometheus_streams_stream_connected{job="prometheus_streams_receiver",role="receiver"} == 1`,
		`prometheus_streams_stream_consumer_pending_messages{job="prometheus_streams_receiver",role="receiver"}`,
		`prometheus_streams_stream_consumer_pinned_total{job="prometheus_streams_receiver",role="receiver"} > 0`,
		// The serving output follows the stream on a connection of
		// its own.
		`prometheus_streams_stream_connected{job="prometheus_streams_receiver",role="follower"} == 1`,
	}},
}

// checkDashboardAndRules is TestDashboardAndRulesAgainstRealPrometheus on
// one transport.
func checkDashboardAndRules(t *testing.T, tr monitoredTransport, dashboards []grafanaDashboard, rules []promRule, ruleFiles []string) {
	start := time.Now()
	p := startMonitoredPipeline(t, tr.name, ruleFiles)
	client := newHTTPClient(t)
	all := []*process{p.node, p.poller, p.receiver, p.prom.process}

	// The pipeline has delivered the node target and the poller's own
	// metrics, and Prometheus scrapes the receiver.
	for _, q := range append([]string{
		`up{job="node",instance="node1",publisher="DC1"} == 1`,
		`prometheus_streams_poller_published_total{job="prometheus_streams",instance="DC1",publisher="DC1"} > 0`,
		`prometheus_streams_receiver_last_push_timestamp_seconds{publisher="DC1"}`,
		`push_time_seconds{job="prometheus_streams",instance="DC1",publisher="DC1"}`,
		`up{job="node",instance="node1",publisher="DC1",output="serve"} == 1`,
		`prometheus_streams_serve_scrape_requests_total{outcome="ok"} > 0`,
	}, tr.ready...) {
		waitUntil(t, q, func() error { return promHas(client, p.prom.base, q) }, all...)
	}
	t.Logf("%s: the pipeline and Prometheus ready after %v", tr.title, time.Since(start).Round(time.Millisecond))

	var checks []liveCheck
	seen := map[string]bool{}
	// ownRead are the metrics of tr.own that a check reads and needs
	// data from.
	ownRead := map[string]bool{}
	accepted := 0 // checks that only need Prometheus to accept a query
	// has adds a check that query returns data, and one for each series
	// selector in it (a fallback such as "or vector(0)" must not hide a
	// misspelt metric). A query that reads a metric of tr.noData (on
	// NATS Streaming, of jetStreamOnly; on JetStream, of stanOnly)
	// cannot return data from this pipeline: Prometheus must accept it,
	// and its other selectors must return data.
	has := func(what, query string) {
		other, err := metricsIn(query, tr.noData)
		if err != nil {
			t.Fatalf("%s: %s: %v", what, query, err)
		}
		if !seen[query] {
			seen[query] = true
			if len(other) > 0 {
				t.Logf("%s: reads %v (%s): checked to be accepted, not to return data", what, other, tr.noDataWhy)
				accepted++
				checks = append(checks, liveCheck{what + ": Prometheus accepts " + query, func() error {
					_, err := queryPrometheus(client, p.prom.base, query)
					return err
				}})
			} else {
				own, err := metricsIn(query, tr.own)
				if err != nil {
					t.Fatalf("%s: %s: %v", what, query, err)
				}
				for _, m := range own {
					ownRead[m] = true
				}
				checks = append(checks, liveCheck{what + ": " + query, func() error { return promHas(client, p.prom.base, query) }})
			}
		}
		sels, err := selectors(query)
		if err != nil {
			t.Fatalf("%s: %s: %v", what, query, err)
		}
		for _, s := range sels {
			if other, _ := metricsIn(s, tr.noData); len(other) > 0 {
				continue
			}
			if !seen[s] {
				seen[s] = true
				checks = append(checks, liveCheck{what + ": selector " + s, func() error { return promHas(client, p.prom.base, s) }})
			}
		}
	}

	for _, d := range dashboards {
		if d.SchemaVersion < 39 {
			t.Errorf("dashboard %q: schemaVersion %d, want 39 or later", d.Title, d.SchemaVersion)
		}
		for _, values := range variableValues(t, client, p, d, all) {
			exprs := d.panelExprs()
			for _, key := range slices.Sorted(maps.Keys(exprs)) {
				q, err := expandGrafana(exprs[key], values)
				if err != nil {
					t.Fatalf("dashboard %q panel %s: %v", d.Title, key, err)
				}
				has(fmt.Sprintf("dashboard %q panel %s", d.Title, key), q)
			}
		}
	}

	var recorded, alerts int
	for _, r := range rules {
		if r.Record != "" {
			recorded++
			has("recording rule "+r.Record, r.Expr)
			has("recorded series "+r.Record, seriesSelector(r.Record, r.Labels))
			continue
		}
		alerts++
		q, err := stripThresholds(r.Expr)
		if err != nil {
			t.Fatalf("alert %s: %v", r.Alert, err)
		}
		has("alert "+r.Alert+" without its threshold", q)
	}
	checks = append(checks, liveCheck{"Prometheus evaluates every rule without error", func() error {
		return rulesHealthy(client, p.prom.base, recorded+alerts)
	}})
	// Every metric only this transport exports is read by a query that
	// must return data here.
	for _, name := range slices.Sorted(maps.Keys(tr.own)) {
		if !ownRead[name] {
			t.Errorf("%s (%s, %s only): no query checked for data reads it", name, tr.own[name], tr.title)
		}
	}
	t.Logf("%s: %d live checks, %d of them only accepted (they read %s metrics); %d %s-only metrics checked for data", tr.title, len(checks), accepted, tr.noDataWhy, len(ownRead), tr.title)
	waitAll(t, checks, all...)

	// Healthy: no alert's condition holds.
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		v, err := queryPrometheus(client, p.prom.base, r.Expr)
		if err != nil {
			t.Fatalf("alert %s: %v", r.Alert, err)
		}
		if len(v) > 0 {
			t.Errorf("alert %s: its condition holds in a healthy pipeline: %v", r.Alert, v)
		}
	}

	// A dead target: the alert's full expression names exactly it, and so
	// does the dashboard's count of targets down.
	targetDown := ruleExpr(t, rules, "PrometheusStreamsTargetDown")
	p.node.signal(t, syscall.SIGTERM)
	p.node.wait(t, stopTimeout)
	want := model.LabelSet{"job": "node", "instance": "node1", "publisher": "DC1"}
	waitUntil(t, "PrometheusStreamsTargetDown's expression to return the stopped node target", func() error {
		v, err := queryPrometheus(client, p.prom.base, targetDown)
		if err != nil {
			return err
		}
		if len(v) != 1 || !hasLabels(v[0].Metric, want) {
			return fmt.Errorf("%s returns %v, want one sample labelled %v", targetDown, v, want)
		}
		return nil
	}, p.poller, p.receiver, p.prom.process)
	// The same target served: this Prometheus has it through both
	// outputs, and the alert names it once, as a pushed group. In the view
	// of a Prometheus fed by a receiver that only serves (servedOnly hides
	// the pushed groups) the alert's served half names it, while the rest
	// of DC1 arrives.
	wantServed := maps.Clone(want)
	wantServed["output"] = "serve"
	servedDown, err := servedOnly(targetDown)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "PrometheusStreamsTargetDown's expression, served targets only, to return the stopped node target", func() error {
		v, err := queryPrometheus(client, p.prom.base, servedDown)
		if err != nil {
			return err
		}
		if len(v) != 1 || !hasLabels(v[0].Metric, wantServed) {
			return fmt.Errorf("%s returns %v, want one sample labelled %v", servedDown, v, wantServed)
		}
		return nil
	}, p.poller, p.receiver, p.prom.process)
	for _, d := range dashboards {
		for key, expr := range d.panelExprs() {
			var view func(string) (string, error)
			switch {
			case strings.HasPrefix(key, "Pushed targets down/"):
				view = func(q string) (string, error) { return q, nil }
			case strings.HasPrefix(key, "Served targets down/"):
				view = servedOnly
			default:
				continue
			}
			q, err := expandGrafana(expr, map[string]string{"job": ".*", "publisher": ".*"})
			if err != nil {
				t.Fatal(err)
			}
			if q, err = view(q); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the dashboard's "+key+" to be 1", func() error {
				return promValue(client, p.prom.base, q, 1)
			}, p.poller, p.receiver, p.prom.process)
		}
	}
}

// jetStreamOnly are the metrics only a receiver on JetStream exposes, each
// with why. A receiver on NATS Streaming has no shared consumer, so on
// that transport the panels and alerts that read them have no data:
// TestDashboardAndRulesAgainstRealPrometheus checks there that Prometheus
// accepts those queries, not that they return data (their other
// selectors still must); on JetStream it checks that they return data,
// and that each of these metrics is read by such a query.
// TestDashboardJetStreamOnlyMetricsExist checks that a JetStream receiver
// registers every one of them, so a misspelt name cannot hide behind this
// list. (stream_connected{role="follower"} is not here: the queries that
// read it read role="receiver" too; on JetStream the live test waits for
// it.)
var jetStreamOnly = map[string]string{
	"prometheus_streams_stream_consumer_pending_messages":     "the shared JetStream consumer's state",
	"prometheus_streams_stream_consumer_ack_pending_messages": "the shared JetStream consumer's state",
	"prometheus_streams_stream_consumer_redelivered_messages": "the shared JetStream consumer's state",
	"prometheus_streams_stream_consumer_pinned_total":         "the pinned JetStream consumer's failovers",
	"prometheus_streams_stream_ack_progress_total":            "JetStream in-progress acknowledgements",
	"prometheus_streams_stream_consumer_recreated_total":      "a deleted JetStream consumer created again",
}

// stanOnly are the metrics only a receiver on NATS Streaming exposes, each
// with why: on JetStream, TestDashboardAndRulesAgainstRealPrometheus checks
// that Prometheus accepts the queries that read them, not that they return
// data, as it does for jetStreamOnly on NATS Streaming. It is empty: every
// metric the dashboards and the rules read outside jetStreamOnly is one
// both transports export (the stream connection's metrics are the same
// for both, and the receiver's, the poller's and the serving output's do
// not depend on the transport; messages_replayed_total stays at 0 on
// JetStream, whose follower needs no replay, but is exported), and the
// JetStream run proves it, every such query returning data there.
// TestDashboardSTANOnlyMetricsExist checks that a receiver on NATS
// Streaming registers whatever is added here.
var stanOnly = map[string]string{}

// metricsIn returns the metrics of set that expr reads.
func metricsIn(expr string, set map[string]string) ([]string, error) {
	vss, err := vectorSelectors(expr)
	var out []string
	for _, vs := range vss {
		if _, in := set[vs.Name]; in && !slices.Contains(out, vs.Name) {
			out = append(out, vs.Name)
		}
	}
	return out, err
}

// TestDashboardJetStreamOnlyMetricsExist checks that a receiver on
// JetStream registers every metric the live test lets go without data on
// NATS Streaming, with the label role="receiver" the queries select, and
// that the dashboard and the rules read each of them (a name nothing reads
// any more leaves the list).
func TestDashboardJetStreamOnlyMetricsExist(t *testing.T) {
	reg := promclient.NewRegistry()
	if _, err := stream.NewJSSubscriber(stream.JSOptions{
		URLs: []string{"nats://127.0.0.1:4222"}, Name: "e2e", Stream: "PROMETHEUS", Topic: "prometheus",
	}, nil, reg); err != nil {
		t.Fatal(err)
	}
	checkTransportOnly(t, "jetStreamOnly", "a JetStream receiver", jetStreamOnly, reg)
}

// TestDashboardSTANOnlyMetricsExist is TestDashboardJetStreamOnlyMetricsExist
// for stanOnly, the metrics the live test lets go without data on
// JetStream, and a receiver on NATS Streaming.
func TestDashboardSTANOnlyMetricsExist(t *testing.T) {
	reg := promclient.NewRegistry()
	if _, err := stream.NewSTANSubscriber(stream.STANOptions{
		URLs: []string{"nats://127.0.0.1:4222"}, ClusterID: "e2e", ClientID: "e2e", Channel: "prometheus",
	}, nil, reg); err != nil {
		t.Fatal(err)
	}
	checkTransportOnly(t, "stanOnly", "a NATS Streaming receiver", stanOnly, reg)
}

// checkTransportOnly checks that reg, a receiver's subscriber's, has every
// metric of only (the list called name) with role="receiver", and that the
// dashboards and the rules read each.
func checkTransportOnly(t *testing.T, name, receiver string, only map[string]string, reg *promclient.Registry) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "role" && l.GetValue() == "receiver" {
					registered[f.GetName()] = true
				}
			}
		}
	}
	read := map[string]bool{}
	var exprs []string
	for _, d := range loadDashboards(t) {
		for _, e := range d.panelExprs() {
			q, err := expandGrafana(e, map[string]string{"job": ".*", "publisher": ".*"})
			if err != nil {
				t.Fatal(err)
			}
			exprs = append(exprs, q)
		}
	}
	for _, r := range loadRules(t) {
		exprs = append(exprs, r.Expr)
	}
	for _, q := range exprs {
		ms, err := metricsIn(q, only)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for _, m := range ms {
			read[m] = true
		}
	}
	for _, m := range slices.Sorted(maps.Keys(only)) {
		if !registered[m] {
			t.Errorf("%s (%s): %s registers no such metric with role=\"receiver\"", m, only[m], receiver)
		}
		if !read[m] {
			t.Errorf("%s: neither the dashboards nor the rules read it; take it off %s", m, name)
		}
	}
}

// TestDashboardServedOnly checks the rewrite that hides the pushed groups
// from the monitored pipeline's Prometheus.
func TestDashboardServedOnly(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"up and push_time_seconds", `up{publisher!=""} == 0 unless on (job) push_time_seconds`, `up{output="serve",publisher!=""} == 0 unless on (job) push_time_seconds{output="serve"}`},
		{"other selectors kept", `up == 0 and scrape_duration_seconds`, `up{output="serve"} == 0 and scrape_duration_seconds`},
		{"inside functions", `max_over_time(up[5m])`, `max_over_time(up{output="serve"}[5m])`},
	} {
		t.Run(c.name, func(t *testing.T) { checkRewrite(t, "servedOnly", servedOnly, c.in, c.want) })
	}
}

// servedOnly rewrites expr to read the monitored pipeline's Prometheus as
// if the receiver only served: it gets every group twice, pushed and
// served (output="serve", testdata/prometheus-dashboard.yml.tmpl), and
// restricting up and push_time_seconds to the served copies hides the
// pushed groups from the expression.
func servedOnly(expr string) (string, error) {
	e, err := promqlParser.ParseExpr(expr)
	if err != nil {
		return "", err
	}
	served := labels.MustNewMatcher(labels.MatchEqual, "output", "serve")
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && (vs.Name == "up" || vs.Name == "push_time_seconds") {
			vs.LabelMatchers = append(vs.LabelMatchers, served)
		}
		return nil
	})
	return e.String(), nil
}

// variableValues returns the sets of values to expand the dashboard's
// expressions with: every combination of each query variable's values as
// Prometheus has them and its "All" value. It checks that each
// label_values query finds the metric with that label.
func variableValues(t *testing.T, client *http.Client, p *pipeline, d grafanaDashboard, watch []*process) []map[string]string {
	t.Helper()
	all := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			all[v.Name] = cmp.Or(v.AllValue, ".*")
		}
	}
	sets := []map[string]string{maps.Clone(all)}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(v.Definition))
		if m == nil {
			t.Fatalf("dashboard %q variable %s: %q is not label_values(metric, label)", d.Title, v.Name, v.Definition)
		}
		metric, err := expandGrafana(m[1], all)
		if err != nil {
			t.Fatalf("dashboard %q variable %s: %v", d.Title, v.Name, err)
		}
		label := m[2]
		query := fmt.Sprintf("count by (%s) (%s)", label, metric)
		var values []string
		waitUntil(t, fmt.Sprintf("dashboard %q variable %s: %s", d.Title, v.Name, v.Definition), func() error {
			values = nil
			samples, err := queryPrometheus(client, p.prom.base, query)
			if err != nil {
				return err
			}
			for _, s := range samples {
				if v := s.Metric[model.LabelName(label)]; v != "" {
					values = append(values, string(v))
				}
			}
			if len(values) == 0 {
				return fmt.Errorf("%s: no series with label %s", query, label)
			}
			return nil
		}, watch...)
		t.Logf("dashboard %q variable %s: %v", d.Title, v.Name, values)
		var more []map[string]string
		for _, set := range sets {
			for _, val := range values {
				s := maps.Clone(set)
				s[v.Name] = regexp.QuoteMeta(val)
				more = append(more, s)
			}
		}
		sets = append(sets, more...)
	}
	return sets
}

// waitAll polls every check until each has passed once. It fails the test
// listing those that never passed when waitTimeout is over, or at once
// when one of watch exits.
func waitAll(t *testing.T, checks []liveCheck, watch ...*process) {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	pending := checks
	for {
		var still []liveCheck
		var errs []error
		for _, c := range pending {
			if err := c.cond(); err != nil {
				still = append(still, c)
				errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
			}
		}
		if len(still) == 0 {
			t.Logf("%d checks passed after %v", len(checks), time.Since(start).Round(time.Millisecond))
			return
		}
		for _, p := range watch {
			if err := p.alive(); err != nil {
				t.Fatalf("%v while %d of %d checks had not passed:\n%v", err, len(still), len(checks), errors.Join(errs...))
			}
		}
		if time.Since(start) > waitTimeout {
			t.Fatalf("after %v, %d of %d checks never returned data:\n%v", waitTimeout, len(still), len(checks), errors.Join(errs...))
		}
		pending = still
		<-tick.C
	}
}

// rulesHealthy returns nil once Prometheus has n rules and has evaluated
// each of them without error.
func rulesHealthy(c *http.Client, base string, n int) error {
	p, err := promAPI(c, base)
	if err != nil {
		return err
	}
	res, err := p.Rules(context.Background())
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	var got int
	var errs []error
	for _, g := range res.Groups {
		for _, r := range g.Rules {
			got++
			var name, lastError string
			var health promv1.RuleHealth
			switch r := r.(type) {
			case promv1.RecordingRule:
				name, health, lastError = r.Name, r.Health, r.LastError
			case promv1.AlertingRule:
				name, health, lastError = r.Name, r.Health, r.LastError
			default:
				errs = append(errs, fmt.Errorf("group %s: a rule of type %T", g.Name, r))
				continue
			}
			if health != promv1.RuleHealthGood {
				errs = append(errs, fmt.Errorf("rule %s: health %q %s", name, health, lastError))
			}
		}
	}
	if got != n {
		errs = append(errs, fmt.Errorf("Prometheus has %d rules, the files %d", got, n))
	}
	return errors.Join(errs...)
}

// startMonitoredPipeline starts what startPipeline does, with a receiver
// that also serves its targets (serve_targets) and a Prometheus that also
// scrapes the receiver's monitor port and its served targets, and loads
// ruleFiles. transport is "stan" (NATS Streaming, the daemons on the 1.0
// file) or "jetstream" (an embedded nats-server with JetStream, the
// daemons on testdata/jetstream.yaml.tmpl).
func startMonitoredPipeline(t *testing.T, transport string, ruleFiles []string) *pipeline {
	t.Helper()
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	pgw := testenv.Pushgateway(t, embedded.PushgatewayOptions{Listen: "127.0.0.1:0", Logger: logger})

	ports := testenv.FreePorts(t, 4)
	p := &pipeline{}
	nodeURL := "http://" + hostPort(ports[0]) + "/metrics"
	p.node = startNodeExporter(t, dir, nodeURL)
	switch transport {
	case "stan":
		nats := testenv.Streaming(t, embedded.StreamingOptions{Logger: logger})
		cfg := streamsConfig{ClusterID: nats.ClusterID(), NATSURLs: nats.URL(), PushgatewayURL: pgw.URL(), NodeURL: nodeURL}
		p.poller, p.receiver = startMonitoredDaemons(t, dir, cfg, ports[1], ports[2])
	case "jetstream":
		nats := testenv.NATS(t, embedded.NATSOptions{Logger: logger})
		cfg := jsConfig{Interval: time.Second, NATSURL: nats.URL(), NodeURL: nodeURL, PushgatewayURL: pgw.URL()}
		p.poller, p.receiver = startMonitoredJSDaemons(t, dir, cfg, ports[1], ports[2])
	default:
		t.Fatalf("transport %q: want stan or jetstream", transport)
	}

	pgwURL, err := url.Parse(pgw.URL())
	if err != nil {
		t.Fatal(err)
	}
	p.prom = runPrometheus(t, dir, hostPort(ports[3]), render(t, "prometheus-dashboard.yml.tmpl", dashboardPromConfig{
		PushgatewayHost: pgwURL.Host,
		ReceiverHost:    hostPort(ports[2]),
		RuleFiles:       ruleFiles,
	}))
	return p
}

// monitoredReceiverServe is added to the monitored pipeline's receiver
// file: the receiver pushes and also serves its targets, so the serving
// output's panels and alerts have data. Bounds far below the defaults give
// the dashboard's fill ratios a value that shows.
const monitoredReceiverServe = `serve_targets: true
serve:
  max_groups: 1000
  max_bytes: 64MiB
`

// startMonitoredDaemons runs the poller and the receiver of the built
// binary, each on the 1.0 file filled from cfg, the receiver's with
// monitoredReceiverServe added, and waits until both are connected to NATS
// Streaming.
func startMonitoredDaemons(t *testing.T, dir string, cfg streamsConfig, pollerMon, receiverMon int) (poller, receiver *process) {
	t.Helper()
	start := func(role string, mon int, extra string) *process {
		cfg.MonitorPort = mon
		cfg.LogFile = filepath.Join(dir, role+".log")
		file := writeFile(t, dir, role+".yaml", append(render(t, "prometheus-streams-1.0.yaml.tmpl", cfg), extra...))
		return startProcess(t, dir, role, []string{cfg.LogFile}, binary, role, "--config", file)
	}
	poller = start("poller", pollerMon, "")
	receiver = start("receiver", receiverMon, monitoredReceiverServe)
	waitConnected(t, map[string]int{"poller": pollerMon, "receiver": receiverMon}, poller, receiver)
	return poller, receiver
}

// startMonitoredJSDaemons is startMonitoredDaemons on JetStream: the
// poller and the receiver on testdata/jetstream.yaml.tmpl filled from cfg
// (its Serve left false: the receiver's file gets monitoredReceiverServe,
// serve_targets and the bounds, added instead). The poller creates the
// stream, so it is connected before the receiver starts, which then reads
// the stream with the shared consumer (role="receiver") and follows it for
// the serving output (role="follower").
func startMonitoredJSDaemons(t *testing.T, dir string, cfg jsConfig, pollerMon, receiverMon int) (poller, receiver *process) {
	t.Helper()
	start := func(role string, mon int, extra string) *process {
		cfg.Role, cfg.MonitorPort, cfg.Serve = role, mon, false
		cfg.LogFile = filepath.Join(dir, role+".log")
		file := writeFile(t, dir, role+".yaml", append(render(t, "jetstream.yaml.tmpl", cfg), extra...))
		p := startProcess(t, dir, role, []string{cfg.LogFile}, binary, role, "--config", file)
		waitConnected(t, map[string]int{role: mon}, p)
		return p
	}
	poller = start("poller", pollerMon, "")
	receiver = start("receiver", receiverMon, monitoredReceiverServe)
	return poller, receiver
}

// dashboardPromConfig fills testdata/prometheus-dashboard.yml.tmpl.
type dashboardPromConfig struct {
	PushgatewayHost, ReceiverHost string
	RuleFiles                     []string
}

// loadDashboards reads the Grafana dashboards.
func loadDashboards(t *testing.T) []grafanaDashboard {
	t.Helper()
	var out []grafanaDashboard
	for _, f := range globModule(t, dashboardsGlob) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d grafanaDashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(d.panelExprs()) == 0 {
			t.Fatalf("%s: no panel has a query", f)
		}
		out = append(out, d)
	}
	return out
}

// ruleExpr returns the expression of the alert named name.
func ruleExpr(t *testing.T, rules []promRule, name string) string {
	t.Helper()
	for _, r := range rules {
		if r.name() == name {
			return r.Expr
		}
	}
	t.Fatalf("no rule %s", name)
	return ""
}

// seriesSelector is name{labels}, the labels sorted.
func seriesSelector(name string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteString("{")
		for i, k := range slices.Sorted(maps.Keys(labels)) {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "%s=%q", k, labels[k])
		}
		b.WriteString("}")
	}
	return b.String()
}

// hasLabels reports whether metric has every label of want.
func hasLabels(metric model.Metric, want model.LabelSet) bool {
	for k, v := range want {
		if metric[k] != v {
			return false
		}
	}
	return true
}
