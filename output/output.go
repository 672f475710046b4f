// Package output is the contract between the receiver, which consumes and
// validates scrapes, and the outputs it hands them to (the Pushgateway
// output in output/push, the target-serving output in output/serve).
// It holds no code of either side, so each output can be tested alone.
package output

import (
	"context"

	"github.com/choria-io/prometheus-streams/envelope"
)

// Delivery is one delivery of a scrape's message, as one output sees it.
// The output settles it exactly once with Done. Until every output that was
// offered the message has settled it, the receiver does not acknowledge it,
// so a message an output never settles (the process stopped first) is
// delivered again after a restart.
type Delivery interface {
	// Done settles the delivery. reason "" means the output has the scrape
	// (pushed it, or holds it for serving); any other reason means it let
	// the scrape go without having it (superseded, stale, rejected...) and
	// err, when not nil, says why for the log. Safe for concurrent use; it
	// never blocks on the network.
	Done(reason string, err error)
}

// Output takes the scrapes the receiver consumed and validated.
type Output interface {
	// Name is a short lowercase name for logs and metric labels ("push",
	// "serve").
	Name() string
	// Offer hands over a decoded scrape that passed the receiver's checks
	// (decode, max_age, clock skew, publishers). It must not block for
	// long: it is called on the stream's delivery goroutine and, for an
	// output that Replays, concurrently from the replay's; it may be
	// called before Run starts and until Run returns. The output calls
	// d.Done exactly once, now or later. env is the output's to keep and
	// must not be modified; its Payload aliases the message, so an output
	// that keeps it long copies it.
	Offer(env *envelope.Envelope, d Delivery)
	// Replays reports whether the output also takes, at start, a replay of
	// the scrapes the stream still holds of the last max_age (offered with
	// a Delivery that acknowledges nothing). An output that keeps each
	// group's newest scrape in memory wants it, so that a restart does not
	// leave it empty for a scrape interval; one that writes elsewhere and
	// cannot tell what it wrote before the restart must not take it, or it
	// could write an older scrape after a newer one.
	Replays() bool
	// ReplayDone tells an output that Replays that the replay at start has
	// ended, completely or cut short (or that there was none to make):
	// what it holds from now on is what the stream still had. The receiver
	// calls it once, for every output that Replays.
	ReplayDone()
	// Run does the output's own work until ctx is done, then finishes what
	// is under way (settling its deliveries, or leaving them unsettled for
	// redelivery) and returns. The receiver keeps its subscription open
	// until Run returns, so that what is settled during shutdown is still
	// acknowledged. A Run that returns an error before ctx is done stops
	// the receiver.
	Run(ctx context.Context) error
}

// Reasons an output lets a scrape go without having it, for Delivery.Done,
// beside the envelope's own (envelope.Reason) for a body that does not
// inflate. The receiver counts each in
// prometheus_streams_receiver_output_drops_total{output,reason}, and a
// message in prometheus_streams_receiver_messages_dropped_total only when
// no output took it.
const (
	// ReasonStale: the scrape became older than max_age before the output
	// could take it.
	ReasonStale = "stale"
	// ReasonSuperseded: the output has or is taking a newer scrape of the
	// group. (A redelivery of the very scrape it has or takes is not
	// superseded: the output has it.)
	ReasonSuperseded = "superseded"
	// ReasonRejected: the Pushgateway refused the scrape (4xx).
	ReasonRejected = "rejected"
	// ReasonLimit: holding the scrape would pass the serving output's
	// bounds (serve.max_groups, serve.max_bytes).
	ReasonLimit = "limit"
)

// Reasons are the reasons above, for pre-creating label values.
func Reasons() []string {
	return []string{ReasonStale, ReasonSuperseded, ReasonRejected, ReasonLimit}
}
