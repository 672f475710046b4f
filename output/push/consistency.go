package push

import (
	"context"
	"slices"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/pushgateway"
)

// The Pushgateway serves every group it stores on one /metrics, gathered
// with client_golang's Gatherers, which fails the whole page when a family
// has two types across groups, when a histogram or summary "x" meets a
// family named like one of its series (x_count, x_sum, x_bucket), or when a
// series appears twice. Its own consistency check refuses such a push, but
// it re-gathers the whole store on every push, so each push costs as much
// as everything stored. Run with --push.disable-consistency-check, the
// Pushgateway accepts anything, and a single inconsistent push breaks
// /metrics for everyone.
//
// So the receiver checks each push itself, at a cost proportional to the
// push: the book knows, for every family name in the Pushgateway, its type
// and how many groups hold it, and for each group which families it holds.
//
// A clash does not refuse the scrape. Only the offending family is left out
// of the push (its type differs from the type the holding groups gave it,
// or its name collides with a histogram's or summary's series held by
// another group or earlier in the same push), and only the offending
// series (a duplicate of one earlier in its family, which is kept, or one
// the Pushgateway could not serve at all). The rest of the scrape, and up,
// still reach the Pushgateway, as Prometheus keeps a scrape with one bad
// series. The first holder wins, as with the Pushgateway's own check, and a
// group may change the type of a family only it holds, since its push
// replaces its old metrics (the Pushgateway's check allows that too).

// Reasons a family or a series is left out of a push.
const (
	clashType       = "type_clash"
	clashName       = "name_clash"
	seriesDuplicate = "duplicate"
	seriesInvalid   = "invalid"
)

// bookFamily is one family name in the Pushgateway. Groups refer to it by
// pointer, so a name is stored once however many groups hold it.
type bookFamily struct {
	name    string
	typ     dto.MetricType
	holders int // groups holding it, a push in flight included
	// fixed: held by the Pushgateway itself (its own go_*, process_*,
	// pushgateway_* and push time families) or by series the receiver
	// cannot attribute to a group; never released, never retyped.
	fixed bool
	// unsure: its only holder changed its type and that push is in flight,
	// or ended without an answer, so the Pushgateway may have either type.
	// Nobody else may use the name (or a name colliding with it) until the
	// holder's next push settles it.
	unsure bool
}

// holding is what one group holds.
type holding struct {
	held     []*bookFamily // sorted by name: what the group's pushes left in the Pushgateway
	pending  []*bookFamily // sorted by name: reserved by the push in flight
	inFlight bool
	retyped  []retype // type changes of the push in flight, to undo if it is not applied
}

type retype struct {
	f      *bookFamily
	typ    dto.MetricType
	unsure bool
}

// pushOutcome is how a push ended, for the book.
type pushOutcome uint8

const (
	// pushApplied: the Pushgateway took it; the group holds the new set.
	pushApplied pushOutcome = iota
	// pushNotApplied: refused with a 4xx, or never sent; the group keeps
	// its old set.
	pushNotApplied
	// pushUnknown: an attempt got no answer (network error, timeout) or a
	// 5xx, which a proxy may send after the Pushgateway took the push. The
	// group holds both sets until its next push settles which.
	pushUnknown
)

// book is the receiver's view of the families in the Pushgateway. It is
// safe for concurrent use. A group's pushes must not overlap (the
// scheduler guarantees it): reserve is followed by exactly one settle for
// the same group before the next reserve. Check and reservation happen
// under one lock, so two groups pushing clashing families at the same time
// cannot both get through.
type book struct {
	mu     sync.Mutex
	fams   map[string]*bookFamily
	groups map[string]*holding
}

func newBook() *book {
	b := &book{fams: map[string]*bookFamily{}, groups: map[string]*holding{}}
	// The Pushgateway adds these to every group, always as gauges.
	for _, name := range []string{pushgateway.PushTimeMetric, pushgateway.PushFailureTimeMetric} {
		b.fams[name] = &bookFamily{name: name, typ: dto.MetricType_GAUGE, fixed: true}
	}
	return b
}

