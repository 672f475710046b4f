package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// mustParse parses input as config.yaml or fails the test.
func mustParse(t *testing.T, input string) *Config {
	t.Helper()
	c, err := Parse([]byte(input), "config.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// checkErr fails unless err's message is want ("" meaning no error).
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	got := ""
	if err != nil {
		got = err.Error()
	}
	if got != want {
		t.Errorf("error\n got: %s\nwant: %s", got, want)
	}
}

func TestV1Sample(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "v1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []Role{RolePoller, RoleReceiver} {
		if err := c.Validate(role); err != nil {
			t.Errorf("Validate(%s): %v", role, err)
		}
	}
	wantTargets := []Target{
		{Job: "choria", Name: "choria1", URL: "http://choria1.dc1.example.net:8222/choria/prometheus"},
		{Job: "choria", Name: "choria2.dc1.example.net:8222", URL: "http://choria2.dc1.example.net:8222/choria/prometheus"},
		{Job: "prometheus_streams", Name: "USDC1", URL: "http://localhost:10000/metrics"},
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"identity", c.Identity, "USDC1"},
		{"verbose", c.Verbose, true},
		{"debug", c.Debug, false},
		{"logfile", c.LogFile, "/var/log/prometheus-streams.log"},
		{"scrape_interval", c.ScrapeInterval, Duration(time.Minute)},
		{"scrape_timeout", c.ScrapeTimeout, Duration(10 * time.Second)},
		{"max_age as int seconds", c.MaxAge, Duration(80 * time.Second)},
		{"monitor_port", c.MonitorPort, 10000},
		{"monitor address", c.MonitorAddress(), ":10000"},
		{"poller urls", c.PollerStream.URLs, URLList{"nats://nats.dc1.example.net:4222"}},
		{"receiver urls", c.ReceiverStream.URLs, URLList{"nats://nats.dc2.example.net:4222"}},
		{"poller client id", c.ClientID(RolePoller), "prometheus_streams_poller_USDC1"},
		{"receiver client id", c.ClientID(RoleReceiver), "prometheus_receiver"},
		{"push gateway", *c.PushGateway, PushGatewayConfig{
			URL: "http://prometheus.dc2.example.net:9091", PublisherLabel: true, PublisherLabelName: "publisher", Timeout: Duration(10 * time.Second), Concurrency: 4,
			DownAfter: Duration(160 * time.Second), DeleteAfter: Duration(24 * time.Hour), HTTPClientConfig: DefaultPushGatewayConfig.HTTPClientConfig,
		}},
		{"stream tls is the global one", c.StreamTLS(RolePoller), c.TLS},
		{"serve_targets off", c.ServeTargets, false},
		{"no serve section", c.Serve, (*ServeConfig)(nil)},
		{"management kept", c.Management.Brokers, []string{"choria.example.net:4222"}},
		{"targets", c.Targets(), wantTargets},
		{"roles", c.Roles(), []Role{RolePoller, RoleReceiver}},
		{"warnings", c.Warnings, []string{
			"testdata/v1.yaml:36: tls.ca: ignored with scheme puppet, which uses ssl_dir",
			"testdata/v1.yaml:37: tls.cert: ignored with scheme puppet, which uses ssl_dir",
			"testdata/v1.yaml:38: tls.key: ignored with scheme puppet, which uses ssl_dir",
			"testdata/v1.yaml:39: tls.cache: ignored (1.0 used it for management only)",
			"testdata/v1.yaml:21: management: the Choria management backplane of 1.0 is not supported; the section is ignored",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no hostname: %v", err)
	}
	minimal := "jobs: {}\n"
	streams := "poller_stream: {}\npush_gateway: {}\n"
	tests := []struct {
		name  string
		input string
		got   func(*Config) any
		want  any
	}{
		{"identity is the hostname", minimal, func(c *Config) any { return c.Identity }, host},
		{"log_format", minimal, func(c *Config) any { return c.LogFormat }, "text"},
		{"compression is snappy", minimal, func(c *Config) any { return c.Compression }, "snappy"},
		{"compression zstd", "compression: zstd\n", func(c *Config) any { return c.Compression }, "zstd"},
		{"logfile is stderr", minimal, func(c *Config) any { return c.LogFile }, ""},
		{"scrape_interval", minimal, func(c *Config) any { return c.ScrapeInterval }, Duration(60 * time.Second)},
		{"scrape_timeout capped at 10s", minimal, func(c *Config) any { return c.ScrapeTimeout }, Duration(10 * time.Second)},
		{"scrape_timeout is a short interval", "scrape_interval: 5s\n", func(c *Config) any { return c.ScrapeTimeout }, Duration(5 * time.Second)},
		{"max_age twice the interval", "scrape_interval: 30s\n", func(c *Config) any { return c.MaxAge }, Duration(time.Minute)},
		{"max_age 0 means the default", "max_age: 0\n", func(c *Config) any { return c.MaxAge }, Duration(2 * time.Minute)},
		{"monitor_port off", minimal, func(c *Config) any { return c.MonitorPort }, 0},
		{"no monitor address", minimal, func(c *Config) any { return c.MonitorAddress() }, ""},
		{"monitor_pprof off", minimal, func(c *Config) any { return c.MonitorPprof }, false},
		{"monitor_pprof on", "monitor_port: 9100\nmonitor_pprof: true\n", func(c *Config) any { return c.MonitorPprof }, true},
		{"body_size_limit", minimal, func(c *Config) any { return c.BodySizeLimit }, ByteSize(16 << 20)},
		{"max_inflight", streams, func(c *Config) any { return c.PollerStream.MaxInflight }, 64},
		{"ack_wait", streams, func(c *Config) any { return c.PollerStream.AckWait }, Duration(30 * time.Second)},
		{"connect_timeout", streams, func(c *Config) any { return c.PollerStream.ConnectTimeout }, Duration(5 * time.Second)},
		{"push timeout", streams, func(c *Config) any { return c.PushGateway.Timeout }, Duration(10 * time.Second)},
		{"push concurrency", streams, func(c *Config) any { return c.PushGateway.Concurrency }, 4},
		{"publisher_label_name", streams, func(c *Config) any { return c.PushGateway.PublisherLabelName }, "publisher"},
		{"null keeps the default", "scrape_interval:\nmax_age: ~\n", func(c *Config) any { return c.MaxAge }, Duration(2 * time.Minute)},
		{"null section is absent", "receiver_stream:\n", func(c *Config) any { return c.ReceiverStream }, (*StreamConfig)(nil)},
		{"tls identity from identity", "identity: me\ntls: {scheme: puppet}\n", func(c *Config) any { return c.TLS.Identity }, "me"},
		{"puppet ssl_dir", "tls: {scheme: puppet}\n", func(c *Config) any { return c.TLS.SSLDir }, DefaultPuppetSSLDir},
		{"stream tls wins", "tls: {scheme: puppet}\npoller_stream: {tls: {scheme: file}}\n", func(c *Config) any { return c.StreamTLS(RolePoller).Scheme }, "file"},
		{"no tls", minimal, func(c *Config) any { return c.StreamTLS(RoleReceiver) }, (*TLSConfig)(nil)},
		{"1.0 yes as a bool", "verbose: yes\n", func(c *Config) any { return c.Verbose }, true},
		{"int seconds everywhere", "scrape_interval: 30\n", func(c *Config) any { return c.ScrapeInterval }, Duration(30 * time.Second)},
		{"trailing slash of push url", "push_gateway: {url: 'http://pg:9091/'}\n", func(c *Config) any { return c.PushGateway.URL }, "http://pg:9091"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.input)
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDurationAndSize(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    any
		wantErr string
	}{
		{name: "int seconds", input: "max_age: 80", want: Duration(80 * time.Second)},
		{name: "prometheus duration", input: "max_age: 1m30s", want: Duration(90 * time.Second)},
		{name: "days", input: "max_age: 1d", want: Duration(24 * time.Hour)},
		{name: "weeks", input: "max_age: 1w", want: Duration(7 * 24 * time.Hour)},
		{name: "go duration of 1.0", input: "max_age: 1.5m", want: Duration(90 * time.Second)},
		{name: "bad unit", input: "max_age: 5x", wantErr: `config.yaml:1: max_age: invalid duration "5x": unknown unit "x" in duration "5x"`},
		{name: "negative int", input: "max_age: -5", wantErr: `config.yaml:1: max_age: -5 seconds is out of range`},
		{name: "negative go duration", input: "max_age: -5s", wantErr: `config.yaml:1: max_age: duration "-5s" is negative`},
		{name: "float", input: "max_age: 1.5", wantErr: `config.yaml:1: max_age: invalid duration "1.5": unknown unit "." in duration "1.5"`},
		{name: "list", input: "max_age: [1]", wantErr: `config.yaml:1: max_age: must be a duration such as 60s or 1m30s, or an integer number of seconds`},
		{name: "size MiB", input: "body_size_limit: 16MiB", want: ByteSize(16 << 20)},
		{name: "size KiB", input: "body_size_limit: 512KiB", want: ByteSize(512 << 10)},
		{name: "size GiB", input: "body_size_limit: 1GiB", want: ByteSize(1 << 30)},
		{name: "size bytes", input: "body_size_limit: 1000", want: ByteSize(1000)},
		{name: "size MB read as MiB", input: "body_size_limit: 16MB", want: ByteSize(16 << 20)},
		{name: "size bad", input: "body_size_limit: 16kB", wantErr: `config.yaml:1: body_size_limit: invalid size "16kB": units: unknown unit kB in 16kB`},
		{name: "size zero", input: "body_size_limit: 0", wantErr: `config.yaml:1: body_size_limit: must be greater than 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.input+"\n"), "config.yaml")
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			var got any = c.MaxAge
			if strings.HasPrefix(tt.input, "body_size_limit") {
				got = c.BodySizeLimit
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    URLList
		wantErr string
	}{
		{name: "one string", input: `urls: nats://a:4222`, want: URLList{"nats://a:4222"}},
		{name: "comma string", input: `urls: "nats://a:4222, tls://b:4222,,"`, want: URLList{"nats://a:4222", "tls://b:4222"}},
		{name: "list", input: "urls:\n    - nats://a:4222\n    - ' tls://b:4222 '", want: URLList{"nats://a:4222", "tls://b:4222"}},
		{name: "bare host:port", input: `urls: a.example.net:4222,10.0.0.1:4222`, want: URLList{"nats://a.example.net:4222", "nats://10.0.0.1:4222"}},
		{name: "empty", input: `urls: ""`, want: URLList{}},
		{name: "wrong scheme", input: `urls: http://a:4222`, wantErr: `config.yaml:2: poller_stream.urls: NATS URL "http://a:4222": scheme must be nats or tls, not "http"`},
		{name: "wrong scheme in list", input: "urls:\n    - nats://a\n    - http://b", wantErr: `config.yaml:4: poller_stream.urls[1]: NATS URL "http://b": scheme must be nats or tls, not "http"`},
		{name: "path", input: `urls: nats://a:4222/x`, wantErr: `config.yaml:2: poller_stream.urls: NATS URL "nats://a:4222/x" must not have a path`},
		{name: "no host", input: `urls: "nats://:4222"`, wantErr: `config.yaml:2: poller_stream.urls: NATS URL "nats://:4222" has no host`},
		{name: "mapping", input: `urls: {a: b}`, wantErr: `config.yaml:2: poller_stream.urls: must be a comma-separated string of URLs or a list of URLs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("poller_stream:\n  "+tt.input+"\n"), "config.yaml")
			checkErr(t, err, tt.wantErr)
			if err == nil && !reflect.DeepEqual(c.PollerStream.URLs, tt.want) {
				t.Errorf("got %q, want %q", c.PollerStream.URLs, tt.want)
			}
		})
	}
}

// TestParseErrors checks that every error Parse reports names the file,
// the line and the key.
func TestParseErrors(t *testing.T) {
	tests := []parseErrorCase{
		{"empty file", "", "config.yaml: empty configuration"},
		{"only comments", "# nothing\n", "config.yaml: empty configuration"},
		{"empty document", "---\n", "config.yaml: empty configuration"},
		{"not a mapping", "- a\n", "config.yaml:1: the configuration must be a mapping of keys, not a list"},
		{"two documents", "verbose: true\n---\ndebug: true\n", "config.yaml:2: only one YAML document is allowed"},
		{"syntax", "verbose: true\njobs: [\n", "config.yaml:2: did not find expected node content"},
		{"syntax on the first line", "`x`: 1\n", "config.yaml:1: found character that cannot start any token"},
		{"unknown top-level key", "verbose: true\nscrape_intervall: 60s\n", "config.yaml:2: scrape_intervall: field scrape_intervall not found in type config.plain"},
		{"unknown stream key", "poller_stream:\n  topic: x\n  scrape_intervall: 1s\n", "config.yaml:3: poller_stream.scrape_intervall: field scrape_intervall not found in type config.plain"},
		{"unknown target key", "jobs:\n  j:\n    targets:\n      - url: http://a\n        nmae: x\n", "config.yaml:5: jobs.j.targets[0].nmae: field nmae not found in type config.TargetConfig"},
		{"unknown tls key", "receiver_stream:\n  tls:\n    sheme: puppet\n", "config.yaml:3: receiver_stream.tls.sheme: field sheme not found in type config.TLSConfig"},
		{"unknown management key", "management:\n  brokerz: [a]\n", "config.yaml:2: management.brokerz: field brokerz not found in type config.ManagementConfig"},
		{"unknown key beside a merge", "poller_stream: &s\n  topic: x\nreceiver_stream:\n  <<: *s\n  bogus: 1\n", "config.yaml:5: receiver_stream.bogus: field bogus not found in type config.plain"},
		{"unknown key in a merged anchor", "poller_stream: &s\n  bogus: 1\nreceiver_stream:\n  <<: *s\n", "config.yaml:2: poller_stream.bogus: field bogus not found in type config.plain"},
		{"duplicate key", "verbose: true\nverbose: false\n", `config.yaml:2: verbose: mapping key "verbose" already defined at line 1`},
		{"duplicate job", "jobs:\n  a: {}\n  a: {}\n", `config.yaml:3: jobs.a: mapping key "a" already defined at line 2`},
		{"unknown key in a flow mapping", "poller_stream: {topic: x, bogus: 1}\n", "config.yaml:1: poller_stream: field bogus not found in type config.plain"},
		{"a list as a key", "[a]: 1\n", "config.yaml:1: cannot unmarshal !!seq into string"},
		{
			"bad value in a list item", "jobs:\n  j:\n    file_sd_configs:\n      - files: [a.yml]\n      - refresh_interval: 5x\n",
			`config.yaml:5: jobs.j.file_sd_configs[1].refresh_interval: invalid duration "5x": unknown unit "x" in duration "5x"`,
		},
		{
			"bad value merged in", "management:\n  auth: &a {ack_wait: 5x}\nreceiver_stream:\n  <<: *a\n",
			`config.yaml:2: receiver_stream.ack_wait: invalid duration "5x": unknown unit "x" in duration "5x"`,
		},
		{
			"the same bad value twice", "poller_stream: {urls: 'http://a'}\nreceiver_stream: {urls: 'http://a'}\n",
			`config.yaml:1: poller_stream.urls: NATS URL "http://a": scheme must be nats or tls, not "http"`,
		},
		{"an anchor merged into itself", "poller_stream: &s\n  <<: *s\n", "config.yaml:2: poller_stream: yaml: anchor 's' value contains itself"},
		{"section not a mapping", "push_gateway: http://x\n", "config.yaml:1: push_gateway: cannot unmarshal !!str `http://x` into config.plain"},
		{"targets not a list", "jobs:\n  a:\n    targets: http://x\n", "config.yaml:3: jobs.a.targets: cannot unmarshal !!str `http://x` into []config.TargetConfig"},
		{"wrong scalar type", "monitor_port: abc\n", "config.yaml:1: monitor_port: cannot unmarshal !!str `abc` into int"},
		{"wrong bool", "verbose: maybe\n", "config.yaml:1: verbose: cannot unmarshal !!str `maybe` into bool"},
		{"monitor_pprof not a bool", "monitor_port: 9100\nmonitor_pprof: sometimes\n", "config.yaml:2: monitor_pprof: cannot unmarshal !!str `sometimes` into bool"},
		{"monitor_pprof misspelt", "monitor_port: 9100\nmonitor_prof: true\n", "config.yaml:2: monitor_prof: field monitor_prof not found in type config.plain"},
		{"log_format", "log_format: xml\n", `config.yaml:1: log_format: must be "text" or "json", not "xml"`},
		{"compression", "verbose: true\ncompression: gzip\n", `config.yaml:2: compression: must be "snappy" or "zstd", not "gzip"`},
		{"compression empty", "compression: \"\"\n", `config.yaml:1: compression: must be "snappy" or "zstd", not ""`},
		{"compression is case-sensitive", "compression: ZSTD\n", `config.yaml:1: compression: must be "snappy" or "zstd", not "ZSTD"`},
		{"scrape_interval 0", "scrape_interval: 0\n", "config.yaml:1: scrape_interval: must be greater than 0"},
		{"scrape_timeout 0", "scrape_timeout: 0s\n", "config.yaml:1: scrape_timeout: must be greater than 0"},
		{"scrape_timeout too long", "scrape_interval: 10s\nscrape_timeout: 11s\n", "config.yaml:2: scrape_timeout: 11s must not exceed scrape_interval 10s"},
		{"monitor_port range", "monitor_port: 70000\n", "config.yaml:1: monitor_port: must be between 0 (off) and 65535, not 70000"},
		{"monitor_listen with port", "monitor_listen: 127.0.0.1:9000\n", `config.yaml:1: monitor_listen: "127.0.0.1:9000" has a port; give only the host, the port is monitor_port`},
		{"client_id", "receiver_stream:\n  client_id: a.b\n", `config.yaml:2: receiver_stream.client_id: "a.b" may contain only letters, digits, _ and -`},
		{"topic wildcard", "poller_stream:\n  topic: a.>\n", `config.yaml:2: poller_stream.topic: "a.>" must not contain white space or the wildcards * and >`},
		{"topic empty token", "poller_stream:\n  topic: a..b\n", `config.yaml:2: poller_stream.topic: "a..b" has an empty token (leading, trailing or double dot)`},
		{"max_inflight", "poller_stream:\n  max_inflight: 0\n", "config.yaml:2: poller_stream.max_inflight: must be at least 1"},
		{"ack_wait", "receiver_stream:\n  ack_wait: 500ms\n", "config.yaml:2: receiver_stream.ack_wait: must be at least 1s"},
		{"connect_timeout", "receiver_stream:\n  connect_timeout: 0\n", "config.yaml:2: receiver_stream.connect_timeout: must be greater than 0"},
		{"push url scheme", "push_gateway:\n  url: ftp://x\n", `config.yaml:2: push_gateway.url: URL "ftp://x": scheme must be http or https`},
		{"push concurrency", "push_gateway:\n  concurrency: 0\n", "config.yaml:2: push_gateway.concurrency: must be at least 1"},
		{"push timeout", "push_gateway:\n  timeout: 0\n", "config.yaml:2: push_gateway.timeout: must be greater than 0"},
		{"label name invalid", "push_gateway:\n  publisher_label_name: a-b\n", `config.yaml:2: push_gateway.publisher_label_name: "a-b" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)`},
		{"label name reserved", "push_gateway:\n  publisher_label_name: instance\n", `config.yaml:2: push_gateway.publisher_label_name: "instance" is reserved`},
		{"tls scheme", "tls:\n  scheme: vault\n", `config.yaml:2: tls.scheme: must be puppet, file or manual, not "vault"`},
		{"tls scheme missing", "poller_stream:\n  tls:\n    ca: /x\n", "config.yaml:2: poller_stream.tls.scheme: required: puppet, file or manual"},
		{"tls cert without key", "tls:\n  scheme: file\n  cert: /c.pem\n", "config.yaml:1: tls: cert and key must be set together"},
		{"target url missing", "jobs:\n  j:\n    targets:\n      - name: a\n", "config.yaml:4: jobs.j.targets[0].url: required"},
		{"target url relative", "jobs:\n  j:\n    targets:\n      - url: /metrics\n", `config.yaml:4: jobs.j.targets[0].url: URL "/metrics": scheme must be http or https`},
		{
			"duplicate resolved target", "jobs:\n  j:\n    targets:\n      - url: http://a/metrics\n      - url: http://a:80/other\n",
			`config.yaml:5: jobs.j.targets[1]: duplicate target name "a:80" in job "j" (first at line 4)`,
		},
		{
			"duplicate named target", "jobs:\n  j:\n    targets:\n      - {name: x, url: 'http://a'}\n      - {name: x, url: 'http://b'}\n",
			`config.yaml:5: jobs.j.targets[1]: duplicate target name "x" in job "j" (first at line 4)`,
		},
		{
			"target clashes with self-scrape", "identity: me\nmonitor_port: 9\njobs:\n  prometheus_streams:\n    targets:\n      - {name: me, url: 'http://a'}\n",
			`config.yaml:6: jobs.prometheus_streams.targets[0]: target name "me" in job "prometheus_streams" is also the self-scrape target monitor_port adds (named after identity)`,
		},
		{
			"several errors", "scrape_interval: 0\nlog_format: xml\n",
			"config.yaml:2: log_format: must be \"text\" or \"json\", not \"xml\"\nconfig.yaml:1: scrape_interval: must be greater than 0",
		},
	}
	checkParseErrors(t, tests)
}

// parseErrorCase is a file and the error Parse must give for it.
type parseErrorCase struct {
	name, input, wantErr string
}

// checkParseErrors parses each input and checks its error, and that no
// Config comes with one.
func checkParseErrors(t *testing.T, tests []parseErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.input), "config.yaml")
			checkErr(t, err, tt.wantErr)
			if err != nil && c != nil {
				t.Error("a Config returned with an error")
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
	checkErr(t, err, path+": read configuration: no such file or directory")
}

// TestValidate covers what each role requires, including the partial files
// 1.0 crashed on.
func TestValidate(t *testing.T) {
	const poller = "poller_stream:\n  cluster_id: c\n  urls: nats://a:4222\n  topic: t\njobs:\n  j:\n    targets:\n      - url: http://a\n"
	const receiver = "receiver_stream:\n  cluster_id: c\n  urls: nats://a:4222\n  topic: t\npush_gateway:\n  url: http://pg:9091\n"
	tests := []struct {
		name    string
		input   string
		role    Role
		wantErr string
	}{
		{"complete poller", poller, RolePoller, ""},
		{"complete receiver", receiver, RoleReceiver, ""},
		{"unknown role", poller, "scraper", `config.yaml: unknown role "scraper" (want "poller" or "receiver")`},
		{"poller without stream", "jobs:\n  j:\n    targets:\n      - url: http://a\n", RolePoller, "config.yaml: poller_stream: required for the poller"},
		{"poller stream null", "poller_stream:\nmonitor_port: 9\n", RolePoller, "config.yaml:1: poller_stream: required for the poller"},
		{
			"poller stream incomplete", "verbose: true\npoller_stream:\n  urls: ''\nmonitor_port: 9\n", RolePoller,
			"config.yaml:2: poller_stream.stream: required for the poller: a JetStream stream (or cluster_id for NATS Streaming)\nconfig.yaml:3: poller_stream.urls: required for the poller\nconfig.yaml:2: poller_stream.topic: required for the poller",
		},
		{
			"poller without targets", "poller_stream: {cluster_id: c, urls: 'a:1', topic: t}\njobs:\n  j: {targets: []}\n", RolePoller,
			"config.yaml:2: jobs: at least one target or file_sd_configs is required for the poller (or set monitor_port to scrape this process)",
		},
		{"poller with only monitor_port", "poller_stream: {cluster_id: c, urls: 'a:1', topic: t}\nmonitor_port: 9100\n", RolePoller, ""},
		{"receiver without push_gateway", strings.Split(receiver, "push_gateway")[0], RoleReceiver, "config.yaml: push_gateway: required for the receiver, or serve_targets: true"},
		{"receiver with a null push_gateway", strings.Split(receiver, "  url: http")[0], RoleReceiver, "config.yaml:5: push_gateway: required for the receiver, or serve_targets: true"},
		{"receiver without push url", strings.Replace(receiver, "url: http://pg:9091", "timeout: 5s", 1), RoleReceiver, "config.yaml:5: push_gateway.url: required for the receiver"},
		{"receiver without stream", "push_gateway: {url: 'http://pg'}\n", RoleReceiver, "config.yaml: receiver_stream: required for the receiver"},
		{
			"global tls without streams", "tls: {scheme: file}\n", RoleReceiver,
			"config.yaml: receiver_stream: required for the receiver\nconfig.yaml: push_gateway: required for the receiver, or serve_targets: true",
		},
		{"stream merged from another", "poller_stream: &s\n  cluster_id: c\n  urls: nats://a\n  topic: t\nreceiver_stream:\n  <<: *s\n  client_id: r\npush_gateway: {url: 'http://pg'}\n", RoleReceiver, ""},
		{"global tls with a receiver", "tls: {scheme: file}\n" + receiver, RoleReceiver, ""},
		{
			"receiver file as poller", receiver, RolePoller,
			"config.yaml: poller_stream: required for the poller\nconfig.yaml: jobs: at least one target or file_sd_configs is required for the poller (or set monitor_port to scrape this process)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, mustParse(t, tt.input).Validate(tt.role), tt.wantErr)
		})
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []Role
	}{
		{"nothing", "verbose: true\n", nil},
		{"jobs only", "jobs: {j: {targets: [{url: 'http://a'}]}}\n", []Role{RolePoller}},
		{"push_gateway only", "push_gateway: {}\n", []Role{RoleReceiver}},
		{"serve_targets only", "serve_targets: true\n", []Role{RoleReceiver}},
		{"serve_targets false", "serve_targets: false\n", nil},
		{"both streams", "poller_stream: {}\nreceiver_stream: {}\n", []Role{RolePoller, RoleReceiver}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.input).Roles(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClientID(t *testing.T) {
	tests := []struct {
		name  string
		input string
		role  Role
		want  string
	}{
		{"explicit", "identity: x\nreceiver_stream: {client_id: mine}\n", RoleReceiver, "mine"},
		{"default receiver", "identity: prom.example.net\n", RoleReceiver, "prometheus_streams_receiver_prom_example_net"},
		{"default poller", "identity: USDC1\npoller_stream: {}\n", RolePoller, "prometheus_streams_poller_USDC1"},
		{"every other rune", "identity: 'hôst 1:a/b'\n", RolePoller, "prometheus_streams_poller_h_st_1_a_b"},
		{"dash kept", "identity: a-b_c\n", RoleReceiver, "prometheus_streams_receiver_a-b_c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.input).ClientID(tt.role)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !clientIDPattern.MatchString(got) {
				t.Errorf("%q is not a valid NATS Streaming client id", got)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []Target
	}{
		{"default ports and sorting", "jobs:\n  z:\n    targets: [{url: 'https://b/m'}]\n  a:\n    targets: [{url: 'http://c/m'}, {url: 'http://[::1]/m'}]\n", []Target{
			{Job: "a", Name: "[::1]:80", URL: "http://[::1]/m"},
			{Job: "a", Name: "c:80", URL: "http://c/m"},
			{Job: "z", Name: "b:443", URL: "https://b/m"},
		}},
		{"monitor_port without jobs", "identity: me\nmonitor_port: 9100\n", []Target{
			{Job: "prometheus_streams", Name: "me", URL: "http://localhost:9100/metrics"},
		}},
		{"monitor_listen host", "identity: me\nmonitor_port: 9100\nmonitor_listen: 10.1.2.3\n", []Target{
			{Job: "prometheus_streams", Name: "me", URL: "http://10.1.2.3:9100/metrics"},
		}},
		{"monitor_listen ipv6", "identity: me\nmonitor_port: 9100\nmonitor_listen: '::1'\n", []Target{
			{Job: "prometheus_streams", Name: "me", URL: "http://[::1]:9100/metrics"},
		}},
		{"monitor_listen any", "identity: me\nmonitor_port: 9100\nmonitor_listen: 0.0.0.0\n", []Target{
			{Job: "prometheus_streams", Name: "me", URL: "http://localhost:9100/metrics"},
		}},
		{"self job merges with a user job", "identity: me\nmonitor_port: 9100\njobs:\n  prometheus_streams:\n    targets: [{name: other, url: 'http://o'}]\n", []Target{
			{Job: "prometheus_streams", Name: "me", URL: "http://localhost:9100/metrics"},
			{Job: "prometheus_streams", Name: "other", URL: "http://o"},
		}},
		{"nothing", "verbose: true\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.input).Targets(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"none", "verbose: true\n", nil},
		{
			"management", "verbose: true\nmanagement:\n  brokers: [a]\n  auth: {insecure: true, Full: [x]}\n",
			[]string{"config.yaml:2: management: the Choria management backplane of 1.0 is not supported; the section is ignored"},
		},
		{"tls cache", "tls:\n  scheme: file\n  cache: /c\n", []string{"config.yaml:3: tls.cache: ignored (1.0 used it for management only)"}},
		{"max_age 0", "scrape_interval: 30s\nmax_age: 0\n", []string{"config.yaml:2: max_age: 0 meant no age limit in 1.0; using the default of twice scrape_interval (1m)"}},
		{"job without targets", "jobs:\n  j:\n", []string{"config.yaml:2: jobs.j: has no targets"}},
		{"monitor_pprof without monitor_port", "verbose: true\nmonitor_pprof: true\n", []string{"config.yaml:2: monitor_pprof: ignored: monitor_port is 0, so there is no monitor endpoint"}},
		{"monitor_pprof false without monitor_port", "monitor_pprof: false\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.input).Warnings; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMarshalRoundTrip checks that a parsed file marshals to YAML that
// parses back to the same configuration, so check-config can print it.
func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{"1.0 sample", filepath.Join("testdata", "v1.yaml")},
		{"full", filepath.Join("testdata", "full.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out, "marshalled")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			c.Warnings, back.Warnings = nil, nil
			c.filename, back.filename = "", ""
			c.node, back.node = nil, nil
			if !reflect.DeepEqual(c, back) {
				t.Errorf("round trip differs:\n%s", out)
			}
		})
	}
}

func TestGroupLifecycleAndPublishers(t *testing.T) {
	base := "scrape_interval: 30s\nreceiver_stream: {cluster_id: c, urls: nats://n:4222, topic: t}\n"
	tests := []struct {
		name                 string
		input                string
		wantDown, wantDelete time.Duration
		wantPublishers       map[string][]string
		wantErr              string
	}{
		{name: "defaults", input: "push_gateway: {url: http://p:9091}\n", wantDown: 2 * time.Minute, wantDelete: 24 * time.Hour},
		{name: "explicit", input: "push_gateway: {url: http://p:9091, down_after: 5m, delete_after: 0}\n", wantDown: 5 * time.Minute},
		{
			name: "delete before down", input: "push_gateway: {url: http://p:9091, down_after: 5m, delete_after: 1m}\n",
			wantErr: "delete_after: 1m is shorter than down_after 5m",
		},
		{
			name: "allow-list", input: "push_gateway: {url: http://p:9091}\npublishers:\n  dc1: [node, app]\n  dc2: []\n",
			wantDown: 2 * time.Minute, wantDelete: 24 * time.Hour, wantPublishers: map[string][]string{"dc1": {"node", "app"}, "dc2": {}},
		},
		{
			name: "empty job in the allow-list", input: "push_gateway: {url: http://p:9091}\npublishers:\n  dc1: ['']\n",
			wantErr: "publishers.dc1[0]: a job must be a non-empty UTF-8 name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tt.input), "config.yaml")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Duration(c.PushGateway.DownAfter); got != tt.wantDown {
				t.Errorf("down_after = %v, want %v", got, tt.wantDown)
			}
			if got := time.Duration(c.PushGateway.DeleteAfter); got != tt.wantDelete {
				t.Errorf("delete_after = %v, want %v", got, tt.wantDelete)
			}
			if !reflect.DeepEqual(c.Publishers, tt.wantPublishers) {
				t.Errorf("publishers = %#v, want %#v", c.Publishers, tt.wantPublishers)
			}
		})
	}
}
