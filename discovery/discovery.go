// Package discovery gives the poller its targets: each job's static
// targets merged with those listed in files in Prometheus's file_sd format,
// which Prometheus's own discovery/file watches for changes. Whenever the
// merged set changes, the whole set goes to the poller's SetTargets; a
// reload replaces the configuration it merges from (Apply).
package discovery

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promdisc "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/file"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/poller"
)

// Sink receives every job's full set of targets; *poller.Poller is one.
// Calls are serialised.
type Sink interface {
	SetTargets(jobs map[string][]config.Target) (poller.Changes, error)
}

// Discovery merges static and file-discovered targets per job and keeps
// the sink's set up to date. Safe for concurrent use.
type Discovery struct {
	sink      Sink
	log       *slog.Logger
	metrics   *metrics
	sdMetrics promdisc.DiscovererMetrics // discovery/file's own, shared by every watcher

	// mu guards what follows and serialises calls to the sink.
	mu      sync.Mutex
	jobs    map[string]*jobState
	refused map[refusalKey]bool // entries refused in the last merge, to log and count each once
	ignored map[jobFile]string  // files whose labels were ignored in the last merge, to warn once
	runCtx  context.Context     // Run's context; nil before Run
	stopped bool                // Run is waiting for the watchers: start no more
	wg      sync.WaitGroup      // the watchers' goroutines
}

// jobState is a job's configuration and its file watchers.
type jobState struct {
	static   []config.Target
	settings *commoncfg.HTTPClientConfig // for the targets from files
	watchers []*watcher
}

// watcher is one file_sd_configs entry of a job: Prometheus's discovery
// for it and the groups it reported last.
type watcher struct {
	job    string
	cfg    config.FileSDConfig
	groups map[string]*targetgroup.Group // by source
	// seeded are the files whose groups readNew gave and the watcher has
	// not reported in full yet; see recheck.
	seeded map[string]bool
	cancel context.CancelFunc // nil until started
}

type refusalKey struct{ job, file, target, reason string }

// New returns a Discovery that hands its sets to sink, with its metrics
// and those of Prometheus's file discovery (prometheus_sd_file_*)
// registered on reg. Apply gives it its first configuration.
func New(sink Sink, logger *slog.Logger, reg prometheus.Registerer) (*Discovery, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	sdm := (&file.SDConfig{}).NewDiscovererMetrics(reg, nil)
	if err := sdm.Register(); err != nil {
		return nil, errors.Join(errors.New("discovery: register file_sd metrics"), err)
	}
	return &Discovery{
		sink:      sink,
		log:       logger.With("component", "discovery"),
		metrics:   m,
		sdMetrics: sdm,
		jobs:      map[string]*jobState{},
		refused:   map[refusalKey]bool{},
		ignored:   map[jobFile]string{},
	}, nil
}

// Apply makes cfg's jobs the configuration: static are their static
// targets (config.Targets, with the self-scrape target as the caller
// resolved it). It reads the files of every new file_sd_configs entry at
// once, so a job's file targets do not vanish until its watcher's first
// read; an entry that is the same as before keeps its watcher and what it
// found. It then hands the merged set to the sink and returns what the
// sink changed. When the sink refuses the set, nothing changes (the
// previous configuration and watchers stay) and the error is returned.
func (d *Discovery) Apply(cfg *config.Config, static []config.Target) (poller.Changes, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := map[string]*jobState{}
	inputs := inputsFor(cfg, static)
	var fresh []*watcher
	taken := map[*watcher]bool{}
	for job, in := range inputs {
		st := &jobState{static: in.static, settings: in.settings}
		old := d.jobs[job]
		for _, sd := range cfg.Jobs[job].FileSDConfigs {
			if w := old.take(sd, taken); w != nil {
				st.watchers = append(st.watchers, w)
				continue
			}
			w := &watcher{job: job, cfg: sd}
			d.readNew(w, old)
			st.watchers = append(st.watchers, w)
			fresh = append(fresh, w)
		}
		next[job] = st
	}
	if err := checkClients(next); err != nil {
		return poller.Changes{}, err
	}
	ch, err := d.push(next)
	if err != nil {
		return ch, err
	}
	for _, st := range d.jobs {
		for _, w := range st.watchers {
			if !taken[w] && w.cancel != nil {
				w.cancel()
			}
		}
	}
	d.jobs = next
	for _, w := range fresh {
		d.start(w)
	}
	return ch, nil
}