// reset forgets everything, for a receiver that reads the Pushgateway
// anew after another one wrote it: what the book knew may be out of date
// (a group the other deleted, a family whose type it changed), and a
// merge would keep it. A push still settling afterwards finds no holding
// and changes nothing.
func (b *book) reset() {
	fresh := newBook()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fams, b.groups = fresh.fams, fresh.groups
}

// familyClash describes a family left out of a push.
type familyClash struct {
	reason   string
	family   string
	typ      dto.MetricType
	other    string // the family it clashes with (itself for a type clash)
	otherTyp dto.MetricType
}

// reserve checks the families of a push of group id against what the
// Pushgateway holds and reserves those that fit. fams must be sorted by
// name with no name twice. It returns the families to push (fams
// compacted in place) and calls dropped for each left out. Until settle,
// the group holds both its old families and the reserved ones.
func (b *book) reserve(id string, fams []*dto.MetricFamily, dropped func(familyClash)) []*dto.MetricFamily {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.groups[id]
	if h == nil {
		h = &holding{}
		b.groups[id] = h
	} else if h.inFlight {
		// Not expected (a group's pushes do not overlap); assume the
		// worst about the earlier one.
		b.settleLocked(id, h, pushUnknown)
	}
	kept := fams[:0]
	pending := make([]*bookFamily, 0, len(fams))
	j := 0 // h.held is sorted too: walk it along instead of searching it
	for _, mf := range fams {
		name, typ := mf.GetName(), mf.GetType()
		for j < len(h.held) && h.held[j].name < name {
			j++
		}
		f := b.fams[name]
		if f != nil && othersHold(f, j < len(h.held) && h.held[j] == f) && (f.typ != typ || f.unsure) {
			dropped(familyClash{reason: clashType, family: name, typ: typ, other: name, otherTyp: f.typ})
			continue
		}
		if c, ok := b.nameClash(h, name, typ, kept); ok {
			dropped(c)
			continue
		}
		switch {
		case f == nil:
			f = &bookFamily{name: name, typ: typ}
			b.fams[name] = f
		case f.typ != typ:
			// Only this group holds it: its push replaces the old type.
			h.retyped = append(h.retyped, retype{f: f, typ: f.typ, unsure: f.unsure})
			f.typ, f.unsure = typ, true
		}
		kept = append(kept, mf)
		pending = append(pending, f)
	}
	forDifference(pending, h.held, func(f *bookFamily) { f.holders++ })
	h.pending, h.inFlight = pending, true
	return kept
}

// heldByOthers reports whether a group other than h holds f.
func (b *book) heldByOthers(h *holding, f *bookFamily) bool {
	return othersHold(f, holds(h.held, f))
}

// othersHold reports whether f has a holder besides the group asking,
// which holds it already when mine.
func othersHold(f *bookFamily, mine bool) bool {
	n := 0
	if mine {
		n = 1
	}
	return f.fixed || f.holders > n
}

// suffixes are the series names of a histogram or summary that
// client_golang's checkSuffixCollisions refuses as family names next to it
// (_bucket only next to a histogram).
var suffixes = []struct {
	suffix        string
	histogramOnly bool
}{{"_count", false}, {"_sum", false}, {"_bucket", true}}

func collidesAsBase(t dto.MetricType, histogramOnly bool) bool {
	return t == dto.MetricType_HISTOGRAM || (!histogramOnly && t == dto.MetricType_SUMMARY)
}

