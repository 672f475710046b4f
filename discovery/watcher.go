package discovery

import (
	"errors"
	"io/fs"
	"maps"
	"reflect"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// recheckInterval is how often a watcher re-reads its seeded files between
// its updates. The watcher's first read normally confirms them at once;
// what is left is a file gone before that read (dropped at the first tick)
// or one that stays unreadable (one small read a tick until it is fixed).
const recheckInterval = time.Second

// apply records one batch of Prometheus's discovery/file. On every read it
// sends each readable file's groups, "<file>:0" to "<file>:<n-1>", in one
// batch; then, for a file it read before that is gone or has fewer groups,
// single empty groups from "<file>:<n>" on. So a batch that holds group 0
// of a file holds all that the file has now (a deletion of group 0 means
// none): the file's other groups go, even those the watcher never reported
// because readNew gave them, and the file is no longer seeded, since the
// watcher now counts its groups and reports when they go.
func (w *watcher) apply(groups []*targetgroup.Group) {
	whole := map[string]bool{}
	for _, g := range groups {
		if g != nil {
			if s := parseSource(g.Source); s.index == 0 {
				whole[s.file] = true
			}
		}
	}
	if len(whole) > 0 {
		maps.DeleteFunc(w.groups, func(src string, _ *targetgroup.Group) bool {
			return whole[parseSource(src).file]
		})
		maps.DeleteFunc(w.seeded, func(f string, _ bool) bool { return whole[f] })
	}
	for _, g := range groups {
		switch {
		case g == nil:
		case len(g.Targets) == 0:
			delete(w.groups, g.Source) // a group or file that is gone
		default:
			w.groups[g.Source] = g
		}
	}
}

// recheck reads w's seeded files again, as the watcher would report none
// of their changes but a rewrite with groups: it never learnt that they
// had any. A file gone loses its groups (a path a glob matched matches
// while it exists), a readable one gets its current groups, and an
// unreadable one keeps its groups, as Prometheus keeps a file's last good
// content. A file left with no groups needs no watching. It reports
// whether w's groups changed.
func (w *watcher) recheck() (changed bool) {
	for f := range w.seeded {
		gs, err := readFile(f)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		now := map[string]*targetgroup.Group{}
		for _, g := range gs {
			now[g.Source] = g
		}
		before := map[string]*targetgroup.Group{}
		for src, g := range w.groups {
			if parseSource(src).file == f {
				before[src] = g
			}
		}
		if !reflect.DeepEqual(before, now) {
			changed = true
			for src := range before {
				delete(w.groups, src)
			}
			maps.Copy(w.groups, now)
		}
		if len(now) == 0 {
			delete(w.seeded, f)
		}
	}
	return changed
}
