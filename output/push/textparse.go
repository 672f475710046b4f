package push

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// The receiver reads text 0.0.4 with Prometheus's own scrape parser
// (model/textparse's PromParser), not with expfmt's TextParser: it is what
// Prometheus ingests every scrape with, and it reads the node exporter
// sample in about half the time with a fifth of the allocations
// (BenchmarkParseText), which decides whether the receiver keeps up with the
// Pushgateway (docs/performance.md). PromParser yields one sample at a time,
// so textFamilies groups them into MetricFamily messages as expfmt's
// TextParser does (TestParseTextMatchesExpfmt holds the two to the same
// result): summary and histogram samples join their family by the
// _sum/_count/_bucket suffixes, one metric per label set without quantile
// or le; families without samples are dropped; a second HELP or TYPE line
// for a name, or a TYPE line after the family's samples, is an error.

// textFamilies builds families from a text exposition.
type textFamilies struct {
	fams   []*dto.MetricFamily
	byName map[string]*textFamily
	arena  arena
}

type textFamily struct {
	mf      *dto.MetricFamily
	typed   bool
	helped  bool
	byLabel map[uint64]*dto.Metric // summaries and histograms: hash of the labels without quantile/le -> metric
}

// parseText reads a text 0.0.4 exposition into metric families. The parser
// appends a newline to body, so body's spare capacity (not its contents) is
// written: the caller must own it. The families point into memory of their
// own, not into body.
func parseText(body []byte) ([]*dto.MetricFamily, error) {
	if i := bytes.IndexByte(body, 0); i >= 0 {
		// PromParser's lexer takes a NUL for the end of the input and
		// would read a body of zeros, or one cut by a NUL, as complete.
		return nil, fmt.Errorf("parse text exposition: NUL byte at offset %d", i)
	}
	// Sized for a node exporter (about 300 families), so the map and the
	// list grow at most once or twice for bigger expositions.
	t := &textFamilies{byName: make(map[string]*textFamily, 512), fams: make([]*dto.MetricFamily, 0, 512)}
	p := textparse.NewPromParser(body, nil, false) // the default labels build keeps no symbol table
	var lset labels.Labels
	var hashBuf []byte
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse text exposition: %w", err)
		}
		switch entry {
		case textparse.EntryHelp:
			name, help := p.Help()
			f := t.family(unquoteName(name))
			if f.helped {
				return nil, fmt.Errorf("parse text exposition: second HELP line for metric name %q", name)
			}
			f.helped = true
			f.mf.Help = t.arena.str(string(help))
		case textparse.EntryType:
			name, typ := p.Type()
			f := t.family(unquoteName(name))
			if f.typed || len(f.mf.Metric) > 0 {
				return nil, fmt.Errorf("parse text exposition: second TYPE line for metric name %q, or TYPE reported after samples", name)
			}
			f.typed = true
			f.mf.Type = t.arena.metricType(metricType(typ))
		case textparse.EntrySeries:
			_, ts, v := p.Series()
			p.Labels(&lset)
			if err := t.sample(lset, ts, v, &hashBuf); err != nil {
				return nil, fmt.Errorf("parse text exposition: %w", err)
			}
		}
	}
	kept := t.fams[:0]
	for _, mf := range t.fams {
		if len(mf.Metric) > 0 {
			kept = append(kept, mf)
		}
	}
	return kept, nil
}

// unquoteName undoes the escapes of a quoted UTF-8 name in a HELP or TYPE
// line, which PromParser hands over as written (it unescapes them in
// sample names), so the line names the family its samples belong to.
func unquoteName(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	return nameUnescaper.Replace(string(b))
}

