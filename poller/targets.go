package poller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"

	"github.com/choria-io/prometheus-streams/config"
)

// loop is one target's scrape loop: not started (cancel nil) before Run.
type loop struct {
	t      *target
	cancel context.CancelFunc
	done   chan struct{} // closed once the loop has returned
}

// jobClient is the HTTP client of a job and the settings it was built
// from, so that a new set of targets with the same settings keeps it (and
// its idle connections).
type jobClient struct {
	client   *http.Client
	settings *commoncfg.HTTPClientConfig // nil: the defaults, or a client from Options
}

// Changes counts what SetTargets did.
type Changes struct {
	// Added and Removed targets started and stopped; Changed ones (a new
	// URL or new HTTP client settings) restarted; Unchanged ones kept
	// running untouched.
	Added, Removed, Changed, Unchanged int
}

// SetTargets makes jobs the set of targets scraped: each job (a key) with
// its targets, which may be none. It compares them with the running set by
// job and instance name: a target that is the same (same URL, same HTTP
// client settings) keeps its loop, cadence and state; a removed one's loop
// stops and its per-target series are deleted; a changed one restarts; an
// added one starts, at the offset its identity gives it. The stream
// connection is not touched.
//
// A removed target's last scrape, if it is still waiting in the outbox, is
// published: it is a real scrape, and the receiver's down_after and
// delete_after retire its group in the Pushgateway as for any target gone
// silent.
//
// Nothing changes when it returns an error: a target whose Job is not its
// key, two targets of a job with one name, targets of one job with
// different HTTP client settings, or a client that cannot be built from
// the settings (a ca_file that cannot be read). It waits for the loops it
// stops. Safe for concurrent use; calls are serialised. Before Run the
// set is only recorded; after Run returned, nothing starts again.
func (p *Poller) SetTargets(jobs map[string][]config.Target) (Changes, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	clients, err := p.buildClients(jobs)
	if err != nil {
		return Changes{}, err
	}
	var ch Changes
	next := make(map[string]*loop, len(p.loops))
	var stopping, starting []*loop
	for job, targets := range jobs {
		for _, t := range targets {
			key := t.Job + "\x00" + t.Name
			client := clients[job].client
			old := p.loops[key]
			switch {
			case old != nil && old.t.URL == t.URL && old.t.client == client:
				next[key] = old
				ch.Unchanged++
				continue
			case old != nil:
				stopping = append(stopping, old)
				ch.Changed++
			default:
				ch.Added++
			}
			l := &loop{t: p.newTarget(t, key, client)}
			next[key] = l
			starting = append(starting, l)
		}
	}
	var removed []*target
	for key, l := range p.loops {
		if _, ok := next[key]; !ok {
			stopping = append(stopping, l)
			removed = append(removed, l.t)
			ch.Removed++
		}
	}
	stopLoops(stopping)
	for _, t := range removed {
		p.metrics.deleteTarget(t.Job, t.Name)
	}
	for job, jc := range p.clients {
		if clients[job] != jc && jc.client != p.opts.HTTPClients[job] && jc.client != p.opts.HTTPClient {
			jc.client.CloseIdleConnections()
		}
	}
	p.loops, p.clients = next, clients
	for _, l := range starting {
		p.start(l)
	}
	p.metrics.setJobTargets(jobs)
	return ch, nil
}

// buildClients checks jobs (each target under its own job, unique names,
// one set of HTTP client settings per job) and returns the client of every
// job, keeping the running one where the settings are the same. It changes
// nothing.
func (p *Poller) buildClients(jobs map[string][]config.Target) (map[string]*jobClient, error) {
	clients := make(map[string]*jobClient, len(jobs))
	for _, job := range slices.Sorted(maps.Keys(jobs)) {
		targets := jobs[job]
		var settings *commoncfg.HTTPClientConfig
		names := make(map[string]bool, len(targets))
		for i, t := range targets {
			if t.Job != job {
				return nil, fmt.Errorf("poller: target %q of job %q is listed under job %q", t.Name, t.Job, job)
			}
			// Checked here, before SetTargets creates any target's series.
			if names[t.Name] {
				return nil, fmt.Errorf("poller: job %q has two targets named %q", job, t.Name)
			}
			names[t.Name] = true
			if i > 0 && !reflect.DeepEqual(t.HTTPClient, settings) {
				return nil, fmt.Errorf("poller: targets of job %q have different HTTP client settings", job)
			}
			settings = t.HTTPClient
		}
		if fixed := p.opts.HTTPClients[job]; fixed != nil {
			clients[job] = &jobClient{client: fixed}
			continue
		}
		if old := p.clients[job]; old != nil && reflect.DeepEqual(old.settings, settings) {
			clients[job] = old
			continue
		}
		c, err := p.newClient(job, settings)
		if err != nil {
			return nil, err
		}
		clients[job] = &jobClient{client: c, settings: settings}
	}
	return clients, nil
}