// nameClash reports whether a family name of type typ pushed by h collides
// with a histogram or summary (or, being one, with a family named like one
// of its series) that another group holds, or that comes earlier in this
// push (kept, sorted by name: a base name sorts before its suffixed ones,
// so checking back covers both orders).
func (b *book) nameClash(h *holding, name string, typ dto.MetricType, kept []*dto.MetricFamily) (familyClash, bool) {
	for _, s := range suffixes {
		base, ok := strings.CutSuffix(name, s.suffix)
		if !ok || base == "" {
			continue
		}
		if i, found := slices.BinarySearchFunc(kept, base, func(mf *dto.MetricFamily, n string) int { return strings.Compare(mf.GetName(), n) }); found &&
			collidesAsBase(kept[i].GetType(), s.histogramOnly) {
			return familyClash{reason: clashName, family: name, typ: typ, other: base, otherTyp: kept[i].GetType()}, true
		}
		// An unsure family may be a histogram in the Pushgateway.
		if f := b.fams[base]; f != nil && b.heldByOthers(h, f) && (f.unsure || collidesAsBase(f.typ, s.histogramOnly)) {
			return familyClash{reason: clashName, family: name, typ: typ, other: base, otherTyp: f.typ}, true
		}
	}
	if !collidesAsBase(typ, false) {
		return familyClash{}, false
	}
	for _, s := range suffixes {
		if s.histogramOnly && typ != dto.MetricType_HISTOGRAM {
			continue
		}
		if f := b.fams[name+s.suffix]; f != nil && b.heldByOthers(h, f) {
			return familyClash{reason: clashName, family: name, typ: typ, other: f.name, otherTyp: f.typ}, true
		}
	}
	return familyClash{}, false
}

// settle ends the push in flight of group id (a no-op when none is).
func (b *book) settle(id string, o pushOutcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.groups[id]; h != nil && h.inFlight {
		b.settleLocked(id, h, o)
	}
}

func (b *book) settleLocked(id string, h *holding, o pushOutcome) {
	switch o {
	case pushApplied:
		forDifference(h.held, h.pending, b.release)
		for _, f := range h.pending {
			f.unsure = false // the group is its only holder (see bookFamily.unsure)
		}
		h.held = h.pending
	case pushNotApplied:
		forDifference(h.pending, h.held, b.release)
		for i := len(h.retyped) - 1; i >= 0; i-- {
			r := h.retyped[i]
			r.f.typ, r.f.unsure = r.typ, r.unsure
		}
	case pushUnknown:
		h.held = union(h.held, h.pending)
	}
	h.pending, h.retyped, h.inFlight = nil, nil, false
	if len(h.held) == 0 {
		delete(b.groups, id)
	}
}

// forget releases everything group id holds: it was deleted from the
// Pushgateway.
func (b *book) forget(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.groups[id]
	if h == nil || h.inFlight {
		return
	}
	for _, f := range h.held {
		b.release(f)
	}
	delete(b.groups, id)
}

// release drops one holder of f, and f itself once nobody holds it.
func (b *book) release(f *bookFamily) {
	f.holders--
	if f.holders <= 0 && !f.fixed {
		delete(b.fams, f.name)
	}
}

// size returns the numbers of families and groups in the book.
func (b *book) size() (families, groups int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.fams), len(b.groups)
}

func compareFamily(a, b *bookFamily) int { return strings.Compare(a.name, b.name) }

// holds reports whether the sorted list has f.
func holds(list []*bookFamily, f *bookFamily) bool {
	i, ok := slices.BinarySearchFunc(list, f, compareFamily)
	return ok && list[i] == f
}

// forDifference calls fn for each family of a that b lacks; both are
// sorted by name.
func forDifference(a, b []*bookFamily, fn func(*bookFamily)) {
	j := 0
	for _, f := range a {
		for j < len(b) && b[j].name < f.name {
			j++
		}
		if j < len(b) && b[j] == f {
			continue
		}
		fn(f)
	}
}

// union merges two lists sorted by name.
func union(a, b []*bookFamily) []*bookFamily {
	out := make([]*bookFamily, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].name < b[j].name):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].name < a[i].name:
			out = append(out, b[j])
			j++
		default: // same name: the same interned family
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// bookSeeder fills the book from the families the Pushgateway serves, one
// family at a time. It runs before the first reserve, or after a reset
// while no push is reserved (a new turn: pushes wait for it).
type bookSeeder struct {
	b *book
	// groupOf names the group a series belongs to, from its labels; false
	// for a series of no group of the receiver's shape.
	groupOf  func(labels []*dto.LabelPair) (id string, ok bool)
	families int
}

