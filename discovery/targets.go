package discovery

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/choria-io/prometheus-streams/config"
)

// Reasons a file_sd entry is refused: the reason label of
// prometheus_streams_poller_file_sd_targets_refused_total.
const (
	ReasonBadAddress  = "bad_address"  // no __address__, or not host[:port]
	ReasonBadScheme   = "bad_scheme"   // __scheme__ not http or https
	ReasonBadURL      = "bad_url"      // __metrics_path__ not absolute
	ReasonBadInstance = "bad_instance" // instance not valid UTF-8
	ReasonDuplicate   = "duplicate"    // instance name taken by another target of the job
	// ReasonUnreadable is a whole file that cannot be read or parsed.
	// Only Read reports it; a running Discovery logs it and keeps what the
	// file gave before, as Prometheus does.
	ReasonUnreadable = "unreadable"
)

// refusalReasons are the reasons counted per job, pre-created at zero.
var refusalReasons = []string{ReasonBadAddress, ReasonBadScheme, ReasonBadURL, ReasonBadInstance, ReasonDuplicate}

// Refusal is a file_sd entry that is not scraped, and why.
type Refusal struct {
	Job, File string
	// Target is the entry's __address__ (and instance label when set).
	Target string
	Reason string
	Err    error
}

func (r Refusal) Error() string {
	return fmt.Sprintf("job %q: file %s: target %s: %v", r.Job, r.File, r.Target, r.Err)
}

// source is one target group of one file: Prometheus's discovery/file
// names it "<file>:<index>".
type source struct {
	file  string
	index int
}

func parseSource(s string) source {
	i := strings.LastIndexByte(s, ':')
	n, err := strconv.Atoi(s[i+1:])
	if i < 0 || err != nil {
		return source{file: s}
	}
	return source{file: s[:i], index: n}
}

func (s source) compare(o source) int {
	return cmp.Or(cmp.Compare(s.file, o.file), cmp.Compare(s.index, o.index))
}

// jobInput is what a job's targets are merged from.
type jobInput struct {
	static   []config.Target
	settings *commoncfg.HTTPClientConfig
	groups   map[string]*targetgroup.Group // by source, of every file_sd entry of the job
}

// merged is the outcome of merging every job.
type merged struct {
	jobs    map[string][]config.Target
	refused []Refusal
	// ignored maps a job and file to the labels its targets carry that
	// cannot be carried (the envelope has job and instance only).
	ignored map[jobFile][]string
	// ignoredTargets counts, per job, the targets scraped without some of
	// their labels.
	ignoredTargets map[string]int
}

type jobFile struct{ job, file string }

// merge builds every job's targets: its static targets first, then those
// of its files in the order of file name and group. A target whose
// instance name is already taken is refused, unless it is the very same
// target (same name, same URL), as when two globs match one file.
func merge(inputs map[string]*jobInput) merged {
	out := merged{jobs: map[string][]config.Target{}, ignored: map[jobFile][]string{}, ignoredTargets: map[string]int{}}
	for _, job := range slices.Sorted(maps.Keys(inputs)) {
		in := inputs[job]
		targets := slices.Clone(in.static)
		byName := map[string]string{}
		for _, t := range targets {
			byName[t.Name] = t.URL
		}
		sources := slices.SortedFunc(maps.Keys(in.groups), func(a, b string) int {
			return parseSource(a).compare(parseSource(b))
		})
		for _, src := range sources {
			g := in.groups[src]
			file := parseSource(src).file
			for _, ls := range g.Targets {
				t, ignored, ref := toTarget(job, g.Labels, ls, in.settings)
				if ref != nil {
					ref.File = file
					out.refused = append(out.refused, *ref)
					continue
				}
				if u, taken := byName[t.Name]; taken {
					if u != t.URL {
						out.refused = append(out.refused, Refusal{
							Job: job, File: file, Target: describe(g.Labels, ls), Reason: ReasonDuplicate,
							Err: fmt.Errorf("instance name %q is already a target of the job (static or listed earlier) with URL %s", t.Name, redact(u)),
						})
					}
					continue
				}
				byName[t.Name] = t.URL
				targets = append(targets, t)
				if len(ignored) > 0 {
					k := jobFile{job, file}
					out.ignored[k] = union(out.ignored[k], ignored)
					out.ignoredTargets[job]++
				}
			}
		}
		out.jobs[job] = targets
	}
	return out
}

