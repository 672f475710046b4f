package push

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

var (
	counter   = dto.MetricType_COUNTER
	gaugeType = dto.MetricType_GAUGE
	histogram = dto.MetricType_HISTOGRAM
	summary   = dto.MetricType_SUMMARY
)

// series builds a series of type typ with labels given as name, value, ...
func series(typ dto.MetricType, labels ...string) *dto.Metric {
	m := &dto.Metric{}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	switch typ {
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: proto.Float64(1)}
	case dto.MetricType_GAUGE:
		m.Gauge = &dto.Gauge{Value: proto.Float64(1)}
	case dto.MetricType_SUMMARY:
		m.Summary = &dto.Summary{SampleCount: proto.Uint64(1)}
	case dto.MetricType_HISTOGRAM:
		m.Histogram = &dto.Histogram{SampleCount: proto.Uint64(1)}
	default:
		m.Untyped = &dto.Untyped{Value: proto.Float64(1)}
	}
	return m
}

// fam builds a family; without series it gets one without labels.
func fam(name string, typ dto.MetricType, ms ...*dto.Metric) *dto.MetricFamily {
	if len(ms) == 0 {
		ms = []*dto.Metric{series(typ)}
	}
	return &dto.MetricFamily{Name: proto.String(name), Type: typ.Enum(), Metric: ms}
}

func sortedFams(fams []*dto.MetricFamily) []*dto.MetricFamily {
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return fams
}

func famNames(fams []*dto.MetricFamily) []string {
	out := []string{}
	for _, mf := range fams {
		out = append(out, mf.GetName())
	}
	return out
}

// checkBook verifies the book's invariants: every group's lists are sorted
// and refer to the book's own entries, and each family's holders is the
// number of groups whose old or reserved families include it.
func checkBook(t *testing.T, b *book) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	counts := map[*bookFamily]int{}
	for id, h := range b.groups {
		if !slices.IsSortedFunc(h.held, compareFamily) || !slices.IsSortedFunc(h.pending, compareFamily) {
			t.Errorf("group %s: lists not sorted", id)
		}
		if !h.inFlight && len(h.pending) > 0 {
			t.Errorf("group %s: pending families without a push in flight", id)
		}
		for _, f := range union(h.held, h.pending) {
			counts[f]++
			if b.fams[f.name] != f {
				t.Errorf("group %s holds %s, which the book does not know", id, f.name)
			}
		}
	}
	for name, f := range b.fams {
		if f.holders != counts[f] {
			t.Errorf("%s: holders %d, but %d groups hold it", name, f.holders, counts[f])
		}
		if f.holders == 0 && !f.fixed {
			t.Errorf("%s: in the book with no holder", name)
		}
	}
}

type bookStep struct {
	group   string
	fams    []*dto.MetricFamily
	outcome pushOutcome
	hold    bool // leave the push in flight
	settle  bool // only settle group's push in flight with outcome
	forget  bool // the group was deleted
	want    []string
	clashes []string
}

