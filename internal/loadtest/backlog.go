package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/pushgateway"
	"github.com/choria-io/prometheus-streams/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	stan "github.com/nats-io/stan.go"
)

// rawPUTs pushes the scrape bodies straight to the Pushgateway, as fast as
// Concurrency clients can, into the same groups.
func (b *bench) rawPUTs(ctx context.Context) error {
	total := b.backlogRounds() * b.opts.Targets
	rate, n, timedOut, err := b.putAll(ctx, "the sample body", b.opts.Sample, textContentType, total)
	if err != nil {
		return err
	}
	b.res.RawPUTs, b.res.RawPUTRate, b.res.RawTimedOut = n, rate, timedOut
	// The same scrape as the receiver pushes it (delimited protobuf), to
	// show what the Pushgateway alone can take of the receiver's format.
	pb, err := protobufBody(b.opts.Sample)
	if err != nil {
		return err
	}
	b.res.RawProtoPUTRate, _, _, err = b.putAll(ctx, "its protobuf form", pb, protobufContentType, total)
	return err
}

// putAll PUTs body into the groups, total times in all (round robin over
// the targets) from Concurrency clients, and returns the rate, how many
// were done and whether PhaseTimeout cut it short.
func (b *bench) putAll(ctx context.Context, what string, body []byte, contentType string, total int) (float64, int, bool, error) {
	o := b.opts
	b.progress("raw PUTs: %d PUTs of %s from %d clients", total, what, o.Concurrency)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency}, Timeout: time.Minute}
	pctx, cancel := context.WithTimeout(ctx, o.PhaseTimeout)
	defer cancel()
	var next atomic.Int64
	var done atomic.Int64
	errs := make([]error, o.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.Concurrency {
		wg.Go(func() {
			for {
				n := next.Add(1) - 1
				if n >= int64(total) || pctx.Err() != nil {
					return
				}
				key := pushgateway.GroupingKey{Job: job, Labels: []pushgateway.Label{{Name: "instance", Value: instance(int(n) % o.Targets)}}}
				if err := put(pctx, client, b.pgw.URL()+key.Path(), body, contentType); err != nil {
					if pctx.Err() == nil {
						errs[w] = err
					}
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, false, fmt.Errorf("raw PUTs: %w", err)
	}
	n := int(done.Load())
	return float64(n) / elapsed.Seconds(), n, n < total, nil
}

func put(ctx context.Context, c *http.Client, url string, body []byte, contentType string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	discard(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: HTTP %s", url, resp.Status)
	}
	return nil
}

func (b *bench) backlogRounds() int {
	return (b.opts.Backlog + b.opts.Targets - 1) / b.opts.Targets
}

// drain publishes a backlog while no receiver runs, then starts one and
// times it through the backlog.
func (b *bench) drain(ctx context.Context) error {
	o := b.opts
	rounds := b.backlogRounds()
	total := rounds * o.Targets
	if b.transport == TransportJetStream {
		b.progress("backlog: publishing %d messages (one each to %d groups, as the stream keeps one per subject) with no receiver running", total, total)
		if err := b.publishJSBacklog(ctx, total); err != nil {
			return err
		}
		// The later phases find the Pushgateway holding the targets'
		// groups only.
		defer func() {
			if err := b.deleteGroups(ctx, o.Targets, total); err != nil {
				b.progress("backlog: %v", err)
			}
		}()
	} else {
		b.progress("backlog: publishing %d messages (%d rounds over %d targets) with no receiver running", total, rounds, o.Targets)
		if err := b.publishBacklog(ctx, rounds); err != nil {
			return err
		}
	}
	b.tr.BacklogMessages = total
	b.resetPuts()
	cfg, port, err := b.writeConfig(b.name("receiver-2"))
	if err != nil {
		return err
	}
	start := time.Now()
	recv, err := startDaemon(ctx, o.Executable, o.WorkDir, b.name("receiver-2"), "receiver", cfg, port, readyz)
	if err != nil {
		return err
	}
	defer func() {
		if recv != nil {
			recv.stop()
		}
	}()
	b.progress("drain: a receiver started %s after the backlog was published", time.Since(start).Round(time.Millisecond))
	var profiled sync.WaitGroup
	var profErr error
	if o.ProfileDir != "" {
		secs := max(1, int(math.Ceil(float64(total)/max(b.res.RawPUTRate, 1))))
		profiled.Go(func() {
			profErr = recv.profile(ctx, secs, filepath.Join(o.ProfileDir, b.name("receiver-drain.cpu.pprof")))
		})
	}
	c0, err := recv.cpu()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.PhaseTimeout)
	for {
		fams, err := recv.families(ctx)
		if err != nil {
			return err
		}
		acked, _ := sum(fams, "prometheus_streams_receiver_messages_acked_total", nil)
		if lag, ok := sum(fams, "prometheus_streams_receiver_lag_seconds", nil); ok {
			b.tr.DrainMaxLag = max(b.tr.DrainMaxLag, lag)
		}
		b.tr.DrainStale, _ = sum(fams, "prometheus_streams_receiver_messages_dropped_total", map[string]string{"reason": "stale"})
		b.tr.Drained = int(acked)
		if int(acked) >= total {
			break
		}
		if time.Now().After(deadline) {
			b.tr.DrainTimedOut = true
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	c1, err := recv.cpu()
	if err != nil {
		return err
	}
	first, last := b.firstPut.Load(), b.lastPut.Load()
	b.tr.DrainPushes = int(b.puts.Load())
	if b.tr.DrainTimedOut {
		last = time.Now().UnixNano()
	}
	if first == 0 { // nothing pushed
		first = start.UnixNano()
	}
	b.tr.DrainSeconds = time.Duration(last - first).Seconds()
	if b.tr.Drained > 0 {
		b.tr.DrainCPUPerMsg = seconds((c1 - c0) / float64(b.tr.Drained))
	}
	profiled.Wait()
	if o.ProfileDir != "" {
		if err := recv.save(ctx, "/debug/pprof/heap", filepath.Join(o.ProfileDir, b.name("receiver-drain.heap.pprof"))); err != nil {
			return err
		}
	}
	b.tr.DrainPeakRSS = recv.stop()
	recv = nil
	return profErr
}

// publishBacklog publishes rounds scrapes of every target, newest last,
// encoded as the poller encodes them.
func (b *bench) publishBacklog(ctx context.Context, rounds int) error {
	o := b.opts
	codec, payload, err := b.payload()
	if err != nil {
		return err
	}
	sc, err := stan.Connect(b.nats.ClusterID(), "bench-backlog", stan.NatsURL(b.nats.URL()), stan.MaxPubAcksInflight(1024))
	if err != nil {
		return fmt.Errorf("backlog: connect: %w", err)
	}
	defer func() { _ = sc.Close() }()
	base := time.Now()
	acks := make(chan error, rounds*o.Targets)
	for r := range rounds {
		for i := range o.Targets {
			msg, err := backlogMessage(i, base.Add(time.Duration(r)*time.Millisecond), codec, payload)
			if err != nil {
				return err
			}
			if _, err := sc.PublishAsync(channel, msg, func(_ string, err error) { acks <- err }); err != nil {
				return fmt.Errorf("backlog: publish: %w", err)
			}
		}
	}
	for range rounds * o.Targets {
		select {
		case err := <-acks:
			if err != nil {
				return fmt.Errorf("backlog: publish: %w", err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// backlogMessage is a scrape of instance(i) started at start, encoded as
// the poller encodes it.
func backlogMessage(i int, start time.Time, codec envelope.Codec, payload []byte) ([]byte, error) {
	msg, err := envelope.Append(nil, &envelope.Envelope{
		Job: job, Instance: instance(i), Publisher: publisher,
		ScrapeStart:    start,
		ScrapeDuration: time.Millisecond,
		Outcome:        envelope.OutcomeSuccess,
		ContentType:    exporterContentType,
		Codec:          codec,
		Payload:        payload,
	})
	if err != nil {
		return nil, fmt.Errorf("backlog: %w", err)
	}
	return msg, nil
}

// publishJSBacklog publishes total scrapes to the JetStream stream, each
// to a group (subject) of its own, instance(0) to instance(total-1),
// encoded as the poller encodes them: the stream keeps one message per
// subject, so a backlog of total messages needs as many subjects. The
// poller of the steady phase created the stream.
func (b *bench) publishJSBacklog(ctx context.Context, total int) error {
	codec, payload, err := b.payload()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(b.js.URL(), nats.Name("bench-backlog"))
	if err != nil {
		return fmt.Errorf("backlog: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	base := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, total)
	for i := range total {
		msg, err := backlogMessage(i, base.Add(time.Duration(i)*time.Microsecond), codec, payload)
		if err != nil {
			return err
		}
		subject := stream.Subject(channel, stream.Key{Publisher: publisher, Job: job, Instance: instance(i)})
		f, err := js.PublishAsync(subject, msg, jetstream.WithStallWait(b.opts.PhaseTimeout))
		if err != nil {
			return fmt.Errorf("backlog: publish to %s: %w", subject, err)
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.opts.PhaseTimeout):
		return fmt.Errorf("backlog: publishes not acknowledged within %s: %w", b.opts.PhaseTimeout, errTimeout)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("backlog: publish to %s: %w", f.Msg().Subject, err)
		}
	}
	return nil
}

// deleteGroups deletes the groups instance(from) to instance(to-1) from
// the Pushgateway.
func (b *bench) deleteGroups(ctx context.Context, from, to int) error {
	client := &http.Client{Timeout: time.Minute}
	defer client.CloseIdleConnections()
	for i := from; i < to; i++ {
		key := pushgateway.GroupingKey{Job: job, Labels: []pushgateway.Label{{Name: "instance", Value: instance(i)}}}
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, b.pgw.URL()+key.Path(), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("delete the backlog's groups: %w", err)
		}
		discard(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("delete the backlog's groups: DELETE %s: HTTP %s", key.Path(), resp.Status)
		}
	}
	return nil
}

// jsMaxAge is the max_age of the JetStream daemons: long enough for the
// backlog to outlive publishing, the receiver's takeover and the drain.
func jsMaxAge(o Options) time.Duration {
	return max(2*o.Interval, o.PhaseTimeout+time.Minute)
}

// payload is the sample compressed as the poller compresses it with
// Compression, and the codec that names it.
func (b *bench) payload() (envelope.Codec, []byte, error) {
	if b.opts.Compression == "zstd" {
		enc, err := envelope.NewZstdEncoder()
		if err != nil {
			return 0, nil, fmt.Errorf("sample: %w", err)
		}
		return envelope.CodecZstd, enc.Compress(nil, b.opts.Sample), nil
	}
	return envelope.CodecSnappy, envelope.Compress(nil, b.opts.Sample), nil
}

// writeConfig writes a configuration in the 1.0 layout for one daemon and
// returns its path and monitor port.
func (b *bench) writeConfig(name string) (string, int, error) {
	o := b.opts
	port, err := freePort()
	if err != nil {
		return "", 0, err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "identity: bench\nscrape_interval: %s\nmonitor_port: %d\nmonitor_listen: 127.0.0.1\ncompression: %s\n",
		o.Interval, port, o.Compression)
	if b.transport == TransportJetStream {
		// On JetStream max_age is also the stream's: the default (two
		// intervals) would let the stream discard the backlog before the
		// drain's receiver took it. NATS Streaming keeps the default, and
		// the receiver drops what is older as stale.
		fmt.Fprintf(&s, "max_age: %s\n", jsMaxAge(o))
	}
	if o.ProfileDir != "" {
		s.WriteString("monitor_pprof: true\n")
	}
	// Both receivers use one client ID (on JetStream, one durable
	// consumer), so the second resumes the first's durable subscription
	// and finds the backlog waiting.
	for _, role := range []string{"poller", "receiver"} {
		if b.transport == TransportJetStream {
			fmt.Fprintf(&s, "%s_stream:\n  stream: %s\n  urls: %s\n  topic: %s\n", role, jsStream, b.js.URL(), channel)
			continue
		}
		fmt.Fprintf(&s, "%s_stream:\n  cluster_id: %s\n  urls: %s\n  topic: %s\n  client_id: bench_%s\n",
			role, b.nats.ClusterID(), b.nats.URL(), channel, role)
	}
	fmt.Fprintf(&s, "push_gateway:\n  url: %s\n  concurrency: %d\njobs:\n  %s:\n    targets:\n", b.pgw.URL(), o.Concurrency, job)
	for i, u := range b.exp.urls {
		fmt.Fprintf(&s, "      - {name: %s, url: %q}\n", instance(i), u)
	}
	path := filepath.Join(o.WorkDir, name+".yaml")
	return path, port, os.WriteFile(path, []byte(s.String()), 0o600)
}
