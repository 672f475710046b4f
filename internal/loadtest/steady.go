package loadtest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// steady runs the poller (and the receiver) until every target was pushed
// once, then measures a window of steady state.
func (b *bench) steady(ctx context.Context) error {
	o := b.opts
	var recv *daemon
	if !o.PollerOnly {
		cfg, port, err := b.writeConfig(b.name("receiver-1"))
		if err != nil {
			return err
		}
		if recv, err = startDaemon(ctx, o.Executable, o.WorkDir, b.name("receiver-1"), "receiver", cfg, port, readyz); err != nil {
			return err
		}
		defer func() {
			if recv != nil {
				recv.stop()
			}
		}()
	}
	cfg, port, err := b.writeConfig(b.name("poller"))
	if err != nil {
		return err
	}
	poller, err := startDaemon(ctx, o.Executable, o.WorkDir, b.name("poller"), "poller", cfg, port, readyz)
	if err != nil {
		return err
	}
	defer func() {
		if poller != nil {
			poller.stop()
		}
	}()

	b.progress("warm-up: waiting until every target was scraped%s once (up to one interval, %s)", map[bool]string{true: "", false: " and pushed"}[o.PollerOnly], o.Interval)
	if err := b.waitAllSeen(ctx, recv == nil, 2*o.Interval+30*time.Second); err != nil {
		return err
	}

	b.progress("window: measuring %s of steady state on %s", o.Window, b.transport)
	var profiles sync.WaitGroup
	profErrs := make([]error, 2)
	if o.ProfileDir != "" {
		secs := max(1, int(o.Window/time.Second))
		profiles.Go(func() {
			profErrs[0] = poller.profile(ctx, secs, filepath.Join(o.ProfileDir, b.name("poller.cpu.pprof")))
		})
		if recv != nil {
			profiles.Go(func() {
				profErrs[1] = recv.profile(ctx, secs, filepath.Join(o.ProfileDir, b.name("receiver.cpu.pprof")))
			})
		}
	}
	pc0, err := poller.cpu()
	if err != nil {
		return err
	}
	var rc0 float64
	if recv != nil {
		if rc0, err = recv.cpu(); err != nil {
			return err
		}
	}
	s0 := b.exp.served.Load()
	b.recording.Store(true)
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Window):
	}
	b.recording.Store(false)
	elapsed := time.Since(start)
	pc1, err := poller.cpu()
	if err != nil {
		return err
	}
	scrapes := b.exp.served.Load() - s0
	if scrapes == 0 {
		return errors.New("the poller scraped nothing during the window")
	}
	b.tr.PollerScrapes = scrapes
	b.tr.PollerCPUPerScrape = seconds((pc1 - pc0) / float64(scrapes))
	b.tr.PollerCores = (pc1 - pc0) / elapsed.Seconds()
	fams, err := poller.families(ctx)
	if err != nil {
		return err
	}
	b.tr.MessageBytes, _ = mean(fams, "prometheus_streams_poller_message_bytes")
	heap, _ := sum(fams, "go_memstats_heap_inuse_bytes", nil)
	stacks, _ := sum(fams, "go_memstats_stack_inuse_bytes", nil)
	b.tr.PollerHeap, b.tr.PollerStacks = int64(heap), int64(stacks)

	b.latMu.Lock()
	lat := slices.Clone(b.latencies)
	b.latMu.Unlock()
	if recv != nil {
		rc1, err := recv.cpu()
		if err != nil {
			return err
		}
		if len(lat) == 0 {
			return errors.New("the receiver pushed nothing during the window")
		}
		b.tr.ReceiverCPUPerMsg = seconds((rc1 - rc0) / float64(len(lat)))
		slices.Sort(lat)
		b.tr.Pushes = len(lat)
		b.tr.LatencyP50 = quantile(lat, 0.50)
		b.tr.LatencyP99 = quantile(lat, 0.99)
		b.tr.LatencyMax = lat[len(lat)-1]
	}
	profiles.Wait()
	if o.ProfileDir != "" {
		if err := poller.save(ctx, "/debug/pprof/heap", filepath.Join(o.ProfileDir, b.name("poller.heap.pprof"))); err != nil {
			return err
		}
	}
	b.tr.PollerPeakRSS = poller.stop()
	poller = nil
	if recv != nil {
		b.tr.ReceiverPeakRSS = recv.stop()
		recv = nil
	}
	return errors.Join(profErrs...)
}

// waitAllSeen waits until every target was served (and, unless
// scrapedOnly, pushed) at least once.
func (b *bench) waitAllSeen(ctx context.Context, scrapedOnly bool, limit time.Duration) error {
	pushed := make([]bool, b.opts.Targets)
	b.recording.Store(true)
	defer func() {
		b.recording.Store(false)
		b.latMu.Lock()
		b.latencies = b.latencies[:0]
		b.latMu.Unlock()
	}()
	deadline := time.Now().Add(limit)
	for {
		all := true
		for i := range b.exp.lastServe {
			if b.exp.lastServe[i].Load() == 0 {
				all = false
				break
			}
		}
		if all && !scrapedOnly {
			b.latMu.Lock()
			n := len(b.latencies)
			b.latMu.Unlock()
			// Latencies are only counted, not attributed: every target
			// pushed once means as many pushes as targets, at least.
			all = n >= len(pushed)
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: not every target was seen within %s: %w", limit, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
