package reload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/output/serve"
	"github.com/choria-io/prometheus-streams/receiver"
)

const serveFile = `monitor_port: 10000
max_age: 1m
receiver_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}
serve_targets: true
serve: {delete_after: %s}
`

// sdTargets counts the targets out's /sd lists.
func sdTargets(t *testing.T, out *serve.Output) int {
	t.Helper()
	rec := httptest.NewRecorder()
	out.SDHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, serve.SDPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/sd: %d %s", rec.Code, rec.Body)
	}
	return strings.Count(rec.Body.String(), `"targets"`)
}

type discard struct{}

func (discard) Done(string, error) {}

func TestReceiverApplierReachesTheServingOutput(t *testing.T) {
	out, err := serve.New(serve.Options{MaxAge: time.Minute, DeleteAfter: time.Hour}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	out.ReplayDone()
	r, err := receiver.New(receiver.Options{MaxAge: time.Minute}, nil, []output.Output{out}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	// A group silent for 90 minutes: past the first delete_after.
	out.Offer(&envelope.Envelope{Job: "node", Instance: "a", ScrapeStart: time.Now().Add(-90 * time.Minute), Outcome: envelope.OutcomeFailure}, discard{})
	if n := sdTargets(t, out); n != 0 {
		t.Fatalf("/sd lists %d targets silent past delete_after", n)
	}
	a := Receiver{Receiver: r, Serve: out}
	cfg, err := config.Parse([]byte(strings.Replace(serveFile, "%s", "2h", 1)), "receiver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	applied, err := a.Apply(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := sdTargets(t, out); n != 1 {
		t.Errorf("/sd lists %d targets after delete_after became 2h (applied %v), want 1", n, applied)
	}
}
