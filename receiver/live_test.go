package receiver

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func TestSetLiveAppliesToTheNextMessage(t *testing.T) {
	e := newEnv(t, Options{PublisherLabel: true, Publishers: map[string][]string{"dc1": {}}}, "")
	m := e.receiver.metrics
	e.publish(t, republish(t, scrape(t, "node", "i1", time.Now(), testenv.TextContentType, []byte("v 1\n")), "dc2"))
	testenv.WaitFor(t, "dc2 to be refused", 5*time.Second, func() bool {
		return testutil.ToFloat64(m.dropped.WithLabelValues(dropPublisherNotAllowed)) >= 1
	})

	// dc2 allowed, and max_age shortened to a minute.
	if err := e.receiver.SetLive(Live{MaxAge: time.Minute, Publishers: map[string][]string{"dc1": {}, "dc2": {"node"}}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, republish(t, scrape(t, "node", "i1", time.Now(), testenv.TextContentType, []byte("v 2\n")), "dc2"))
	e.waitGateway(t, "v", map[string]string{"job": "node", "instance": "i1", "publisher": "dc2"}, 2)
	stale := testutil.ToFloat64(m.dropped.WithLabelValues(dropStale))
	e.publish(t, scrape(t, "node", "i2", time.Now().Add(-2*time.Minute), testenv.TextContentType, []byte("v 3\n")))
	testenv.WaitFor(t, "a scrape older than the new max_age to be dropped", 5*time.Second, func() bool {
		return testutil.ToFloat64(m.dropped.WithLabelValues(dropStale)) > stale
	})
	if got := e.receiver.live.Load().DownAfter; got != 2*time.Minute {
		t.Errorf("down_after = %v, want twice the new max_age", got)
	}
	if err := e.receiver.SetLive(Live{}); err == nil {
		t.Error("a zero max_age was accepted")
	}
}
