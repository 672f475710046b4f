package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsd "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	promclient "github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/stream"
)

// The tests of this file run the `nats` commands (natscli, pinned by
// packaging/tools/go.mod) that docs/configuration.md and
// docs/migration-from-1.0.md give operators, taken from the docs
// themselves, against in-process nats-servers, and check with nats.go what
// they made: the stream a poller would create, the inspection commands,
// and a stream per data centre sourced into a central one.

// natsCLITimeout bounds one run of the nats command.
const natsCLITimeout = 30 * time.Second

// buildNatsCLI returns natscli built from packaging/tools (its own module,
// so natscli's dependencies never reach the main go.mod, which lists it as
// a tool): `go tool -n nats` builds it into Go's build cache, unless it is
// there already, and prints the path of the cached executable. From a
// cold build cache this takes a minute or more; later runs take a moment,
// where `go build -o` into a new directory linked the binary every time
// (several seconds).
func buildNatsCLI(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", "nats")
	cmd.Dir = filepath.Join(root, "packaging", "tools")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool -n nats in packaging/tools: %v\n%s", err, stderr.Bytes())
	}
	bin := strings.TrimSpace(string(out))
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || !filepath.IsAbs(bin) {
		t.Fatalf("go tool -n nats printed %q, not the path of an executable (%v)", out, err)
	}
	t.Logf("natscli built (or found in the build cache) in %s: %s", time.Since(start).Round(100*time.Millisecond), bin)
	return bin
}

// natsCLI runs the nats binary.
type natsCLI struct {
	bin  string
	home string // HOME and XDG_CONFIG_HOME: no contexts of the machine's user
}

// env is the environment of a nats run: the test's, without the NATS_*
// variables natscli reads, and with a HOME of its own.
func (c natsCLI) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NATS_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+c.home, "XDG_CONFIG_HOME="+filepath.Join(c.home, ".config"))
}

// run runs nats with args and --server serverURL in dir, and returns its
// output; it fails the test when nats exits other than 0.
func (c natsCLI) run(t *testing.T, dir, serverURL string, args ...string) string {
	t.Helper()
	out, err := c.try(dir, serverURL, args...)
	if err != nil {
		t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("nats %s:\n%s", strings.Join(args, " "), out)
	return out
}

func (c natsCLI) try(dir, serverURL string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), natsCLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--server", serverURL}, args...)...)
	cmd.Dir, cmd.Env = dir, c.env()
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// runTerminal runs nats with a terminal (script(1) gives it one), for the
// commands that refuse to run without: `nats stream view` pages
// interactively. stdin answers its questions.
func (c natsCLI) runTerminal(t *testing.T, dir, serverURL, stdin string, args ...string) string {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		if _, ci := os.LookupEnv("CI"); ci {
			t.Fatalf("script(1) (util-linux) is needed to give nats a terminal: %v", err)
		}
		t.Skipf("script(1) (util-linux) is needed to give nats a terminal: %v", err)
	}
	line := shellQuote(c.bin) + " --server " + shellQuote(serverURL)
	for _, a := range args {
		line += " " + shellQuote(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsCLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-q", "-e", "-c", line, "/dev/null")
	cmd.Dir, cmd.Env = dir, append(c.env(), "TERM=dumb")
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nats %s (on a terminal): %v\n%s", strings.Join(args, " "), err, b)
	}
	t.Logf("nats %s (on a terminal):\n%s", strings.Join(args, " "), b)
	return string(b)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// docCommand returns the arguments of the `nats` command in doc (a path
// from the repository root) whose words start with prefix, as a shell
// would split it: continued lines joined, quotes removed, a trailing
// comment dropped. It fails the test when the doc has no such command, or
// more than one.
func docCommand(t *testing.T, doc string, prefix ...string) []string {
	t.Helper()
	var found [][]string
	for _, cmd := range docCommands(t, doc) {
		if len(cmd) < len(prefix)+1 || cmd[0] != "nats" {
			continue
		}
		match := true
		for i, p := range prefix {
			if cmd[i+1] != p {
				match = false
				break
			}
		}
		if match {
			found = append(found, cmd[1:])
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d shell commands start with nats %s, want exactly one: %q", doc, len(found), strings.Join(prefix, " "), found)
	}
	return found[0]
}

// docCommands returns the commands of the ```sh blocks of doc.
func docCommands(t *testing.T, doc string) [][]string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, doc))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var (
		cmds    [][]string
		inSh    bool
		pending string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case !inSh && trimmed == "```sh":
			inSh = true
			continue
		case inSh && trimmed == "```":
			inSh = false
			continue
		case !inSh:
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			pending += rest + " "
			continue
		}
		words, err := shellWords(pending + line)
		if err != nil {
			t.Fatalf("%s: %q: %v", doc, pending+line, err)
		}
		pending = ""
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cmds
}

