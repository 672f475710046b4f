package push

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// gatewayHas reports whether the Pushgateway has a series name with labels.
func (e *env) gatewayHas(name string, labels map[string]string) bool {
	fams, err := testenv.Families(e.gateway + "/metrics")
	if err != nil {
		return false
	}
	_, ok := testenv.Value(fams, name, labels)
	return ok
}

func TestSilentGroupsAreMarkedDownThenDeleted(t *testing.T) {
	t.Parallel()
	// The group's values are in the Pushgateway for down_after only, and
	// the test must see them there beside the package's other tests.
	e := newEnv(t, Options{MaxAge: time.Second, DownAfter: time.Second, DeleteAfter: 2500 * time.Millisecond}, "")
	labels := map[string]string{"job": "node", "instance": "gone"}
	e.publish(t, scrape(t, "node", "gone", time.Now(), testenv.TextContentType, []byte("node_thing 5\n")))
	e.waitGateway(t, "node_thing", labels, 5)

	// Nothing more arrives: the group turns into up 0, its old series gone,
	// still carrying the marker a restarted receiver finds it by.
	e.waitGateway(t, "up", labels, 0)
	e.waitGateway(t, "scrape_samples_scraped", labels, 0)
	if e.gatewayHas("node_thing", labels) {
		t.Fatal("the silent group still shows its last values after being marked down")
	}
	// Later it is deleted altogether.
	testenv.WaitFor(t, "the silent group to be deleted", 10*time.Second, func() bool { return !e.gatewayHas("up", labels) })
	m := e.receiver.metrics
	// The Pushgateway can show the delete before its answer reaches the
	// receiver, which counts it then.
	testenv.WaitFor(t, "the delete to be counted", 5*time.Second, func() bool {
		return testutil.ToFloat64(m.deleted) >= 1 && testutil.ToFloat64(m.groups) == 0
	})
	if testutil.ToFloat64(m.markedDown) != 1 || testutil.ToFloat64(m.deleted) != 1 {
		t.Fatalf("marked down %v, deleted %v; want 1 and 1", testutil.ToFloat64(m.markedDown), testutil.ToFloat64(m.deleted))
	}
	if n := testutil.ToFloat64(m.groups); n != 0 {
		t.Fatalf("groups = %v after the delete, want 0", n)
	}
}

func TestAGroupThatComesBackIsUpAgain(t *testing.T) {
	t.Parallel()
	// A down_after of a second, as TestSilentGroupsAreMarkedDownThenDeleted.
	e := newEnv(t, Options{MaxAge: time.Second, DownAfter: time.Second}, "")
	labels := map[string]string{"job": "node", "instance": "flaky"}
	e.publish(t, scrape(t, "node", "flaky", time.Now(), testenv.TextContentType, []byte("x 1\n")))
	e.waitGateway(t, "x", labels, 1)
	e.waitGateway(t, "up", labels, 0)
	e.publish(t, scrape(t, "node", "flaky", time.Now(), testenv.TextContentType, []byte("x 2\n")))
	e.waitGateway(t, "x", labels, 2)
	e.waitGateway(t, "up", labels, 1)
}

func TestGroupsFromBeforeARestartAreWatchedToo(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, "")
	client, err := pushgateway.New(pushgateway.Options{URL: gw.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	ctx := context.Background()
	// A group an earlier receiver pushed (it has scrape_samples_scraped),
	// and one someone else pushed, which must be left alone.
	ours := pushgateway.GroupingKey{Job: "node", Labels: []pushgateway.Label{{Name: "instance", Value: "old"}}}
	theirs := pushgateway.GroupingKey{Job: "batch", Labels: []pushgateway.Label{{Name: "instance", Value: "cron"}}}
	if err := client.Push(ctx, ours, testenv.TextContentType, []byte("up 1\nscrape_samples_scraped 3\n")); err != nil {
		t.Fatal(err)
	}
	if err := client.Push(ctx, theirs, testenv.TextContentType, []byte("last_run 1\n")); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Options{MaxAge: time.Second, DownAfter: 200 * time.Millisecond, DeleteAfter: 400 * time.Millisecond}, gw.URL())
	testenv.WaitFor(t, "the earlier receiver's group to be deleted", 10*time.Second, func() bool {
		return !e.gatewayHas("up", map[string]string{"job": "node", "instance": "old"})
	})
	if !e.gatewayHas("last_run", map[string]string{"job": "batch", "instance": "cron"}) {
		t.Fatal("a group the receiver did not push was deleted")
	}
}

