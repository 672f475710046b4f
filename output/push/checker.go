package push

import (
	"hash/maphash"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"

	"github.com/choria-io/prometheus-streams/pushgateway"
)

// checker is one push worker's side of the consistency check: it reserves
// a push's families in the shared book and checks its series, which needs
// no lock. Not safe for concurrent use; its buffers are reused across
// pushes.
type checker struct {
	book *book
	seed maphash.Seed
	h    maphash.Hash
	seen map[uint64]int // series hash -> index among the family's kept series
	rep  checkReport
}

// checkReport is what one check left out.
type checkReport struct {
	families map[string]int // by reason
	series   map[string]int // by reason
	first    familyClash    // the first family left out, for the log
	series1  string         // the first family a series was left out of, for the log
}

func (r *checkReport) reset() {
	clear(r.families)
	clear(r.series)
	r.first, r.series1 = familyClash{}, ""
}

func (r *checkReport) empty() bool { return len(r.families) == 0 && len(r.series) == 0 }

func newChecker(b *book) *checker {
	return &checker{
		book: b,
		seed: maphash.MakeSeed(),
		seen: map[uint64]int{},
		rep:  checkReport{families: map[string]int{}, series: map[string]int{}},
	}
}

// check returns the families of a push of group id that can go to the
// Pushgateway without breaking its /metrics, reserving them in the book
// (the caller settles the reservation once the push is over). fams must be
// sorted by name; they and their series are modified in place (series
// compacted, label pairs sorted). What was left out is in c.rep.
func (c *checker) check(id string, fams []*dto.MetricFamily) []*dto.MetricFamily {
	c.rep.reset()
	fams = c.mergeRepeated(fams)
	fams = c.book.reserve(id, fams, c.dropFamily)
	for _, mf := range fams {
		c.checkSeries(mf)
	}
	return fams
}

func (c *checker) dropFamily(fc familyClash) {
	if c.rep.first.reason == "" {
		c.rep.first = fc
	}
	c.rep.families[fc.reason]++
}

// mergeRepeated merges families of the same name (a protobuf exposition
// can send a name twice; the Pushgateway would keep only the last) into the
// first, as Prometheus would ingest the series of both. A repeat of
// another type is left out as a type clash.
func (c *checker) mergeRepeated(fams []*dto.MetricFamily) []*dto.MetricFamily {
	out := fams[:0]
	for _, mf := range fams {
		if n := len(out); n > 0 && out[n-1].GetName() == mf.GetName() {
			prev := out[n-1]
			if prev.GetType() != mf.GetType() {
				c.dropFamily(familyClash{reason: clashType, family: mf.GetName(), typ: mf.GetType(), other: prev.GetName(), otherTyp: prev.GetType()})
				continue
			}
			prev.Metric = append(prev.Metric, mf.Metric...)
			continue
		}
		out = append(out, mf)
	}
	return out
}

// checkSeries leaves out the series of mf that the Pushgateway's /metrics
// would refuse: one that client_golang's checkMetricConsistency rejects on
// its own (invalid), and one with the labels of an earlier series of the
// family (duplicate; the first is kept). The grouping labels the
// Pushgateway adds are the same for every series of a push (convert renamed
// the series' own labels of those names), so they cannot make or break a
// duplicate.
func (c *checker) checkSeries(mf *dto.MetricFamily) {
	typ := mf.GetType()
	kept := mf.Metric[:0]
	hashed := len(mf.Metric) > smallFamily
	if hashed {
		clear(c.seen)
	}
	for _, m := range mf.Metric {
		if !validSeries(typ, m) {
			c.dropSeries(seriesInvalid, mf)
			continue
		}
		if c.duplicate(kept, m, hashed) {
			c.dropSeries(seriesDuplicate, mf)
			continue
		}
		kept = append(kept, m)
	}
	clear(mf.Metric[len(kept):]) // no stale pointers past the end
	mf.Metric = kept
}

// smallFamily is the most series a family may have to be checked for
// duplicates by comparing each with the others, without hashing.
const smallFamily = 8

// duplicate reports whether m has the labels of a kept series, and (when
// hashed) records it as kept. A hash match alone decides nothing: on a
// collision every kept series is compared.
func (c *checker) duplicate(kept []*dto.Metric, m *dto.Metric, hashed bool) bool {
	isSame := func(k *dto.Metric) bool { return sameLabels(k, m) }
	if !hashed {
		return slices.ContainsFunc(kept, isSame)
	}
	sum := c.labelHash(m)
	if i, ok := c.seen[sum]; ok && (isSame(kept[i]) || slices.ContainsFunc(kept, isSame)) {
		return true
	}
	c.seen[sum] = len(kept)
	return false
}