// shellWords splits s as sh does for the simple commands of the docs:
// words separated by blanks, single and double quotes (no expansions in
// them), and a comment from an unquoted # that starts a word.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		word  strings.Builder
		in    bool // inside a word
		quote rune // the open quote, 0 for none
	)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, word.String())
				word.Reset()
				in = false
			}
		case r == '#' && !in:
			return words, nil
		case strings.ContainsRune(`$\`+"`;&|<>*?", r):
			return nil, fmt.Errorf("%q needs more of a shell than this test has", r)
		default:
			word.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		words = append(words, word.String())
	}
	return words, nil
}

// docJSON returns the ```json block of doc that holds marker.
func docJSON(t *testing.T, doc, marker string) []byte {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, doc))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, block := range strings.Split(string(b), "```json\n")[1:] {
		body, _, ok := strings.Cut(block, "```")
		if ok && strings.Contains(body, marker) {
			found = append(found, body)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d json blocks hold %q, want exactly one", doc, len(found), marker)
	}
	return []byte(found[0])
}

// jsStream returns the config and state of stream name on the server at
// serverURL.
func jsStream(t *testing.T, serverURL, name string) *jetstream.StreamInfo {
	t.Helper()
	js := testenv.JetStream(t, serverURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s on %s: %v", name, serverURL, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// pollerTopic is the topic of the docs' examples and of a poller's
// default.
const pollerTopic = "prometheus"

// pollerMaxAge is the max_age the docs' commands set (the default for a
// scrape_interval of 60s).
const pollerMaxAge = 2 * time.Minute

// pollerOptions are the options of a poller connected to n.
func pollerOptions(n *embedded.NATS, streamName, domain string) stream.JSOptions {
	return stream.JSOptions{
		URLs: []string{n.URL()}, Name: "poller", Stream: streamName, Domain: domain, Topic: pollerTopic,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, AckWait: 5 * time.Second,
	}
}

// runPoller runs a publisher with opts until the test ends and returns it
// once connected.
func runPoller(t *testing.T, opts stream.JSOptions) *stream.JSPublisher {
	t.Helper()
	p, err := stream.NewJSPublisher(opts, nil, promclient.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, p.Run)
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the poller did not connect in 10s")
	}
	return p
}

// publish publishes data on key's group with p, retrying while the stream
// is not there yet, until it is acknowledged.
func publish(t *testing.T, p *stream.JSPublisher, key stream.Key, data string) {
	t.Helper()
	var last error
	testenv.WaitFor(t, "a publish acknowledged", 10*time.Second, func() bool {
		done := make(chan error, 1)
		if err := p.Publish(key, []byte(data), func(err error) { done <- err }); err != nil {
			last = err
			return false
		}
		last = <-done
		return last == nil
	})
	if last != nil {
		t.Fatal(last)
	}
}

// pollerStream is the stream a poller creates with the docs' settings
// (max_age 2m, file storage, one replica), on a server of its own.
func pollerStream(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	n := testenv.NATS(t, embedded.NATSOptions{ServerName: "poller-made"})
	opts := pollerOptions(n, "PROMETHEUS", "")
	opts.Create = &stream.StreamSettings{MaxAge: pollerMaxAge, Storage: jetstream.FileStorage, Replicas: 1}
	p := runPoller(t, opts)
	publish(t, p, stream.Key{Publisher: "dc1", Job: "node", Instance: "x"}, "x")
	return jsStream(t, n.URL(), "PROMETHEUS").Config
}

// keepingSettings names the settings of have that differ from want among
// those that decide what a stream keeps, and how.
func keepingSettings(have, want jetstream.StreamConfig) []string {
	var d []string
	cmp := func(name string, h, w any) {
		if fmt.Sprint(h) != fmt.Sprint(w) {
			d = append(d, fmt.Sprintf("%s %v, not %v", name, h, w))
		}
	}
	cmp("subjects", have.Subjects, want.Subjects)
	cmp("retention", have.Retention, want.Retention)
	cmp("discard", have.Discard, want.Discard)
	cmp("max_msgs_per_subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject)
	cmp("max_msgs", have.MaxMsgs, want.MaxMsgs)
	cmp("max_bytes", have.MaxBytes, want.MaxBytes)
	cmp("max_age", have.MaxAge, want.MaxAge)
	cmp("max_msg_size", have.MaxMsgSize, want.MaxMsgSize)
	cmp("storage", have.Storage, want.Storage)
	cmp("replicas", have.Replicas, want.Replicas)
	cmp("duplicate_window", have.Duplicates, want.Duplicates)
	return d
}

// mustContain fails the test for each of wants that out lacks.
func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s does not mention %q:\n%s", what, w, out)
		}
	}
}