// add records one family of the Pushgateway's /metrics.
func (s *bookSeeder) add(mf *dto.MetricFamily) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.families++
	name := mf.GetName()
	f := s.b.fams[name]
	if f == nil {
		f = &bookFamily{name: name, typ: mf.GetType()}
		s.b.fams[name] = f
	}
	if name == pushgateway.PushTimeMetric || name == pushgateway.PushFailureTimeMetric {
		f.typ, f.fixed = dto.MetricType_GAUGE, true
		return nil
	}
	for _, m := range mf.GetMetric() {
		id, ok := s.groupOf(m.GetLabel())
		if !ok {
			// The Pushgateway's own series (no job label), or a group of
			// another shape, which the receiver never replaces.
			f.fixed = true
			continue
		}
		h := s.b.groups[id]
		if h == nil {
			h = &holding{}
			s.b.groups[id] = h
		}
		// While one family is added, only it is appended to any list:
		// it is already there exactly when it is the last.
		if n := len(h.held); n > 0 && h.held[n-1] == f {
			continue
		}
		h.held = append(h.held, f)
		f.holders++
	}
	if f.holders == 0 && !f.fixed {
		delete(s.b.fams, name) // a family without series holds nothing
	}
	return nil
}

// done sorts the groups' lists (the Pushgateway serves families sorted, but
// the book must not depend on it).
func (s *bookSeeder) done() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	for _, h := range s.b.groups {
		slices.SortFunc(h.held, compareFamily)
		h.held = slices.CompactFunc(h.held, func(a, b *bookFamily) bool {
			if a != b {
				return false
			}
			b.holders-- // a name served twice: counted once per group
			return true
		})
	}
}

// seedLimit bounds a read of the Pushgateway's /metrics.
const seedLimit = 2 << 30

// seedBook fills the book with what the Pushgateway already holds, read
// family by family from its /metrics, and has the scheduler watch the
// groups of the receiver's found there. It is best effort: if it fails (the
// Pushgateway unreachable, or its /metrics already broken), the receiver
// goes on with what it learned, and a family it does not know of (one a
// group pushed before this start, which the receiver does not push again)
// is not checked against until the receiver pushes that group again.
func (r *Output) seedBook(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, groupsTimeout)
	defer cancel()
	s := &bookSeeder{b: r.book, groupOf: r.seedGroupOf()}
	found := pushgateway.NewGroupFinder(metricSamples)
	// One read of /metrics serves both the book and the groups to watch
	// for silence: on a big Pushgateway it is the costliest thing a start
	// does.
	err := r.push.Families(sctx, seedLimit, func(mf *dto.MetricFamily) error {
		found.Add(mf)
		return s.add(mf)
	})
	s.done()
	families, groups := r.book.size()
	if err != nil && ctx.Err() != nil {
		return // shutting down: no push follows
	}
	if err != nil {
		r.log.Warn("cannot read the Pushgateway's metric families; until their groups are pushed again, the consistency check does not know the families pushed before this start (a clash with one of them can break the Pushgateway's /metrics), and groups pushed before this start will not be marked down or deleted",
			"err", err, "families_read", s.families)
		return
	}
	r.log.Info("consistency check knows the Pushgateway's metric families", "families", families, "groups", groups)
	r.log.Info("watching the groups found in the Pushgateway", "groups", r.watch(r.ours(found.Groups())))
}

// seedGroupOf returns a function naming a series' group as the scheduler
// names it (the grouping key's path), from the series' grouping labels. A
// series without them is the Pushgateway's own (no job label) or of a
// group of another shape.
func (r *Output) seedGroupOf() func([]*dto.LabelPair) (string, bool) {
	ids := map[groupValues]string{}
	return func(labels []*dto.LabelPair) (string, bool) {
		v, _, ok := r.grouping.values(pairs(labels))
		if !ok {
			return "", false
		}
		id, ok := ids[v]
		if !ok {
			id = r.grouping.key(v).Path()
			ids[v] = id
		}
		return id, true
	}
}