func (c *checker) dropSeries(reason string, mf *dto.MetricFamily) {
	if c.rep.series1 == "" {
		c.rep.series1 = mf.GetName()
	}
	c.rep.series[reason]++
}

// labelHash hashes a series' sorted label pairs.
func (c *checker) labelHash(m *dto.Metric) uint64 {
	c.h.SetSeed(c.seed)
	for _, l := range m.GetLabel() {
		c.h.WriteString(l.GetName())
		c.h.WriteByte(model.SeparatorByte)
		c.h.WriteString(l.GetValue())
		c.h.WriteByte(model.SeparatorByte)
	}
	return c.h.Sum64()
}

func sameLabels(a, b *dto.Metric) bool {
	return slices.EqualFunc(a.GetLabel(), b.GetLabel(), func(x, y *dto.LabelPair) bool {
		return x.GetName() == y.GetName() && x.GetValue() == y.GetValue()
	})
}

func compareLabel(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) }

// validSeries sorts m's labels by name (as the Pushgateway stores them) and
// makes client_golang's checks of a single series (checkMetricConsistency):
// a value of the family's type, no label name reserved ("__" prefix) or
// repeated, no quantile label on a summary. Label names and values that are
// not valid UTF-8 never get this far: both parsers refuse them.
func validSeries(typ dto.MetricType, m *dto.Metric) bool {
	switch typ {
	case dto.MetricType_GAUGE:
		if m.Gauge == nil {
			return false
		}
	case dto.MetricType_COUNTER:
		if m.Counter == nil {
			return false
		}
	case dto.MetricType_SUMMARY:
		if m.Summary == nil {
			return false
		}
	case dto.MetricType_HISTOGRAM:
		if m.Histogram == nil {
			return false
		}
	case dto.MetricType_UNTYPED:
		if m.Untyped == nil {
			return false
		}
	}
	if !slices.IsSortedFunc(m.Label, compareLabel) {
		slices.SortFunc(m.Label, compareLabel)
	}
	prev := ""
	for i, l := range m.GetLabel() {
		name := l.GetName()
		if (i > 0 && name == prev) || name == "" || strings.HasPrefix(name, model.ReservedLabelPrefix) ||
			(m.Summary != nil && name == model.QuantileLabel) {
			return false
		}
		prev = name
	}
	return true
}

// checkFor returns the consistency check for a push of g, for convert and
// downBody: it reserves the families in the book (the caller settles them)
// and counts and logs what it leaves out.
func (w *worker) checkFor(g *group) func([]*dto.MetricFamily) []*dto.MetricFamily {
	if w.chk == nil {
		w.chk = newChecker(w.r.book)
	}
	return func(fams []*dto.MetricFamily) []*dto.MetricFamily {
		fams = w.chk.check(g.id, fams)
		w.r.reportCheck(g.key, &w.chk.rep)
		return fams
	}
}

// reportCheck counts what a check left out and logs it: at warning level
// at most once a minute, naming the first family left out with its type
// and the type of the family it clashed with; otherwise at debug level.
func (r *Output) reportCheck(key pushgateway.GroupingKey, rep *checkReport) {
	if rep.empty() {
		return
	}
	args := []any{"group", key}
	families, series := 0, 0
	for reason, n := range rep.families {
		r.metrics.familiesDropped.WithLabelValues(reason).Add(float64(n))
		families += n
	}
	for reason, n := range rep.series {
		r.metrics.seriesDropped.WithLabelValues(reason).Add(float64(n))
		series += n
	}
	if f := rep.first; f.reason != "" {
		args = append(args, "family", f.family, "type", typeName(f.typ), "reason", f.reason,
			"holder_family", f.other, "holder_type", typeName(f.otherTyp))
	}
	if rep.series1 != "" {
		args = append(args, "series_family", rep.series1)
	}
	args = append(args, "families_left_out", families, "series_left_out", series)
	const msg = "left parts of a scrape out of its push: the Pushgateway's /metrics could not serve them next to what it holds"
	r.logs.Log(logLeftOut, msg+" (further ones are logged at debug level for a minute)", msg, args...)
}

func typeName(t dto.MetricType) string { return strings.ToLower(t.String()) }