// checkClients builds the HTTP client of every job with file_sd_configs
// from its settings, to refuse settings that cannot work (a ca_file that
// cannot be read) now, at start or reload. The poller builds a job's
// client only once the job has targets; for a job whose files list none
// yet that would be at a later file change, whose refusal would then hold
// back every job's file changes until the settings are fixed.
func checkClients(jobs map[string]*jobState) error {
	for _, job := range slices.Sorted(maps.Keys(jobs)) {
		st := jobs[job]
		if len(st.watchers) == 0 || st.settings == nil {
			continue
		}
		c, err := poller.NewJobClient(job, st.settings)
		if err != nil {
			return err
		}
		c.CloseIdleConnections()
	}
	return nil
}

// take returns the job's running watcher for an entry equal to sd that is
// not in taken yet, and adds it, so that a second equal entry gets its
// own. It is nil when there is none (s may be nil: a new job).
func (s *jobState) take(sd config.FileSDConfig, taken map[*watcher]bool) *watcher {
	if s == nil {
		return nil
	}
	for _, w := range s.watchers {
		if !taken[w] && reflect.DeepEqual(w.cfg, sd) {
			taken[w] = true
			return w
		}
	}
	return nil
}

// readNew reads the files of a new watcher's entry now and makes their
// groups w's. A file it cannot read keeps the groups the job's previous
// watchers had for it, as Prometheus keeps a file's last good content.
// Every file with groups is marked seeded: the watcher's discovery/file
// starts knowing none of them.
func (d *Discovery) readNew(w *watcher, old *jobState) {
	groups, failed := readAll(w.cfg)
	for f, err := range failed {
		d.log.Error("cannot read file_sd file; keeping what it gave before, if anything", "job", w.job, "file", f, "err", err)
		if old == nil {
			continue
		}
		for _, ow := range old.watchers {
			for src, g := range ow.groups {
				if parseSource(src).file == f {
					groups[src] = g
				}
			}
		}
	}
	w.groups = groups
	w.seeded = map[string]bool{}
	for src := range groups {
		w.seeded[parseSource(src).file] = true
	}
}

// push merges jobs and hands the result to the sink; on success it keeps
// the per-job series to the jobs with file_sd_configs, and logs and counts
// the refusals and ignored labels that are new since the last merge. d.mu
// must be held.
func (d *Discovery) push(jobs map[string]*jobState) (poller.Changes, error) {
	inputs := make(map[string]*jobInput, len(jobs))
	for job, st := range jobs {
		in := &jobInput{static: st.static, settings: st.settings, groups: map[string]*targetgroup.Group{}}
		for _, w := range st.watchers {
			maps.Copy(in.groups, w.groups)
		}
		inputs[job] = in
	}
	m := merge(inputs)
	ch, err := d.sink.SetTargets(m.jobs)
	if err != nil {
		return ch, err
	}
	// The series follow the jobs with file_sd_configs in the set the sink
	// took: none for a set it refused, none left for a job gone.
	withFileSD := map[string]bool{}
	for job, st := range jobs {
		if len(st.watchers) > 0 {
			withFileSD[job] = true
		}
	}
	d.metrics.setJobs(withFileSD)
	d.report(m)
	return ch, nil
}

// report logs and counts each refused entry once, when it first appears,
// and warns once per file whose targets carry labels that are dropped.
func (d *Discovery) report(m merged) {
	refused := make(map[refusalKey]bool, len(m.refused))
	for _, r := range m.refused {
		k := refusalKey{r.Job, r.File, r.Target, r.Reason}
		refused[k] = true
		if d.refused[k] {
			continue
		}
		d.metrics.refused.WithLabelValues(r.Job, r.Reason).Inc()
		d.log.Warn("file_sd entry refused; the file's other entries and every other target are scraped",
			"job", r.Job, "file", r.File, "target", r.Target, "reason", r.Reason, "err", r.Err)
	}
	d.refused = refused
	ignored := make(map[jobFile]string, len(m.ignored))
	for k, labels := range m.ignored {
		ignored[k] = strings.Join(labels, ",")
		if d.ignored[k] == ignored[k] {
			continue
		}
		d.log.Warn("file_sd labels ignored: a scrape carries only job and instance (use the instance label to name a target)",
			"job", k.job, "file", k.file, "labels", ignored[k])
	}
	d.ignored = ignored
	for job := range d.metrics.jobs {
		d.metrics.ignored.WithLabelValues(job).Set(float64(m.ignoredTargets[job]))
	}
}

