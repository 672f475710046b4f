package push

import (
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/output"
)

func TestSetLiveAppliesToTheNextMessage(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, Options{PublisherLabel: true}, "", envSettings{publishers: map[string][]string{"dc1": {}}})
	e.publish(t, republish(t, scrape(t, "node", "i1", time.Now(), testenv.TextContentType, []byte("v 1\n")), "dc2"))
	testenv.WaitFor(t, "dc2 to be refused", 5*time.Second, func() bool {
		return e.receiver.dropped("publisher_not_allowed") >= 1
	})

	// dc2 allowed, and max_age shortened to a minute.
	if err := e.receiver.setLive(Live{MaxAge: time.Minute}, map[string][]string{"dc1": {}, "dc2": {"node"}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, republish(t, scrape(t, "node", "i1", time.Now(), testenv.TextContentType, []byte("v 2\n")), "dc2"))
	e.waitGateway(t, "v", map[string]string{"job": "node", "instance": "i1", "publisher": "dc2"}, 2)
	stale := e.receiver.dropped(output.ReasonStale)
	e.publish(t, scrape(t, "node", "i2", time.Now().Add(-2*time.Minute), testenv.TextContentType, []byte("v 3\n")))
	testenv.WaitFor(t, "a scrape older than the new max_age to be dropped", 5*time.Second, func() bool {
		return e.receiver.dropped(output.ReasonStale) > stale
	})
	if got := e.receiver.live.Load().DownAfter; got != 2*time.Minute {
		t.Errorf("down_after = %v, want twice the new max_age", got)
	}
	if err := e.receiver.setLive(Live{}, nil); err == nil {
		t.Error("a zero max_age was accepted")
	}
}
