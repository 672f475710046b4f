package stream

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	natsd "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// jsCluster starts three nats-servers forming one JetStream cluster.
func jsCluster(t *testing.T) []*embedded.NATS {
	t.Helper()
	ports := testenv.FreePorts(t, 6)
	routes := make([]*url.URL, 3)
	for i := range routes {
		routes[i] = &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[3+i]))}
	}
	servers := make([]*embedded.NATS, 3)
	started := make(chan error, 3)
	for i := range servers {
		go func() {
			n, err := embedded.StartNATS(embedded.NATSOptions{
				Port: ports[i], ServerName: fmt.Sprint("n", i), StoreDir: t.TempDir(),
				Configure: func(o *natsd.Options) {
					o.Cluster.Name, o.Cluster.Host, o.Cluster.Port = "central", "127.0.0.1", ports[3+i]
					o.Routes = routes
				},
			})
			servers[i] = n
			started <- err
		}()
	}
	for range servers {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range servers {
		t.Cleanup(n.Shutdown)
	}
	return servers
}

// TestJetStreamClusterLeaderChange runs the stream with three replicas on a
// three-server cluster and takes its leader down: publishing and consuming
// go on through the new leader with no action of ours.
func TestJetStreamClusterLeaderChange(t *testing.T) {
	t.Parallel()
	servers := jsCluster(t)
	o := jsOptions(servers[0], "poller")
	o.URLs = []string{servers[0].URL(), servers[1].URL(), servers[2].URL()}
	o.Create.Replicas = 3
	testenv.WaitFor(t, "the cluster's JetStream meta leader", 20*time.Second, func() bool {
		for _, n := range servers {
			if n.Server().JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	p := startJSPublisher(t, o)
	// Placing three replicas on a cluster that has just formed takes a
	// few seconds more than jsPublish waits for a stream.
	testenv.WaitFor(t, "the stream with three replicas", 30*time.Second, func() bool { return p.MaxPayload() > 0 && streamExists(p) })
	jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: "before"}, "before")

	c := newJSCollector()
	so := o
	so.Name = "receiver"
	sub, err := NewJSSubscriber(so, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, c.handle) })
	testenv.WaitFor(t, "the first message", 10*time.Second, func() bool { return c.count() == 1 })

	s := publishersStream(t, p)
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream replicas %d, cluster %+v; want 3 replicas with a leader", info.Config.Replicas, info.Cluster)
	}
	leader := info.Cluster.Leader
	for _, n := range servers {
		if n.Server().Name() == leader {
			n.Shutdown()
		}
	}
	// Each publish is retried until stored, as the poller's outbox does.
	for i := range 5 {
		k := Key{Publisher: "dc1", Job: "j", Instance: fmt.Sprint("after", i)}
		testenv.WaitFor(t, "a publish through the new leader", 30*time.Second, func() bool {
			done := make(chan error, 1)
			if p.Publish(k, []byte(fmt.Sprint("after", i)), func(err error) { done <- err }) != nil {
				return false
			}
			return <-done == nil
		})
	}
	testenv.WaitFor(t, "the messages published after the leader went", 30*time.Second, func() bool { return c.count() >= 6 })
	info, err = s.Info(context.Background())
	if err == nil && info.Cluster != nil && info.Cluster.Leader == leader {
		t.Fatalf("the stream's leader is still %s", leader)
	}
}