// The docs the commands come from.
const (
	configurationDoc = "docs/configuration.md"
	migrationDoc     = "docs/migration-from-1.0.md"
)

// TestNatsCLI builds natscli and runs the docs' commands with it.
func TestNatsCLI(t *testing.T) {
	t.Parallel()
	cli := natsCLI{bin: buildNatsCLI(t), home: t.TempDir()}
	want := pollerStream(t)
	t.Run("CreateAndInspect", func(t *testing.T) { testNatsCLIStream(t, cli, want) })
	t.Run("DCSourcing", func(t *testing.T) { testNatsCLISourcing(t, cli, want) })
}

// testNatsCLIStream: configuration.md's `nats stream add PROMETHEUS`
// makes the stream a poller would create, and migration-from-1.0.md's
// inspection commands show what the docs say they show.
func testNatsCLIStream(t *testing.T, cli natsCLI, want jetstream.StreamConfig) {
	dir := t.TempDir()
	n := testenv.NATS(t, embedded.NATSOptions{ServerName: "central"})
	cli.run(t, dir, n.URL(), docCommand(t, configurationDoc, "stream", "add", "PROMETHEUS")...)

	cfg := jsStream(t, n.URL(), "PROMETHEUS").Config
	if d := keepingSettings(cfg, want); len(d) > 0 {
		t.Errorf("the stream nats made differs from the one a poller creates: %s", strings.Join(d, "; "))
	}
	if d := stream.StreamDifferences(cfg, want, true); len(d) > 0 {
		t.Errorf("a poller would warn about the stream nats made: %s", strings.Join(d, "; "))
	}
	if cfg.MaxMsgsPerSubject != 1 || len(cfg.Subjects) != 1 || cfg.Subjects[0] != pollerTopic+".>" {
		t.Errorf("stream: max_msgs_per_subject %d, subjects %v; want 1 and [%s.>]", cfg.MaxMsgsPerSubject, cfg.Subjects, pollerTopic)
	}

	// A poller publishes one scrape, and a receiver takes it through the
	// shared consumer, which it creates.
	key := stream.Key{Publisher: "dc1", Job: "node", Instance: "10.0.0.1:9100"}
	subject := stream.Subject(pollerTopic, key)
	opts := pollerOptions(n, "PROMETHEUS", "")
	opts.Create = &stream.StreamSettings{MaxAge: pollerMaxAge, Storage: jetstream.FileStorage, Replicas: 1}
	publish(t, runPoller(t, opts), key, "scrape-1")

	ropts := pollerOptions(n, "PROMETHEUS", "")
	ropts.Name, ropts.PinnedTTL, ropts.AckWait = "receiver", 2*time.Second, 30*time.Second
	sub, err := stream.NewJSSubscriber(ropts, nil, promclient.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	stop := testenv.Run(t, func(ctx context.Context) error {
		return sub.Subscribe(ctx, func(m stream.Message) {
			_ = m.Ack()
			select {
			case got <- string(m.Data()):
			default:
			}
		})
	})
	select {
	case data := <-got:
		if data != "scrape-1" {
			t.Errorf("the receiver got %q, not scrape-1", data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver got nothing in 10s")
	}
	stop()

	out := cli.run(t, dir, n.URL(), docCommand(t, migrationDoc, "stream", "info", "PROMETHEUS")...)
	mustContain(t, "nats stream info", out, "Subjects: "+pollerTopic+".>", "Maximum Per Subject: 1", "Messages: 1", "Bytes:")
	out = cli.run(t, dir, n.URL(), docCommand(t, migrationDoc, "stream", "subjects", "PROMETHEUS")...)
	mustContain(t, "nats stream subjects", out, subject)
	out = cli.run(t, dir, n.URL(), docCommand(t, migrationDoc, "consumer", "info", "PROMETHEUS", stream.DefaultConsumer)...)
	mustContain(t, "nats consumer info", out, "Ack Wait: 30.00s", "Max Ack Pending: 64", "Priority Policy: Pinned Client", "Priority Groups: receivers", "Pinned TTL: 2.00s")
	out = cli.runTerminal(t, dir, n.URL(), "n\n", docCommand(t, migrationDoc, "stream", "view", "PROMETHEUS")...)
	mustContain(t, "nats stream view", out, "Subject: "+subject, "scrape-1")
}

// testNatsCLISourcing: migration-from-1.0.md's stream per data centre,
// each in its own JetStream domain on a leaf node of the central server,
// sourced into the central stream of its prometheus.json. A poller's
// scrape in a data centre reaches a receiver at the centre, on its
// subject.
func testNatsCLISourcing(t *testing.T, cli natsCLI, want jetstream.StreamConfig) {
	dir := t.TempDir()
	var copts *natsd.Options
	central := testenv.NATS(t, embedded.NATSOptions{ServerName: "central", Domain: "central", Configure: func(o *natsd.Options) {
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", -1
		copts = o
	}})
	// The server writes the port it listens on back into its options
	// before it is ready for connections.
	leaf, err := url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", copts.LeafNode.Port))
	if err != nil {
		t.Fatal(err)
	}
	dcs := []string{"DC1", "DC2"}
	servers := map[string]*embedded.NATS{}
	for _, dc := range dcs {
		domain := strings.ToLower(dc)
		servers[dc] = testenv.NATS(t, embedded.NATSOptions{ServerName: domain, Domain: domain, Configure: func(o *natsd.Options) {
			o.LeafNode.ReconnectInterval = 50 * time.Millisecond
			o.LeafNode.Remotes = []*natsd.RemoteLeafOpts{{URLs: []*url.URL{leaf}}}
		}})
	}
	testenv.WaitFor(t, "both data centres linked to the centre", 10*time.Second, func() bool {
		acc := central.Server().GlobalAccount()
		return central.Server().NumLeafNodes() == len(dcs) &&
			acc.Interest("$JS.dc1.API.INFO") > 0 && acc.Interest("$JS.dc2.API.INFO") > 0
	})

	// Each data centre's stream, made with the docs' command (they give
	// dc1's; dc2's is the same with its name).
	dcAdd := docCommand(t, migrationDoc, "stream", "add", "PROMETHEUS_DC1")
	for _, dc := range dcs {
		args := append([]string(nil), dcAdd...)
		args[2] = "PROMETHEUS_" + dc
		cli.run(t, dir, servers[dc].URL(), args...)
		cfg := jsStream(t, servers[dc].URL(), "PROMETHEUS_"+dc).Config
		if d := keepingSettings(cfg, want); len(d) > 0 {
			t.Errorf("PROMETHEUS_%s differs from the stream a poller creates: %s", dc, strings.Join(d, "; "))
		}
	}

	// The central stream, from the docs' prometheus.json.
	testenv.WriteFile(t, filepath.Join(dir, "prometheus.json"), docJSON(t, migrationDoc, `"name": "PROMETHEUS"`))
	cli.run(t, dir, central.URL(), docCommand(t, migrationDoc, "stream", "add", "PROMETHEUS", "--config")...)
	cfg := jsStream(t, central.URL(), "PROMETHEUS").Config
	if len(cfg.Subjects) != 0 || cfg.MaxMsgsPerSubject != 1 || cfg.MaxAge != pollerMaxAge || cfg.Duplicates != pollerMaxAge ||
		cfg.Storage != jetstream.FileStorage || cfg.Replicas != 1 || cfg.Discard != jetstream.DiscardOld || cfg.Retention != jetstream.LimitsPolicy {
		t.Errorf("central stream: subjects %v, max_msgs_per_subject %d, max_age %s, duplicate_window %s, storage %s, replicas %d, discard %s, retention %s",
			cfg.Subjects, cfg.MaxMsgsPerSubject, cfg.MaxAge, cfg.Duplicates, cfg.Storage, cfg.Replicas, cfg.Discard, cfg.Retention)
	}
	if len(cfg.Sources) != len(dcs) {
		t.Fatalf("central stream sources %d streams, want %d", len(cfg.Sources), len(dcs))
	}
	for i, dc := range dcs {
		s := cfg.Sources[i]
		if s.Name != "PROMETHEUS_"+dc || s.External == nil || s.External.APIPrefix != "$JS."+strings.ToLower(dc)+".API" {
			t.Errorf("central source %d: %+v (external %+v), want PROMETHEUS_%s through $JS.%s.API", i, s, s.External, dc, strings.ToLower(dc))
		}
	}

	// A receiver at the centre, and a poller in each data centre publishing
	// to its own stream through its domain's API.
	ropts := pollerOptions(central, "PROMETHEUS", "")
	ropts.Name, ropts.PinnedTTL = "receiver", 2*time.Second
	sub, err := stream.NewJSSubscriber(ropts, nil, promclient.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]string{} // publisher -> data
	)
	testenv.Run(t, func(ctx context.Context) error {
		return sub.Subscribe(ctx, func(m stream.Message) {
			_ = m.Ack()
			pub, ok := m.Publisher()
			mu.Lock()
			defer mu.Unlock()
			if ok {
				seen[pub] = string(m.Data())
			}
		})
	})
	for _, dc := range dcs {
		domain := strings.ToLower(dc)
		p := runPoller(t, pollerOptions(servers[dc], "PROMETHEUS_"+dc, domain))
		publish(t, p, stream.Key{Publisher: domain, Job: "node", Instance: "10.0.0.1:9100"}, "scrape-"+domain)
	}
	testenv.WaitFor(t, "every data centre's scrape at the central receiver", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == len(dcs)
	})
	mu.Lock()
	for _, dc := range dcs {
		domain := strings.ToLower(dc)
		if seen[domain] != "scrape-"+domain {
			t.Errorf("the central receiver got %q from %s, not scrape-%s", seen[domain], domain, domain)
		}
	}
	mu.Unlock()

	// Sourcing kept the subjects.
	js := testenv.JetStream(t, central.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "PROMETHEUS")
	if err != nil {
		t.Fatal(err)
	}
	for _, dc := range dcs {
		domain := strings.ToLower(dc)
		subject := stream.Subject(pollerTopic, stream.Key{Publisher: domain, Job: "node", Instance: "10.0.0.1:9100"})
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Errorf("central stream, subject %s: %v", subject, err)
		} else if string(m.Data) != "scrape-"+domain {
			t.Errorf("central stream, subject %s: %q, not scrape-%s", subject, m.Data, domain)
		}
	}

	out := cli.run(t, dir, central.URL(), docCommand(t, migrationDoc, "stream", "info", "PROMETHEUS")...)
	mustContain(t, "nats stream info of the central stream", out, "PROMETHEUS_DC1", "PROMETHEUS_DC2", "$JS.dc1.API", "$JS.dc2.API", "Messages: 2")
	out = cli.run(t, dir, central.URL(), docCommand(t, migrationDoc, "stream", "subjects", "PROMETHEUS")...)
	mustContain(t, "nats stream subjects of the central stream", out, "prometheus.dc1.node.", "prometheus.dc2.node.")
}
