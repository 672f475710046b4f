package push

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// uncheckedGateway starts a Pushgateway run with
// --push.disable-consistency-check: it takes any push, and one
// inconsistent push breaks its /metrics.
func uncheckedGateway(t *testing.T) *embedded.Pushgateway {
	t.Helper()
	return testenv.Pushgateway(t, embedded.PushgatewayOptions{DisableConsistencyCheck: true})
}

func (e *env) dropped(families bool, reason string) float64 {
	if families {
		return testutil.ToFloat64(e.receiver.metrics.familiesDropped.WithLabelValues(reason))
	}
	return testutil.ToFloat64(e.receiver.metrics.seriesDropped.WithLabelValues(reason))
}

func TestConsistencyKeepsThePushgatewayReadable(t *testing.T) {
	t.Parallel()
	gw := uncheckedGateway(t)
	var logs testenv.SyncBuffer
	e := newEnvWith(t, Options{}, gw.URL(), envSettings{logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	now := time.Now()
	job := func(j string) map[string]string { return map[string]string{"job": j, "instance": "i"} }

	e.publish(t, scrape(t, "a", "i", now, testenv.TextContentType, []byte(
		"# TYPE x counter\nx 1\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\nkeep_a 1\n")))
	e.waitGateway(t, "keep_a", job("a"), 1)
	// b: x with another type, and a family named like a's histogram's
	// count. c: a series twice. d: a histogram and a family named like its
	// count in one scrape.
	e.publish(t, scrape(t, "b", "i", now, testenv.TextContentType, []byte("# TYPE x gauge\nx 2\n# TYPE h_count gauge\nh_count 5\nkeep_b 2\n")))
	e.publish(t, scrape(t, "c", "i", now, testenv.TextContentType, []byte("dup{a=\"1\"} 1\ndup{a=\"1\"} 2\nkeep_c 3\n")))
	e.publish(t, scrape(t, "d", "i", now, testenv.TextContentType, []byte(
		"# TYPE hh_count gauge\nhh_count 9\n# TYPE hh histogram\nhh_bucket{le=\"+Inf\"} 1\nhh_sum 1\nkeep_d 4\n")))

	// The rest of each offending scrape arrives, up included, and
	// /metrics stays readable (waitGateway reads it).
	for j, v := range map[string]float64{"b": 2, "c": 3, "d": 4} {
		e.waitGateway(t, "keep_"+j, job(j), v)
		e.waitGateway(t, "up", job(j), 1)
	}
	e.waitGateway(t, "dup", map[string]string{"job": "c", "a": "1"}, 1) // the first is kept
	if e.gatewayHas("x", job("b")) || e.gatewayHas("h_count", job("b")) || e.gatewayHas("hh_count", job("d")) {
		t.Fatal("a clashing family reached the Pushgateway")
	}
	fams, err := testenv.Families(e.gateway + "/metrics")
	if err != nil || fams["hh"].GetType() != dto.MetricType_HISTOGRAM || len(fams["hh"].GetMetric()) != 1 {
		t.Fatalf("d's histogram hh, which comes first, did not arrive: %v %v", fams["hh"], err)
	}
	for _, c := range []struct {
		families bool
		reason   string
		want     float64
	}{{true, clashType, 1}, {true, clashName, 2}, {false, seriesDuplicate, 1}, {false, seriesInvalid, 0}} {
		if got := e.dropped(c.families, c.reason); got != c.want {
			t.Errorf("dropped %s = %v, want %v", c.reason, got, c.want)
		}
	}

	// One warning for the three offending scrapes, then debug lines.
	const msg = "left parts of a scrape out of its push"
	if warn, debug := strings.Count(logs.String(), "level=WARN msg=\""+msg), strings.Count(logs.String(), "level=DEBUG msg=\""+msg); warn != 1 || debug != 2 {
		t.Errorf("%d warnings and %d debug lines about what was left out, want 1 and 2:\n%s", warn, debug, logs.String())
	}
	if !strings.Contains(logs.String(), "holder_type=") {
		t.Errorf("the log does not name the holder's type:\n%s", logs.String())
	}

	// a alone holds x: it may change its type, and then b's gauge fits.
	e.publish(t, scrape(t, "a", "i", now.Add(time.Second), testenv.TextContentType, []byte("# TYPE x gauge\nx 7\nkeep_a 1\n")))
	e.waitGateway(t, "x", job("a"), 7)
	e.publish(t, scrape(t, "b", "i", now.Add(time.Second), testenv.TextContentType, []byte("# TYPE x gauge\nx 8\nkeep_b 2\n")))
	e.waitGateway(t, "x", job("b"), 8)
	if got := e.dropped(true, clashType); got != 1 {
		t.Errorf("type clashes = %v after a changed its own type, want still 1", got)
	}

	// The premise: this Pushgateway does not protect itself. A clash
	// pushed past the receiver breaks /metrics.
	client, err := pushgateway.New(pushgateway.Options{URL: gw.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	if err := client.Push(context.Background(), pushgateway.GroupingKey{Job: "z"}, testenv.TextContentType, []byte("# TYPE x counter\nx 1\n")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the unchecked clash to break /metrics", 10*time.Second, func() bool {
		_, err := testenv.Families(e.gateway + "/metrics")
		return err != nil
	})
}

func TestConsistencyKnowsWhatWasPushedBeforeTheStart(t *testing.T) {
	t.Parallel()
	gw := uncheckedGateway(t)
	client, err := pushgateway.New(pushgateway.Options{URL: gw.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	// An earlier receiver's group, and one someone else pushed.
	old := pushgateway.GroupingKey{Job: "node", Labels: []pushgateway.Label{{Name: "instance", Value: "old"}}}
	if err := client.Push(context.Background(), old, testenv.TextContentType, []byte("# TYPE x counter\nx 1\n# TYPE up gauge\nup 1\n# TYPE scrape_samples_scraped gauge\nscrape_samples_scraped 1\n")); err != nil {
		t.Fatal(err)
	}
	if err := client.Push(context.Background(), pushgateway.GroupingKey{Job: "batch"}, testenv.TextContentType, []byte("# TYPE last_run gauge\nlast_run 1\n")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the earlier groups in the Pushgateway", 10*time.Second, func() bool {
		fams, err := testenv.Families(gw.URL() + "/metrics")
		return err == nil && fams["x"] != nil && fams["last_run"] != nil
	})

	e := newEnv(t, Options{}, gw.URL())
	labels := map[string]string{"job": "node", "instance": "new"}
	e.publish(t, scrape(t, "node", "new", time.Now(), testenv.TextContentType, []byte("# TYPE x gauge\nx 2\n# TYPE last_run counter\nlast_run 5\nkeep 1\n")))
	e.waitGateway(t, "keep", labels, 1)
	e.waitGateway(t, "up", labels, 1)
	if e.gatewayHas("x", labels) || e.gatewayHas("last_run", labels) {
		t.Fatal("a family clashing with one pushed before the start reached the Pushgateway")
	}
	if got := e.dropped(true, clashType); got != 2 {
		t.Fatalf("type clashes = %v, want 2", got)
	}
	// The earlier receiver's group pushed again without x releases it.
	e.publish(t, scrape(t, "node", "old", time.Now(), testenv.TextContentType, []byte("keep 3\n")))
	e.waitGateway(t, "keep", map[string]string{"job": "node", "instance": "old"}, 3)
	// The Pushgateway shows the push before its answer reaches the
	// receiver, which releases x then: wait for it to settle the push.
	testenv.WaitFor(t, "the earlier receiver's group's push settled", 5*time.Second, func() bool { return e.receiver.acked() >= 2 })
	e.publish(t, scrape(t, "node", "new", time.Now().Add(time.Second), testenv.TextContentType, []byte("# TYPE x gauge\nx 2\nkeep 1\n")))
	e.waitGateway(t, "x", labels, 2)
}
