package push

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/pushgateway"
	"github.com/choria-io/prometheus-streams/receiver"
	"github.com/choria-io/prometheus-streams/stream"
)

// pipe is the receiver in front of a push Output, as the receiver command
// builds them: the tests of this package inject messages into a real
// stream and read the Pushgateway.
type pipe struct {
	*Output
	consumer *receiver.Receiver
	creg     *prometheus.Registry // the consumer's metrics
}

// newPipe builds, without starting, a receiver consuming sub into an Output
// of opts pushing with client. publishers is the receiver's allow-list.
func newPipe(t *testing.T, opts Options, sub stream.Subscriber, client *pushgateway.Client, logger *slog.Logger, publishers map[string][]string) *pipe {
	t.Helper()
	out, err := New(opts, client, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	p := &pipe{Output: out, creg: prometheus.NewRegistry()}
	p.consumer, err = receiver.New(receiver.Options{MaxAge: opts.MaxAge, Publishers: publishers}, sub, []output.Output{out}, logger, p.creg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Run runs the receiver, which runs the output.
func (p *pipe) Run(ctx context.Context) error { return p.consumer.Run(ctx) }

// setLive applies a reload's settings to both, as the reload applier does.
func (p *pipe) setLive(l Live, publishers map[string][]string) error {
	if err := p.consumer.SetLive(receiver.Live{MaxAge: l.MaxAge, Publishers: publishers}); err != nil {
		return err
	}
	return p.SetLive(l)
}

// counter reads one of the receiver's counters, 0 when absent.
func (p *pipe) counter(name, label, value string) float64 {
	fams, err := p.creg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range fams {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || hasLabelValue(m, label, value) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabelValue(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// dropped is the receiver's messages_dropped_total{reason}.
func (p *pipe) dropped(reason string) float64 {
	return p.counter("prometheus_streams_receiver_messages_dropped_total", "reason", reason)
}

// received is the receiver's messages_received_total.
func (p *pipe) received() float64 {
	return p.counter("prometheus_streams_receiver_messages_received_total", "", "")
}

// acked is the receiver's messages_acked_total.
func (p *pipe) acked() float64 {
	return p.counter("prometheus_streams_receiver_messages_acked_total", "", "")
}

// legacy is the receiver's legacy_messages_total.
func (p *pipe) legacy() float64 {
	return p.counter("prometheus_streams_receiver_legacy_messages_total", "", "")
}

// capturingSub is a Subscriber that keeps the handler the receiver
// subscribes with, so a test can hand it a delivery the real server would
// refuse to carry (one larger than its max_payload).
type capturingSub struct {
	stream.Subscriber
	h atomic.Pointer[stream.Handler]
}

// Subscribe implements stream.Subscriber.
func (c *capturingSub) Subscribe(ctx context.Context, h stream.Handler) error {
	c.h.Store(&h)
	return c.Subscriber.Subscribe(ctx, h)
}

// handle calls the receiver's handler, once it subscribed.
func (c *capturingSub) handle(t *testing.T, m stream.Message) {
	t.Helper()
	var h *stream.Handler
	testenv.WaitFor(t, "the receiver to subscribe", 5*time.Second, func() bool { h = c.h.Load(); return h != nil })
	(*h)(m)
}