func TestBook(t *testing.T) {
	push := func(group string, want []string, clashes []string, fams ...*dto.MetricFamily) bookStep {
		return bookStep{group: group, fams: fams, want: want, clashes: clashes}
	}
	with := func(s bookStep, o pushOutcome, hold bool) bookStep { s.outcome, s.hold = o, hold; return s }
	settle := func(group string, o pushOutcome) bookStep { return bookStep{group: group, settle: true, outcome: o} }
	type ss = []string
	cases := []struct {
		name  string
		steps []bookStep
	}{
		{"type clash across groups: the first holder wins", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			push("b", ss{"y"}, ss{clashType}, fam("x", gaugeType), fam("y", gaugeType)),
			push("b", ss{"x"}, nil, fam("x", counter)),
		}},
		{"a group changes the type of a family only it holds", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			push("a", ss{"x"}, nil, fam("x", gaugeType)),
			push("b", ss{"x"}, nil, fam("x", gaugeType)),
		}},
		{"a type another group shares does not change", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			push("b", ss{"x"}, nil, fam("x", counter)),
			push("a", ss{}, ss{clashType}, fam("x", gaugeType)),
		}},
		{"a histogram's series names held by another group", []bookStep{
			push("a", ss{"h"}, nil, fam("h", histogram)),
			push("b", ss{"ok"}, ss{clashName, clashName, clashName}, fam("h_bucket", gaugeType), fam("h_count", gaugeType), fam("h_sum", counter), fam("ok", gaugeType)),
		}},
		{"a summary has no _bucket series", []bookStep{
			push("a", ss{"s"}, nil, fam("s", summary)),
			push("b", ss{"s_bucket"}, ss{clashName}, fam("s_bucket", gaugeType), fam("s_count", gaugeType)),
		}},
		{"a histogram after a family named like its series", []bookStep{
			push("a", ss{"h_count"}, nil, fam("h_count", gaugeType)),
			push("b", ss{}, ss{clashName}, fam("h", histogram)),
			push("b", ss{"h"}, nil, fam("h", gaugeType)),
		}},
		{"collisions within one push: the base name, first in order, is kept", []bookStep{
			push("a", ss{"h", "s", "s_bucket"}, ss{clashName, clashName}, fam("h", histogram), fam("h_count", gaugeType), fam("s", summary), fam("s_bucket", gaugeType), fam("s_sum", gaugeType)),
		}},
		{"a group's own old families do not collide with its new ones", []bookStep{
			push("a", ss{"h_count"}, nil, fam("h_count", gaugeType)),
			push("a", ss{"h"}, nil, fam("h", histogram)),
			push("b", ss{}, ss{clashName}, fam("h_count", gaugeType)),
		}},
		{"push time families are the Pushgateway's gauges", []bookStep{
			push("a", ss{"push_time_seconds"}, ss{clashType}, fam("push_failure_time_seconds", counter), fam("push_time_seconds", gaugeType)),
		}},
		{"a refused push leaves the old set", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			with(push("a", ss{"x", "y"}, nil, fam("x", gaugeType), fam("y", counter)), pushNotApplied, false),
			push("b", ss{"x", "y"}, nil, fam("x", counter), fam("y", gaugeType)),
		}},
		{"a push in flight holds its old and new families", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			with(push("a", ss{"y"}, nil, fam("y", counter)), pushApplied, true),
			push("b", ss{}, ss{clashType, clashType}, fam("x", gaugeType), fam("y", gaugeType)),
			settle("a", pushApplied),
			push("b", ss{"x"}, ss{clashType}, fam("x", gaugeType), fam("y", gaugeType)),
		}},
		{"a type change in flight: nobody else uses the name until it settles", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			with(push("a", ss{"x"}, nil, fam("x", gaugeType)), pushApplied, true),
			push("b", ss{}, ss{clashType}, fam("x", gaugeType)),
			push("b", ss{}, ss{clashType}, fam("x", counter)),
			settle("a", pushNotApplied),
			push("b", ss{"x"}, nil, fam("x", counter)),
		}},
		{"an unknown outcome holds both sets until the next push", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			with(push("a", ss{"y"}, nil, fam("y", counter)), pushUnknown, false),
			push("b", ss{}, ss{clashType, clashType}, fam("x", gaugeType), fam("y", gaugeType)),
			push("a", ss{"y"}, nil, fam("y", counter)),
			push("b", ss{"x"}, ss{clashType}, fam("x", gaugeType), fam("y", gaugeType)),
		}},
		{"a type change with an unknown outcome may be either type", []bookStep{
			push("a", ss{"h"}, nil, fam("h", counter)),
			with(push("a", ss{"h"}, nil, fam("h", histogram)), pushUnknown, false),
			push("b", ss{}, ss{clashType, clashName}, fam("h", counter), fam("h_count", gaugeType)),
			with(push("a", ss{"h"}, nil, fam("h", counter)), pushNotApplied, false),
			push("b", ss{}, ss{clashName}, fam("h_count", gaugeType)),
			push("a", ss{"h"}, nil, fam("h", counter)),
			push("b", ss{"h", "h_count"}, nil, fam("h", counter), fam("h_count", gaugeType)),
		}},
		{"a deleted group releases its families", []bookStep{
			push("a", ss{"x"}, nil, fam("x", counter)),
			{group: "a", forget: true},
			push("b", ss{"x"}, nil, fam("x", gaugeType)),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBook()
			for i, s := range c.steps {
				switch {
				case s.settle:
					b.settle(s.group, s.outcome)
				case s.forget:
					b.forget(s.group)
				default:
					var clashes []string
					kept := b.reserve(s.group, sortedFams(s.fams), func(fc familyClash) { clashes = append(clashes, fc.reason) })
					if got := famNames(kept); !slices.Equal(got, s.want) || !slices.Equal(clashes, s.clashes) {
						t.Fatalf("step %d (%s): kept %v, clashes %v; want %v, %v", i, s.group, got, clashes, s.want, s.clashes)
					}
					if !s.hold {
						b.settle(s.group, s.outcome)
					}
				}
				checkBook(t, b)
			}
		})
	}
}