// newClient builds a job's client from its settings (see NewJobClient),
// or returns Options.HTTPClient for a job without settings.
func (p *Poller) newClient(job string, settings *commoncfg.HTTPClientConfig) (*http.Client, error) {
	if settings == nil && p.opts.HTTPClient != nil {
		return p.opts.HTTPClient, nil
	}
	return NewJobClient(job, settings)
}

// NewJobClient builds the scrape client of job from its HTTP client
// settings (nil: prometheus/common's defaults), as Prometheus does per
// scrape_config. It reads the files the settings name (a ca_file), so a
// caller can use it to refuse settings that cannot work. The client has
// no timeout of its own: the poller bounds each scrape with its context.
func NewJobClient(job string, settings *commoncfg.HTTPClientConfig) (*http.Client, error) {
	hc := commoncfg.DefaultHTTPClientConfig
	if settings != nil {
		hc = *settings // a copy: NewClientFromConfig may cache in it
	}
	c, err := commoncfg.NewClientFromConfig(hc, "scrape_"+job)
	if err != nil {
		return nil, fmt.Errorf("poller: jobs.%s: %w", job, err)
	}
	return c, nil
}

func (p *Poller) newTarget(t config.Target, key string, client *http.Client) *target {
	return &target{
		Target:  t,
		key:     key,
		client:  client,
		log:     p.log.With("job", t.Job, "instance", t.Name),
		metrics: p.metrics.forTarget(t.Job, t.Name),
	}
}

// SetSchedule changes the scrape interval and timeout (a timeout not
// within (0, interval] becomes the default, as in New). When either
// changes every loop restarts, each at its offset within the new
// interval; the targets keep their state and series. It reports whether
// anything changed. Safe for concurrent use.
func (p *Poller) SetSchedule(interval, timeout time.Duration) (bool, error) {
	if interval <= 0 {
		return false, errors.New("poller: scrape interval must be positive")
	}
	timeout = scrapeTimeout(interval, timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sched.interval == interval && p.sched.timeout == timeout {
		return false, nil
	}
	all := slices.Collect(maps.Values(p.loops))
	stopLoops(all)
	p.sched = p.scraper.schedule(interval, timeout)
	for _, l := range all {
		l.cancel, l.done = nil, nil
		p.start(l)
	}
	return true, nil
}

// start starts l's loop when Run is running. p.mu must be held.
func (p *Poller) start(l *loop) {
	if p.runCtx == nil || p.stopped || p.runCtx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(p.runCtx)
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	s := p.sched
	p.wg.Go(func() {
		defer close(done)
		p.runTarget(ctx, l.t, s)
	})
}

// stopLoops stops the started loops among ls and waits for them: all are
// told at once, so a slow scrape delays the others' stop only once.
func stopLoops(ls []*loop) {
	for _, l := range ls {
		if l.cancel != nil {
			l.cancel()
		}
	}
	for _, l := range ls {
		if l.done != nil {
			<-l.done
		}
	}
}

// Targets returns the targets currently in the set, sorted by job then
// name. Safe for concurrent use.
func (p *Poller) Targets() []config.Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]config.Target, 0, len(p.loops))
	for _, l := range p.loops {
		out = append(out, l.t.Target)
	}
	slices.SortFunc(out, func(a, b config.Target) int {
		return cmp.Or(cmp.Compare(a.Job, b.Job), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// deleteTarget deletes the series of a target that left the set, so that
// a target removed from the configuration does not linger in /metrics.
func (m *metrics) deleteTarget(job, instance string) {
	l := prometheus.Labels{"job": job, "instance": instance}
	m.scrapes.DeletePartialMatch(l)
	m.scrapeFailures.DeletePartialMatch(l)
	m.scrapeDuration.Delete(l)
	m.scrapeBytes.Delete(l)
	m.messageBytes.Delete(l)
}

// setJobTargets sets the targets gauge of every job in jobs and deletes
// the series of jobs that are gone. The Poller's mu must be held.
func (m *metrics) setJobTargets(jobs map[string][]config.Target) {
	for job := range m.jobs {
		if _, ok := jobs[job]; !ok {
			m.targets.DeleteLabelValues(job)
			delete(m.jobs, job)
		}
	}
	for job, ts := range jobs {
		m.targets.WithLabelValues(job).Set(float64(len(ts)))
		m.jobs[job] = struct{}{}
	}
}