// Run watches the files until ctx is done, handing every change to the
// sink, then stops the watchers and returns. Apply may be called before
// and while it runs. Run may be called once.
func (d *Discovery) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.runCtx != nil {
		d.mu.Unlock()
		return errors.New("discovery: Run called twice")
	}
	d.runCtx = ctx
	for _, st := range d.jobs {
		for _, w := range st.watchers {
			d.start(w)
		}
	}
	d.mu.Unlock()
	<-ctx.Done()
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.wg.Wait()
	return nil
}

// start runs Prometheus's file discovery for w, and a goroutine that
// applies its updates, when Run is running. d.mu must be held.
func (d *Discovery) start(w *watcher) {
	if d.runCtx == nil || d.stopped || d.runCtx.Err() != nil || w.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(d.runCtx)
	w.cancel = cancel
	fd, err := file.NewDiscovery(&file.SDConfig{Files: w.cfg.Files, RefreshInterval: model.Duration(w.cfg.RefreshInterval)},
		d.log.With("job", w.job), d.sdMetrics)
	if err != nil {
		// Only a wrong metrics type gets here, which is a bug of ours.
		d.log.Error("cannot start watching file_sd files", "job", w.job, "files", w.cfg.Files, "err", err)
		return
	}
	updates := make(chan []*targetgroup.Group)
	d.wg.Go(func() { fd.Run(ctx, updates) })
	// The ticker re-checks the seeded files that the watcher may never
	// report (see recheck); it stops once there are none left, and there
	// are no new ones for this watcher.
	ticker := time.NewTicker(recheckInterval)
	tick := ticker.C
	if len(w.seeded) == 0 {
		ticker.Stop()
		tick = nil
	}
	d.wg.Go(func() {
		defer ticker.Stop()
		for {
			pending := true
			select {
			case <-ctx.Done():
				return
			case groups := <-updates:
				pending = d.update(w, groups)
			case <-tick:
				pending = d.recheckSeeded(w)
			}
			if !pending {
				ticker.Stop()
				tick = nil
			}
		}
	})
}

// update records one batch of the groups of a watcher (see apply),
// re-checks its seeded files, and hands the new set to the sink. It
// returns whether seeded files are left to re-check.
func (d *Discovery) update(w *watcher, groups []*targetgroup.Group) (pending bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.current(w) {
		return false // replaced by Apply meanwhile
	}
	w.apply(groups)
	w.recheck()
	d.pushUpdate(w)
	return len(w.seeded) > 0
}

// recheckSeeded re-checks w's seeded files and hands the set to the sink
// if that changed w's groups. It returns whether seeded files are left.
func (d *Discovery) recheckSeeded(w *watcher) (pending bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.current(w) {
		return false
	}
	if w.recheck() {
		d.pushUpdate(w)
	}
	return len(w.seeded) > 0
}

// current reports whether w is still one of the configuration's watchers.
// d.mu must be held.
func (d *Discovery) current(w *watcher) bool {
	return d.jobs[w.job] != nil && slices.Contains(d.jobs[w.job].watchers, w)
}

// pushUpdate hands the set to the sink after w's groups changed, logging
// the outcome. d.mu must be held.
func (d *Discovery) pushUpdate(w *watcher) {
	ch, err := d.push(d.jobs)
	if err != nil {
		d.log.Error("cannot apply the targets found in file_sd files", "job", w.job, "err", err)
		return
	}
	if ch.Added+ch.Removed+ch.Changed > 0 {
		d.log.Info("file_sd targets changed", "job", w.job, "added", ch.Added, "removed", ch.Removed, "changed", ch.Changed)
	}
}
