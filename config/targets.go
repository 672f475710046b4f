package config

import (
	"cmp"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Job is one entry of jobs: the targets scraped under that job name.
type Job struct {
	Targets []TargetConfig `yaml:"targets"`
}

// TargetConfig is one target as written in the file.
type TargetConfig struct {
	// Name becomes the instance label; when empty it is the URL's
	// host:port, with the scheme's default port (80 or 443) filled in as
	// Prometheus does.
	Name string `yaml:"name,omitempty"`
	// URL is the absolute http or https URL to scrape.
	URL string `yaml:"url"`
}

// Target is a resolved target: its job, its instance name and its URL.
type Target struct {
	Job, Name, URL string
}

// Targets returns every target the poller scrapes, names resolved, sorted
// by job then name. When monitor_port > 0 it includes SelfScrapeJob with one
// target named after identity at http://localhost:<monitor_port>/metrics,
// as 1.0 did; when monitor_listen names a specific host, that host is used
// instead of localhost. The slice is new on every call.
func (c *Config) Targets() []Target {
	var out []Target
	for job, j := range c.Jobs {
		for _, t := range j.Targets {
			out = append(out, Target{Job: job, Name: t.resolvedName(), URL: t.URL})
		}
	}
	if self, ok := c.selfTarget(); ok {
		out = append(out, self)
	}
	slices.SortFunc(out, func(a, b Target) int {
		return cmp.Or(cmp.Compare(a.Job, b.Job), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func (c *Config) selfTarget() (Target, bool) {
	if c.MonitorPort <= 0 {
		return Target{}, false
	}
	host := bareHost(c.MonitorListen)
	switch host {
	case "", "0.0.0.0", "::":
		host = "localhost" // bound to every interface: loopback reaches it
	}
	return Target{
		Job:  SelfScrapeJob,
		Name: c.Identity,
		URL:  "http://" + net.JoinHostPort(host, strconv.Itoa(c.MonitorPort)) + "/metrics",
	}, true
}

// resolvedName is Name, or the URL's host:port when Name is empty.
func (t TargetConfig) resolvedName() string {
	if t.Name != "" {
		return t.Name
	}
	u, err := url.Parse(t.URL)
	if err != nil || u.Hostname() == "" {
		return t.URL // Parse refused it already; keep Targets total
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// checkJobs checks job names, target URLs and names, and that no two
// targets of a job resolve to the same name (they would overwrite each
// other's group in the Pushgateway).
func (c *Config) checkJobs(k *checker) {
	for _, job := range slices.Sorted(maps.Keys(c.Jobs)) {
		p := keyPath{"jobs", job}
		if !validLabelValue(job) {
			k.errorf(p, "job name %q must be non-empty valid UTF-8", job)
		}
		targets := c.Jobs[job].Targets
		if len(targets) == 0 {
			k.warnf(p, "has no targets")
		}
		firstLine := map[string]int{}
		if self, ok := c.selfTarget(); ok && job == SelfScrapeJob {
			firstLine[self.Name] = -1
		}
		for i, t := range targets {
			tp := p.with("targets").with(i)
			if t.URL == "" {
				k.errorf(tp.with("url"), "required")
				continue
			}
			if err := checkHTTPURL(t.URL); err != nil {
				k.errorf(tp.with("url"), "%w", err)
				continue
			}
			name := t.resolvedName()
			if !validLabelValue(name) {
				k.errorf(tp.with("name"), "%q must be valid UTF-8", name)
				continue
			}
			line, _ := find(c.node, tp)
			switch first, dup := firstLine[name]; {
			case dup && first < 0:
				k.errorf(tp, "target name %q in job %q is also the self-scrape target monitor_port adds (named after identity)", name, job)
			case dup:
				k.errorf(tp, "duplicate target name %q in job %q (first at line %d)", name, job, first)
			default:
				firstLine[name] = line
			}
		}
	}
}

// validLabelValue reports whether s can be a job or instance label value.
func validLabelValue(s string) bool {
	return s != "" && utf8.ValidString(s)
}