// TestBookConcurrentReservations has many groups reserve one family with
// either of two types at once: whatever the interleaving, the groups that
// get it through agree on its type, and the book's counts stay exact as
// the pushes settle every way.
func TestBookConcurrentReservations(t *testing.T) {
	b := newBook()
	const groups = 32
	for round := range 20 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		types := make([]dto.MetricType, groups)
		kept := make([]bool, groups)
		for i := range groups {
			wg.Go(func() {
				typ := counter
				if (i+round)%2 == 1 {
					typ = gaugeType
				}
				id := fmt.Sprint("g", i)
				<-start
				got := b.reserve(id, sortedFams([]*dto.MetricFamily{fam("shared", typ), fam(fmt.Sprint("own_", i), gaugeType)}), func(familyClash) {})
				types[i] = typ
				kept[i] = slices.ContainsFunc(got, func(mf *dto.MetricFamily) bool { return mf.GetName() == "shared" })
			})
		}
		close(start)
		wg.Wait()
		var winner *dto.MetricType
		for i := range groups {
			if !kept[i] {
				continue
			}
			if winner == nil {
				winner = &types[i]
			} else if *winner != types[i] {
				t.Fatalf("round %d: groups pushing shared as %v and %v both got through", round, *winner, types[i])
			}
		}
		if winner == nil {
			t.Fatalf("round %d: nobody got shared through", round)
		}
		checkBook(t, b)
		for i := range groups {
			wg.Go(func() { b.settle(fmt.Sprint("g", i), pushOutcome((i+round)%3)) })
		}
		wg.Wait()
		checkBook(t, b)
	}
}