func TestPublishersAllowList(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, Options{PublisherLabel: true}, "", envSettings{publishers: map[string][]string{"dc1": {"node"}, "dc2": {}}})
	now := time.Now()
	send := func(publisher, job string, v string) {
		msg := scrape(t, job, "i1", now, testenv.TextContentType, []byte("allowed "+v+"\n"))
		// scrape() publishes as dc1; rewrite the publisher by re-encoding.
		e.publish(t, republish(t, msg, publisher))
	}
	send("evil", "node", "1")
	send("dc1", "app", "2")
	send("dc1", "node", "3")
	send("dc2", "anything", "4")
	e.waitGateway(t, "allowed", map[string]string{"job": "node", "publisher": "dc1"}, 3)
	e.waitGateway(t, "allowed", map[string]string{"job": "anything", "publisher": "dc2"}, 4)
	// At least once: under load the server may deliver a message again
	// before its acknowledgement arrives, and every delivery is counted.
	testenv.WaitFor(t, "the refused publisher and job to be counted", 5*time.Second, func() bool {
		return e.receiver.dropped("publisher_not_allowed") >= 1 &&
			e.receiver.dropped("job_not_allowed") >= 1
	})
	if e.gatewayHas("allowed", map[string]string{"publisher": "evil"}) || e.gatewayHas("allowed", map[string]string{"job": "app"}) {
		t.Fatal("a refused scrape reached the Pushgateway")
	}
}

func TestTwoPublishersOnOneGroupAreDetected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, "") // no publisher label: both write node/i1
	now := time.Now()
	e.publish(t, republish(t, scrape(t, "node", "i1", now, testenv.TextContentType, []byte("v 1\n")), "dc1"))
	e.publish(t, republish(t, scrape(t, "node", "i1", now.Add(time.Millisecond), testenv.TextContentType, []byte("v 2\n")), "dc2"))
	testenv.WaitFor(t, "the conflict to be counted", 5*time.Second, func() bool {
		return testutil.ToFloat64(e.receiver.metrics.conflicts) == 1
	})
}

func TestDeleteAfterSetByReloadDeletesGroupsAlreadyDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{MaxAge: time.Second, DownAfter: 200 * time.Millisecond}, "")
	labels := map[string]string{"job": "node", "instance": "gone"}
	e.publish(t, scrape(t, "node", "gone", time.Now(), testenv.TextContentType, []byte("node_thing 5\n")))
	e.waitGateway(t, "up", labels, 0)
	// Without delete_after, a group marked down is forgotten.
	testenv.WaitFor(t, "the marked-down group to be forgotten", 5*time.Second, func() bool {
		return testutil.ToFloat64(e.receiver.metrics.groups) == 0
	})
	if err := e.receiver.SetLive(Live{MaxAge: time.Second, DownAfter: 200 * time.Millisecond, DeleteAfter: 400 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the group marked down before delete_after was set to be deleted", 10*time.Second, func() bool {
		return !e.gatewayHas("up", labels)
	})
	// As in TestSilentGroupsAreMarkedDownThenDeleted, the count follows.
	testenv.WaitFor(t, "the delete to be counted", 5*time.Second, func() bool { return testutil.ToFloat64(e.receiver.metrics.deleted) >= 1 })
	if n := testutil.ToFloat64(e.receiver.metrics.deleted); n != 1 {
		t.Fatalf("deleted = %v, want 1", n)
	}
}
