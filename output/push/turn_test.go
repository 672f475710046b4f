package push

import (
	"context"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// TestTurns runs the output as a JetStream receiver does: a standby
// pushes nothing and settles nothing (the server delivers the scrape again
// to the active receiver), and pushes once Resync begins its turn; after
// Stop it pushes nothing again.
func TestTurns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, "")
	e.receiver.WaitForTurn()
	now := time.Now()
	e.publish(t, scrape(t, "node", "standby", now, testenv.TextContentType, []byte("turn_value 1\n")))
	testenv.WaitFor(t, "the standby to take the scrape up and leave it", 10*time.Second, func() bool {
		return e.receiver.received() == 1 && e.receiver.sched.waiting() == 0 && !e.receiver.sched.busy()
	})
	if e.receiver.acked() != 0 {
		t.Fatal("a standby settled a scrape it did not push")
	}
	if fams, err := testenv.Families(e.gateway + "/metrics"); err != nil || fams["turn_value"] != nil {
		t.Fatalf("a standby pushed (%v)", err)
	}

	e.receiver.Resync(context.Background())
	e.publish(t, scrape(t, "node", "active", now.Add(time.Millisecond), testenv.TextContentType, []byte("turn_value 2\n")))
	e.waitGateway(t, "turn_value", map[string]string{"job": "node", "instance": "active"}, 2)

	e.receiver.Stop()
	e.publish(t, scrape(t, "node", "stopped", now.Add(2*time.Millisecond), testenv.TextContentType, []byte("turn_value 3\n")))
	testenv.WaitFor(t, "the stopped output to take the scrape up and leave it", 10*time.Second, func() bool {
		return e.receiver.received() == 3 && e.receiver.sched.waiting() == 0 && !e.receiver.sched.busy()
	})
	fams, err := testenv.Families(e.gateway + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := testenv.Value(fams, "turn_value", map[string]string{"job": "node", "instance": "stopped"}); ok {
		t.Fatal("an output whose turn ended pushed")
	}
}

// busy reports whether a push of some group is under way .
func (s *scheduler) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.active != nil || g.pending != nil {
			return true
		}
	}
	return false
}