func TestCheckerSeries(t *testing.T) {
	many := func() []*dto.Metric {
		var ms []*dto.Metric
		for i := range 20 {
			ms = append(ms, series(gaugeType, "i", fmt.Sprint(i)))
		}
		return append(ms, series(gaugeType, "i", "7"))
	}
	bad := &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(1)}}
	cases := []struct {
		name     string
		fams     []*dto.MetricFamily
		want     map[string]int // family -> series kept
		series   map[string]int // reason -> dropped
		families map[string]int
	}{
		{
			name:   "duplicate series: the first is kept",
			fams:   []*dto.MetricFamily{fam("x", gaugeType, series(gaugeType, "a", "1"), series(gaugeType, "a", "2"), series(gaugeType, "a", "1"))},
			want:   map[string]int{"x": 2},
			series: map[string]int{seriesDuplicate: 1},
		},
		{
			name:   "label order does not make a series distinct",
			fams:   []*dto.MetricFamily{fam("x", gaugeType, series(gaugeType, "a", "1", "b", "2"), series(gaugeType, "b", "2", "a", "1"))},
			want:   map[string]int{"x": 1},
			series: map[string]int{seriesDuplicate: 1},
		},
		{
			name:   "a large family is checked by hash",
			fams:   []*dto.MetricFamily{fam("x", gaugeType, many()...)},
			want:   map[string]int{"x": 20},
			series: map[string]int{seriesDuplicate: 1},
		},
		{
			name: "series the Pushgateway cannot serve",
			fams: []*dto.MetricFamily{
				fam("x", gaugeType, bad, series(gaugeType, "__reserved", "1"), series(gaugeType, "a", "1", "a", "2"), series(gaugeType, "ok", "1")),
				fam("s", summary, series(summary, "quantile", "0.5")),
			},
			want:   map[string]int{"x": 1, "s": 0},
			series: map[string]int{seriesInvalid: 4},
		},
		{
			name: "a family sent twice is merged, or left out with another type",
			fams: []*dto.MetricFamily{
				fam("x", gaugeType, series(gaugeType, "a", "1")), fam("x", gaugeType, series(gaugeType, "a", "2"), series(gaugeType, "a", "1")),
				fam("x", counter, series(counter, "a", "3")),
			},
			want:     map[string]int{"x": 2},
			series:   map[string]int{seriesDuplicate: 1},
			families: map[string]int{clashType: 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chk := newChecker(newBook())
			got := chk.check("g", c.fams)
			have := map[string]int{}
			for _, mf := range got {
				have[mf.GetName()] = len(mf.GetMetric())
			}
			for name, n := range c.want {
				if have[name] != n {
					t.Errorf("%s: %d series kept, want %d", name, have[name], n)
				}
			}
			if !mapsEqual(chk.rep.series, c.series) || !mapsEqual(chk.rep.families, c.families) {
				t.Errorf("dropped series %v, families %v; want %v, %v", chk.rep.series, chk.rep.families, c.series, c.families)
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBookSeed(t *testing.T) {
	for _, publisherLabel := range []bool{false, true} {
		t.Run(fmt.Sprint("publisher_label=", publisherLabel), func(t *testing.T) {
			r, err := New(Options{MaxAge: time.Minute, PublisherLabel: publisherLabel}, nil, nil, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			group := func(inst string, more ...string) []string {
				l := append([]string{"instance", inst, "job", "node"}, more...)
				if publisherLabel {
					l = append(l, "publisher", "dc1")
				}
				return l
			}
			// What a Pushgateway serves: its own series have no job label.
			s := &bookSeeder{b: r.book, groupOf: r.seedGroupOf()}
			for _, mf := range []*dto.MetricFamily{
				fam("go_goroutines", gaugeType, series(gaugeType), series(gaugeType, group("a")...)),
				fam("node_x", counter, series(counter, group("a", "cpu", "0")...), series(counter, group("b", "cpu", "0")...), series(counter, group("a", "cpu", "1")...)),
				fam("push_time_seconds", gaugeType, series(gaugeType, group("a")...), series(gaugeType, group("b")...)),
				fam("batch_x", gaugeType, series(gaugeType, "job", "batch")),
				fam("pub_x", gaugeType, series(gaugeType, "instance", "a", "job", "node")),
			} {
				if err := s.add(mf); err != nil {
					t.Fatal(err)
				}
			}
			s.done()
			checkBook(t, r.book)
			idOf := func(inst string) string {
				id, ok := r.seedGroupOf()(series(gaugeType, group(inst)...).GetLabel())
				if !ok {
					t.Fatalf("no group for instance %s", inst)
				}
				return id
			}
			a, b := idOf("a"), idOf("b")
			// go_goroutines and node_x; and pub_x, unless publisher_label
			// makes it of no group of the receiver's, held for good.
			wantHeld := 3
			if publisherLabel {
				wantHeld = 2
			}
			if got := len(r.book.groups[a].held); got != wantHeld {
				t.Errorf("group a holds %d families, want %d", got, wantHeld)
			}
			if got := r.book.fams["pub_x"].fixed; got != publisherLabel {
				t.Errorf("pub_x fixed = %v, want %v", got, publisherLabel)
			}
			for _, name := range []string{"go_goroutines", "batch_x", "push_time_seconds"} {
				if !r.book.fams[name].fixed {
					t.Errorf("%s is not held for good", name)
				}
			}
			reserve := func(id string, fams ...*dto.MetricFamily) []string {
				var clashes []string
				r.book.reserve(id, sortedFams(fams), func(fc familyClash) { clashes = append(clashes, fc.family) })
				r.book.settle(id, pushApplied)
				return clashes
			}
			if got := reserve(b, fam("node_x", gaugeType)); !slices.Equal(got, []string{"node_x"}) {
				t.Errorf("b retyping node_x, which a holds too: clashes %v", got)
			}
			if got := reserve(idOf("c"), fam("batch_x", counter), fam("go_goroutines", counter)); len(got) != 2 {
				t.Errorf("retyping the Pushgateway's own and a foreign group's families: clashes %v, want both", got)
			}
			// b pushes again without node_x: a alone holds it and may retype it.
			reserve(b, fam("other", gaugeType))
			if got := reserve(a, fam("node_x", gaugeType)); len(got) != 0 {
				t.Errorf("a retyping node_x it alone holds: clashes %v", got)
			}
			checkBook(t, r.book)
		})
	}
}
