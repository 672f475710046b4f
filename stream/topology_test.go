package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	natsd "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// The tests of this file run the topologies docs describe, with several
// nats-servers in one process: a DC server that is a leaf node of a
// central one, over a link the test cuts and restores (linkProxy), as a
// WAN link between a data centre and the centre goes down and comes back.

const topologyGroups = 3

// topologyKey is group g's key; its payloads are "g<g>-<seq>".
func topologyKey(g int) Key {
	return Key{Publisher: "dc1", Job: "node", Instance: fmt.Sprintf("10.0.0.%d:9100", g)}
}

func topologyPayload(g, seq int) string { return fmt.Sprintf("g%d-%d", g, seq) }

// topologyOptions are the options of a component connected to n.
func topologyOptions(n *embedded.NATS, name, streamName, domain string) JSOptions {
	return JSOptions{
		URLs: []string{n.URL()}, Name: name, Stream: streamName, Domain: domain, Topic: "prometheus",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		AckWait: 2 * time.Second, PinnedTTL: 2 * time.Second,
	}
}

// startCentral starts a JetStream server of domain "central" that accepts
// leaf nodes, and returns it with its leaf node address.
func startCentral(t *testing.T) (*embedded.NATS, string) {
	t.Helper()
	var opts *natsd.Options
	n := testenv.NATS(t, embedded.NATSOptions{ServerName: "central", Domain: "central", Configure: func(o *natsd.Options) {
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", -1
		// Leaf nodes would otherwise learn the listener's own address
		// and reconnect around the cut link.
		o.LeafNode.NoAdvertise = true
		opts = o
	}})
	// The server writes the port it listens on back into its options
	// before it is ready for connections.
	return n, fmt.Sprintf("127.0.0.1:%d", opts.LeafNode.Port)
}