// toTarget maps one file_sd entry to a target as Prometheus would scrape
// it: <__scheme__>://<__address__><__metrics_path__>?<__param_*>, named
// after the instance label or else the address. It also returns the
// labels it cannot carry (any other label not starting with __, and job
// when it names another job).
func toTarget(job string, groupLabels, targetLabels model.LabelSet, settings *commoncfg.HTTPClientConfig) (config.Target, []string, *Refusal) {
	ls := groupLabels.Merge(targetLabels)
	refuse := func(reason string, err error) (config.Target, []string, *Refusal) {
		return config.Target{}, nil, &Refusal{Job: job, Target: describe(groupLabels, targetLabels), Reason: reason, Err: err}
	}
	addr := string(ls[model.AddressLabel])
	if err := checkAddress(addr); err != nil {
		return refuse(ReasonBadAddress, err)
	}
	scheme := cmp.Or(string(ls[model.SchemeLabel]), "http")
	if scheme != "http" && scheme != "https" {
		return refuse(ReasonBadScheme, fmt.Errorf("__scheme__ %q: must be http or https", scheme))
	}
	path := cmp.Or(string(ls[model.MetricsPathLabel]), "/metrics")
	if !strings.HasPrefix(path, "/") {
		return refuse(ReasonBadURL, fmt.Errorf("__metrics_path__ %q: must start with /", path))
	}
	q := url.Values{}
	var ignored []string
	for name, value := range ls {
		n := string(name)
		switch {
		case strings.HasPrefix(n, model.ParamLabelPrefix):
			q.Set(strings.TrimPrefix(n, model.ParamLabelPrefix), string(value))
		case strings.HasPrefix(n, model.ReservedLabelPrefix), n == model.InstanceLabel:
			// __address__, __scheme__, __metrics_path__ are used above;
			// __meta_* and other reserved labels Prometheus drops too.
		case n == model.JobLabel && string(value) == job:
		default:
			ignored = append(ignored, n)
		}
	}
	u := url.URL{Scheme: scheme, Host: addr, Path: path, RawQuery: q.Encode()}
	name := cmp.Or(string(ls[model.InstanceLabel]), addr)
	if !utf8.ValidString(name) {
		return refuse(ReasonBadInstance, fmt.Errorf("instance %q is not valid UTF-8", name))
	}
	slices.Sort(ignored)
	return config.Target{Job: job, Name: name, URL: u.String(), HTTPClient: settings}, ignored, nil
}

// checkAddress accepts host or host:port, as Prometheus's __address__;
// anything that would turn into more of the URL than its host (a scheme,
// a path, user info) is refused.
func checkAddress(addr string) error {
	switch {
	case addr == "":
		return errors.New("no address (__address__ is empty)")
	case strings.ContainsAny(addr, "/?#@ \t"):
		return fmt.Errorf("address %q: must be host or host:port, without a scheme or path", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" && !strings.Contains(addr, ":") {
			return nil // a bare host name, as Prometheus accepts
		}
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q: port %q is not a number between 1 and 65535", addr, port)
	}
	return nil
}

// describe names an entry in messages: its address, and its instance
// label when it has one.
func describe(groupLabels, targetLabels model.LabelSet) string {
	ls := groupLabels.Merge(targetLabels)
	s := strconv.Quote(string(ls[model.AddressLabel]))
	if in, ok := ls[model.InstanceLabel]; ok {
		s += " (instance " + strconv.Quote(string(in)) + ")"
	}
	return s
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// redact hides a password in a URL's user info.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
