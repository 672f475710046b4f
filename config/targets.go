package config

import (
	"cmp"
	"maps"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"

	commoncfg "github.com/prometheus/common/config"
)

// DefaultJob holds the defaults of a job: prometheus/common's HTTP client
// defaults. UnmarshalYAML copies it; it is never modified.
var DefaultJob = Job{HTTPClientConfig: commoncfg.DefaultHTTPClientConfig}

// Job is one entry of jobs: the targets scraped under that job name and,
// as in a Prometheus scrape_config, how to reach them.
type Job struct {
	Targets []TargetConfig `yaml:"targets"`
	// FileSDConfigs add the targets listed in files in Prometheus's
	// file_sd format, watched for changes; see FileSDConfig.
	FileSDConfigs []FileSDConfig `yaml:"file_sd_configs,omitempty"`
	// HTTPClientConfig is written inline, as in Prometheus: basic_auth,
	// authorization, oauth2, tls_config, proxy_url, follow_redirects,
	// enable_http2, http_headers... Parse validates it and resolves its
	// relative file paths against the configuration file's directory.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// UnmarshalYAML decodes the section over a copy of DefaultJob.
func (j *Job) UnmarshalYAML(unmarshal func(any) error) error {
	*j = DefaultJob
	type plain Job
	return unmarshal((*plain)(j))
}

// ClientSettings returns a copy of the job's HTTP client settings for its
// targets, or nil when they are all prometheus/common's defaults: what
// Target.HTTPClient holds for the job's static targets, and what targets
// discovered from files get.
func (j Job) ClientSettings() *commoncfg.HTTPClientConfig {
	return j.httpClient()
}

// httpClient returns a copy of the job's HTTP client settings for its
// targets, or nil when they are all prometheus/common's defaults.
func (j Job) httpClient() *commoncfg.HTTPClientConfig {
	if reflect.DeepEqual(j.HTTPClientConfig, commoncfg.DefaultHTTPClientConfig) {
		return nil
	}
	hc := j.HTTPClientConfig
	return &hc
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
	// HTTPClient is the job's HTTP client settings, shared by the job's
	// targets and not to be modified; nil when the job leaves them at
	// prometheus/common's defaults (commoncfg.DefaultHTTPClientConfig).
	HTTPClient *commoncfg.HTTPClientConfig
}

// Targets returns every target the poller scrapes, names resolved, sorted
// by job then name. When monitor_port > 0 it includes SelfScrapeJob with one
// target named after identity at http://localhost:<monitor_port>/metrics,
// as 1.0 did; when monitor_listen names a specific host, that host is used
// instead of localhost. The slice is new on every call.
func (c *Config) Targets() []Target {
	var out []Target
	for job, j := range c.Jobs {
		hc := j.httpClient()
		for _, t := range j.Targets {
			out = append(out, Target{Job: job, Name: t.resolvedName(), URL: t.URL, HTTPClient: hc})
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
	// A job of the same name, with or without targets of its own, gives
	// the HTTP client settings, which monitor_web_config may require.
	return Target{
		Job:        SelfScrapeJob,
		Name:       c.Identity,
		URL:        "http://" + net.JoinHostPort(host, strconv.Itoa(c.MonitorPort)) + "/metrics",
		HTTPClient: c.selfHTTPClient(),
	}, true
}

// selfHTTPClient is the HTTP client settings of the job named
// SelfScrapeJob, nil when there is no such job.
func (c *Config) selfHTTPClient() *commoncfg.HTTPClientConfig {
	if j, ok := c.Jobs[SelfScrapeJob]; ok {
		return j.httpClient()
	}
	return nil
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
		j := c.Jobs[job]
		if !k.explicit(p) {
			j.HTTPClientConfig = commoncfg.DefaultHTTPClientConfig // a null job, left unset by yaml.v3
		}
		checkHTTPClient(k, p, &j.HTTPClientConfig)
		checkFileSD(k, p, j.FileSDConfigs)
		c.Jobs[job] = j
		targets := j.Targets
		self, hasSelf := c.selfTarget()
		hasSelf = hasSelf && job == SelfScrapeJob
		if len(targets) == 0 && !hasSelf && len(j.FileSDConfigs) == 0 {
			k.warnf(p, "has no targets")
		}
		firstLine := map[string]int{}
		if hasSelf {
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