// startDC starts the DC's server, a leaf node of the server behind link;
// domain "" disables its JetStream.
func startDC(t *testing.T, link *linkProxy, domain string) *embedded.NATS {
	t.Helper()
	remote, err := url.Parse("nats://" + link.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return testenv.NATS(t, embedded.NATSOptions{ServerName: "dc1", Domain: domain, Configure: func(o *natsd.Options) {
		o.JetStream = domain != ""
		o.LeafNode.ReconnectInterval = 50 * time.Millisecond
		o.LeafNode.Remotes = []*natsd.RemoteLeafOpts{{URLs: []*url.URL{remote}}}
	}})
}

// centralInterest is a subject the centre subscribes to (its domain's
// JetStream API), so the DC server has interest in it while linked.
const centralInterest = "$JS.central.API.INFO"

// waitLinked waits until the link is up on both sides and the DC server
// knows the centre's subscriptions.
func waitLinked(t *testing.T, central, dc *embedded.NATS) {
	t.Helper()
	testenv.WaitFor(t, "the leaf node link up", 10*time.Second, func() bool {
		return central.Server().NumLeafNodes() == 1 && dc.Server().NumLeafNodes() == 1 &&
			dc.Server().GlobalAccount().Interest(centralInterest) > 0
	})
}

// waitCut waits until the link is down on both sides and the DC server
// has dropped the centre's subscriptions: nats-server stops counting a
// leaf node connection before it removes them, and a message routed to
// the closed connection in between would be lost rather than refused.
func waitCut(t *testing.T, central, dc *embedded.NATS) {
	t.Helper()
	testenv.WaitFor(t, "the leaf node link down", 10*time.Second, func() bool {
		return central.Server().NumLeafNodes() == 0 && dc.Server().NumLeafNodes() == 0 &&
			dc.Server().GlobalAccount().Interest(centralInterest) == 0
	})
}

// publishOnce publishes msg on key's group and returns the outcome of
// its acknowledgement.
func publishOnce(p *JSPublisher, key Key, msg string) error {
	done := make(chan error, 1)
	if err := p.Publish(key, []byte(msg), func(err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}

// orderLog records, per group, the sequence numbers of the payloads
// delivered, and acknowledges every delivery.
type orderLog struct {
	mu   sync.Mutex
	seqs map[int][]int
	bad  []string
}

func newOrderLog() *orderLog { return &orderLog{seqs: map[int][]int{}} }

func (l *orderLog) handle(m Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var g, seq int
	if _, err := fmt.Sscanf(string(m.Data()), "g%d-%d", &g, &seq); err != nil {
		l.bad = append(l.bad, string(m.Data()))
	} else {
		l.seqs[g] = append(l.seqs[g], seq)
	}
	_ = m.Ack()
}

// reached reports whether every group's latest delivery is seq.
func (l *orderLog) reached(seq int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for g := range topologyGroups {
		s := l.seqs[g]
		if len(s) == 0 || s[len(s)-1] != seq {
			return false
		}
	}
	return true
}

// check fails the test when a group's deliveries go back in time, or
// (with allowed) hold a sequence number outside allowed.
func (l *orderLog) check(t *testing.T, who string, allowed ...int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.bad) > 0 {
		t.Errorf("%s: payloads not of the form g<group>-<seq>: %q", who, l.bad)
	}
	for g := range topologyGroups {
		s := l.seqs[g]
		if !slices.IsSorted(s) {
			t.Errorf("%s: group %d delivered an older scrape after a newer one: %v", who, g, s)
		}
		for _, seq := range s {
			if len(allowed) > 0 && !slices.Contains(allowed, seq) {
				t.Errorf("%s: group %d delivered %d, which was never stored (deliveries %v)", who, g, seq, s)
			}
		}
	}
}

// TestLeafNodeTopology: pollers connect to a DC server that is a leaf node
// of the central one and publish into the central stream through the
// central domain's API; a receiver consumes it at the centre. While the
// link is down publishes fail, as the poller's outbox expects; once it is
// back, each group's newest scrape is published and delivered, and no
// group's deliveries go back in time.
func TestLeafNodeTopology(t *testing.T) {
	t.Parallel()
	central, leafAddr := startCentral(t)
	link := newLinkProxy(t, leafAddr)
	dc := startDC(t, link, "")
	waitLinked(t, central, dc)

	po := topologyOptions(dc, "poller-dc1", "PROMETHEUS", "central")
	po.Create = &StreamSettings{MaxAge: time.Hour, Storage: jetstream.FileStorage}
	p := startJSPublisher(t, po)
	for g := range topologyGroups {
		jsPublish(t, p, topologyKey(g), topologyPayload(g, 1))
	}

	log := newOrderLog()
	sub, err := NewJSSubscriber(topologyOptions(central, "receiver", "PROMETHEUS", ""), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, log.handle) })
	testenv.WaitFor(t, "every group's first scrape at the centre", 10*time.Second, func() bool { return log.reached(1) })

	link.cut()
	waitCut(t, central, dc)
	// Each publish fails only after nats.go's retries of no responders,
	// so they run at once.
	const newest = 4
	var wg sync.WaitGroup
	for seq := 2; seq <= newest; seq++ {
		for g := range topologyGroups {
			wg.Go(func() {
				if err := publishOnce(p, topologyKey(g), topologyPayload(g, seq)); !errors.Is(err, ErrNoStream) {
					t.Errorf("publish %s with the link down: %v, want ErrNoStream", topologyPayload(g, seq), err)
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	link.restore()
	waitLinked(t, central, dc)
	// The outbox keeps each group's newest scrape and publishes it again
	// until it is stored.
	for g := range topologyGroups {
		testenv.WaitFor(t, "the newest scrape stored at the centre", 10*time.Second, func() bool {
			return publishOnce(p, topologyKey(g), topologyPayload(g, newest)) == nil
		})
	}
	testenv.WaitFor(t, "every group's newest scrape at the centre", 10*time.Second, func() bool { return log.reached(newest) })
	log.check(t, "receiver", 1, newest)
}

// TestStreamSourcingTopology: pollers publish into a stream of the DC's
// own JetStream domain, which buffers while the link to the centre is
// down; the central stream, made by an operator, sources it across the
// domains and keeps one message per subject. The receiver's consumer and
// follower see each group's newest scrape once the link is back, and no
// group's deliveries go back in time.
func TestStreamSourcingTopology(t *testing.T) {
	t.Parallel()
	central, leafAddr := startCentral(t)
	link := newLinkProxy(t, leafAddr)
	dc := startDC(t, link, "dc1")
	waitLinked(t, central, dc)

	po := topologyOptions(dc, "poller-dc1", "PROMETHEUS_DC1", "dc1")
	po.Create = &StreamSettings{}
	p := startJSPublisher(t, po)
	for g := range topologyGroups {
		jsPublish(t, p, topologyKey(g), topologyPayload(g, 1))
	}

	// The operator's central stream, as `nats stream add` makes it.
	js := testenv.JetStream(t, central.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	centralStream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "PROMETHEUS", MaxMsgsPerSubject: 1,
		Sources: []*jetstream.StreamSource{{
			Name: "PROMETHEUS_DC1", External: &jetstream.ExternalStream{APIPrefix: "$JS.dc1.API"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	ro := topologyOptions(central, "receiver", "PROMETHEUS", "")
	subLog, followLog := newOrderLog(), newOrderLog()
	sub, err := NewJSSubscriber(ro, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, subLog.handle) })
	f, err := NewJSFollower(ro, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return f.Subscribe(ctx, followLog.handle) })
	testenv.WaitFor(t, "every group's first scrape at the centre", 10*time.Second, func() bool {
		return subLog.reached(1) && followLog.reached(1)
	})

	link.cut()
	waitCut(t, central, dc)
	const newest = 5
	for seq := 2; seq <= newest; seq++ {
		for g := range topologyGroups {
			jsPublish(t, p, topologyKey(g), topologyPayload(g, seq))
		}
	}

	// Nothing crossed the cut link: the centre still holds the first.
	for g := range topologyGroups {
		m, err := centralStream.GetLastMsgForSubject(ctx, Subject("prometheus", topologyKey(g)))
		if err != nil || string(m.Data) != topologyPayload(g, 1) {
			t.Fatalf("with the link down the central stream holds %v (err %v) for group %d, want %s", m, err, g, topologyPayload(g, 1))
		}
	}

	link.restore()
	testenv.WaitFor(t, "every group's newest scrape at the centre", 14*time.Second, func() bool {
		return subLog.reached(newest) && followLog.reached(newest)
	})
	subLog.check(t, "receiver")
	followLog.check(t, "follower")

	info, err := centralStream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != topologyGroups || info.State.NumSubjects != topologyGroups {
		t.Fatalf("the central stream holds %d messages on %d subjects, want one on each of %d", info.State.Msgs, info.State.NumSubjects, topologyGroups)
	}
	for g := range topologyGroups {
		m, err := centralStream.GetLastMsgForSubject(ctx, Subject("prometheus", topologyKey(g)))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(m.Data); got != topologyPayload(g, newest) {
			t.Errorf("the central stream holds %s for group %d, want %s", got, g, topologyPayload(g, newest))
		}
	}
}

// linkProxy forwards TCP connections from a loopback port of its own to
// target. cut closes every connection and refuses new ones until restore:
// a link that goes down and comes back, deterministically, while the
// servers on both sides keep running.
type linkProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]struct{}
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the address to connect to instead of target.
func (p *linkProxy) Addr() string { return p.ln.Addr().String() }

func (p *linkProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.forward(in)
	}
}

func (p *linkProxy) forward(in net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	up := p.up
	p.mu.Unlock()
	if !up {
		_ = in.Close()
		return
	}
	out, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	p.mu.Lock()
	if !p.up {
		p.mu.Unlock()
		_, _ = in.Close(), out.Close()
		return
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		defer p.wg.Done()
		_, _ = io.Copy(dst, src)
		p.drop(in, out)
	}
	p.wg.Add(2)
	go pipe(out, in)
	go pipe(in, out)
}

func (p *linkProxy) drop(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// cut closes every forwarded connection and refuses new ones.
func (p *linkProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = false
	p.closeAll()
}

// closeAll closes every forwarded connection; p.mu is held.
func (p *linkProxy) closeAll() {
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// restore forwards new connections again.
func (p *linkProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = true
}

func (p *linkProxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}