// nameUnescaper is read-only after initialisation.
var nameUnescaper = strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\n`, "\n")

func metricType(t model.MetricType) dto.MetricType {
	switch t {
	case model.MetricTypeCounter:
		return dto.MetricType_COUNTER
	case model.MetricTypeGauge:
		return dto.MetricType_GAUGE
	case model.MetricTypeHistogram:
		return dto.MetricType_HISTOGRAM
	case model.MetricTypeSummary:
		return dto.MetricType_SUMMARY
	}
	return dto.MetricType_UNTYPED
}

func (t *textFamilies) family(name string) *textFamily {
	if f, ok := t.byName[name]; ok {
		return f
	}
	mf := take(&t.arena.families)
	mf.Name, mf.Type = t.arena.str(name), t.arena.metricType(dto.MetricType_UNTYPED)
	f := take(&t.arena.textFamilies)
	f.mf = mf
	t.byName[name] = f
	t.fams = append(t.fams, f.mf)
	return f
}

// owner finds the family a sample belongs to: a summary's or histogram's
// for its _sum, _count (and _bucket) series when that family was typed so,
// else the family of its own name.
func (t *textFamilies) owner(name string) (f *textFamily, suffix string) {
	for _, s := range []string{"_bucket", "_count", "_sum"} {
		base, ok := strings.CutSuffix(name, s)
		if !ok {
			continue
		}
		if f, ok := t.byName[base]; ok {
			switch f.mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				return f, s
			case dto.MetricType_SUMMARY:
				if s != "_bucket" {
					return f, s
				}
			}
		}
	}
	return t.family(name), ""
}

// sample adds one sample to its family.
func (t *textFamilies) sample(lset labels.Labels, ts *int64, v float64, hashBuf *[]byte) error {
	name := lset.Get(model.MetricNameLabel)
	f, suffix := t.owner(name)
	typ := f.mf.GetType()
	var special string // quantile or le, folded into the metric's value
	switch {
	case typ == dto.MetricType_SUMMARY && suffix == "":
		special = model.QuantileLabel
	case typ == dto.MetricType_HISTOGRAM && suffix != "_sum" && suffix != "_count":
		special = model.BucketLabel
	}
	pairs, specialValue, haveSpecial, err := t.labelPairs(lset, name, special)
	if err != nil {
		return err
	}
	m := t.metric(f, typ, lset, pairs, hashBuf)
	if ts != nil {
		m.TimestampMs = t.arena.i64(*ts)
	}
	return t.setValue(m, typ, suffix, name, v, specialValue, haveSpecial)
}

// labelPairs turns a sample's labels into the metric's label pairs,
// leaving out the name and special (quantile or le), whose value it returns.
func (t *textFamilies) labelPairs(lset labels.Labels, name, special string) (pairs []*dto.LabelPair, specialValue string, haveSpecial bool, err error) {
	pairs = t.arena.pairList(lset.Len())
	prev := ""
	names := 0
	lset.Range(func(l labels.Label) {
		switch {
		case err != nil:
			return
		case l.Name == model.MetricNameLabel:
			if names++; names > 1 {
				err = fmt.Errorf("metric %s: a %s label inside the braces", name, model.MetricNameLabel)
			} else if !utf8.ValidString(l.Value) {
				err = fmt.Errorf("metric name %q is not valid UTF-8", l.Value)
			}
			return
		case !utf8.ValidString(l.Name):
			err = fmt.Errorf("metric %s: label name %q is not valid UTF-8", name, l.Name)
			return
		case l.Name == special:
			specialValue, haveSpecial = l.Value, true
			return
		case l.Name == prev:
			err = fmt.Errorf("metric %s: duplicate label name %q", name, l.Name)
			return
		case !utf8.ValidString(l.Value):
			err = fmt.Errorf("metric %s: label %s has an invalid UTF-8 value", name, l.Name)
			return
		}
		prev = l.Name
		pairs = append(pairs, t.arena.pair(l.Name, l.Value))
	})
	return pairs, specialValue, haveSpecial, err
}

// metric returns the metric a sample goes to: a new one, or for summaries
// and histograms the one of its label set.
func (t *textFamilies) metric(f *textFamily, typ dto.MetricType, lset labels.Labels, pairs []*dto.LabelPair, hashBuf *[]byte) *dto.Metric {
	var m *dto.Metric
	if typ == dto.MetricType_SUMMARY || typ == dto.MetricType_HISTOGRAM {
		if f.byLabel == nil {
			f.byLabel = map[uint64]*dto.Metric{}
		}
		// As Prometheus keys series: a 64-bit hash of the labels, here
		// without the name and the label folded into the value.
		var key uint64
		// Only the family's own special label is left out, as expfmt does:
		// a histogram series that differs in a quantile label is another
		// series, not another bucket.
		fold := model.BucketLabel
		if typ == dto.MetricType_SUMMARY {
			fold = model.QuantileLabel
		}
		key, *hashBuf = lset.HashWithoutLabels(*hashBuf, fold)
		if m = f.byLabel[key]; m == nil {
			m = t.arena.metric(pairs)
			f.byLabel[key] = m
			f.mf.Metric = append(f.mf.Metric, m)
		}
	} else {
		m = t.arena.metric(pairs)
		f.mf.Metric = append(f.mf.Metric, m)
	}
	return m
}

// setValue folds a sample's value into its metric.
func (t *textFamilies) setValue(m *dto.Metric, typ dto.MetricType, suffix, name string, v float64, specialValue string, haveSpecial bool) error {
	switch typ {
	case dto.MetricType_COUNTER:
		m.Counter = take(&t.arena.counters)
		m.Counter.Value = t.arena.f64(v)
	case dto.MetricType_GAUGE:
		m.Gauge = take(&t.arena.gauges)
		m.Gauge.Value = t.arena.f64(v)
	case dto.MetricType_UNTYPED:
		m.Untyped = take(&t.arena.untyped)
		m.Untyped.Value = t.arena.f64(v)
	case dto.MetricType_SUMMARY:
		if m.Summary == nil {
			m.Summary = &dto.Summary{}
		}
		switch suffix {
		case "_sum":
			m.Summary.SampleSum = t.arena.f64(v)
		case "_count":
			m.Summary.SampleCount = t.arena.u64(uint64(v))
		default:
			if !haveSpecial {
				break // as expfmt: the metric is kept, the sample without a quantile is not
			}
			q, err := strconv.ParseFloat(specialValue, 64)
			if err != nil {
				return fmt.Errorf("metric %s: quantile %q is not a number", name, specialValue)
			}
			m.Summary.Quantile = append(m.Summary.Quantile, &dto.Quantile{Quantile: t.arena.f64(q), Value: t.arena.f64(v)})
		}
	case dto.MetricType_HISTOGRAM:
		if m.Histogram == nil {
			m.Histogram = &dto.Histogram{}
		}
		switch suffix {
		case "_sum":
			m.Histogram.SampleSum = t.arena.f64(v)
		case "_count":
			m.Histogram.SampleCount = t.arena.u64(uint64(v))
		default:
			if !haveSpecial {
				break // as expfmt: a histogram sample without le (or suffix) is left out
			}
			le, err := strconv.ParseFloat(specialValue, 64)
			if err != nil {
				return fmt.Errorf("metric %s: le %q is not a number", name, specialValue)
			}
			m.Histogram.Bucket = append(m.Histogram.Bucket, &dto.Bucket{UpperBound: t.arena.f64(le), CumulativeCount: t.arena.u64(uint64(v))})
		}
	}
	return nil
}

// arena hands out the many small values a scrape's families point to from
// chunks, so building 500 series costs tens of allocations, not thousands.
// Chunks are never grown in place: what was handed out keeps its address.
type arena struct {
	families     []dto.MetricFamily
	textFamilies []textFamily
	types        []dto.MetricType
	metrics      []dto.Metric
	counters     []dto.Counter
	gauges       []dto.Gauge
	untyped      []dto.Untyped
	lists        []*dto.LabelPair
	pairs        []dto.LabelPair
	strs         []string
	f64s         []float64
	u64s         []uint64
	i64s         []int64
}

const arenaChunk = 256

// take returns the next element of *chunk, starting a new chunk when full.
func take[T any](chunk *[]T) *T {
	if len(*chunk) == cap(*chunk) {
		*chunk = make([]T, 0, arenaChunk)
	}
	*chunk = (*chunk)[:len(*chunk)+1]
	return &(*chunk)[len(*chunk)-1]
}

func (a *arena) str(s string) *string {
	p := take(&a.strs)
	*p = s
	return p
}

func (a *arena) metricType(v dto.MetricType) *dto.MetricType {
	p := take(&a.types)
	*p = v
	return p
}

func (a *arena) f64(v float64) *float64 {
	p := take(&a.f64s)
	*p = v
	return p
}

func (a *arena) u64(v uint64) *uint64 {
	p := take(&a.u64s)
	*p = v
	return p
}

func (a *arena) i64(v int64) *int64 {
	p := take(&a.i64s)
	*p = v
	return p
}

func (a *arena) pair(name, value string) *dto.LabelPair {
	p := take(&a.pairs)
	p.Name, p.Value = a.str(name), a.str(value)
	return p
}

// pairList returns an empty list with room for n label pairs, cut from a
// chunk with its capacity capped, so an append beyond n copies instead of
// overwriting the next list.
func (a *arena) pairList(n int) []*dto.LabelPair {
	if n > arenaChunk {
		return make([]*dto.LabelPair, 0, n)
	}
	if cap(a.lists)-len(a.lists) < n {
		a.lists = make([]*dto.LabelPair, 0, arenaChunk*4)
	}
	start := len(a.lists)
	a.lists = a.lists[:start+n]
	return a.lists[start : start : start+n]
}

func (a *arena) metric(pairs []*dto.LabelPair) *dto.Metric {
	m := take(&a.metrics)
	m.Label = pairs
	return m
}
