package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// promtoolBin is Debian's promtool, from the same prometheus package as
// prometheusBin.
const promtoolBin = "/usr/bin/promtool"

// The rule files and their promtool unit tests, relative to the module
// root.
const (
	ruleFilesGlob     = "packaging/prometheus/*.rules.yml"
	ruleTestFilesGlob = "packaging/prometheus/tests/*.yml"
)

// promRule is one rule of a Prometheus rule file: an alerting rule (Alert
// set) or a recording rule (Record set).
type promRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// name is the rule's alert or record name.
func (r promRule) name() string { return r.Alert + r.Record }

// promRuleFile is the layout of a Prometheus rule file.
type promRuleFile struct {
	Groups []struct {
		Name  string     `yaml:"name"`
		Rules []promRule `yaml:"rules"`
	} `yaml:"groups"`
}

// promtoolTestFile is the part of a promtool unit test file the coverage
// check reads.
type promtoolTestFile struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTest []struct {
			Expr       string `yaml:"expr"`
			ExpSamples []any  `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// TestRulesPromtool runs `promtool check rules` on the rule files and
// `promtool test rules` on their unit tests, failing with promtool's
// output.
func TestRulesPromtool(t *testing.T) {
	t.Parallel()
	requireDebianPrometheus(t)
	if _, err := os.Stat(promtoolBin); err != nil {
		t.Fatalf("Debian's prometheus package installs %s: %v", promtoolBin, err)
	}
	rules := globModule(t, ruleFilesGlob)
	tests := globModule(t, ruleTestFilesGlob)
	t.Run("check", func(t *testing.T) { runPromtool(t, append([]string{"check", "rules"}, rules...)...) })
	t.Run("test", func(t *testing.T) { runPromtool(t, append([]string{"test", "rules"}, tests...)...) })
}

// TestRulesAreDocumentedAndTested checks what promtool does not: every
// alert has a for, a severity, and annotations that point to a
// troubleshooting section; the promtool tests make every alert fire and
// stay quiet, and evaluate every recorded name.
func TestRulesAreDocumentedAndTested(t *testing.T) {
	fired, quiet, evaluated := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, f := range globModule(t, ruleTestFilesGlob) {
		var tf promtoolTestFile
		readYAML(t, f, &tf)
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
			for _, e := range tc.PromQLExprTest {
				if len(e.ExpSamples) > 0 {
					evaluated[strings.TrimSpace(e.Expr)] = true
				}
			}
		}
	}
	anchors := markdownAnchors(t, "docs/operations.md")
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			if !evaluated[r.Record] {
				t.Errorf("recording rule %s: no promql_expr_test evaluates it with expected samples", r.Record)
			}
			continue
		}
		if r.For == "" {
			t.Errorf("alert %s has no for:", r.Alert)
		}
		if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
			t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" {
			t.Errorf("alert %s has no summary", r.Alert)
		}
		if m := operationsLinkRE.FindStringSubmatch(r.Annotations["description"]); m == nil {
			t.Errorf("alert %s: its description names no section of docs/operations.md", r.Alert)
		} else if !anchors[m[1]] {
			t.Errorf("alert %s: docs/operations.md has no heading or anchor %q", r.Alert, m[1])
		}
		if !fired[r.Alert] || !quiet[r.Alert] {
			t.Errorf("alert %s: the promtool tests must make it fire (%v) and stay quiet (%v)", r.Alert, fired[r.Alert], quiet[r.Alert])
		}
	}
}

// TestRulesStripThresholds checks the rewrite that lets the dashboard test
// evaluate an alert's condition while it does not hold.
func TestRulesStripThresholds(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"comparison at the root", `up == 0`, `up`},
		{"number on the left", `0.5 < rate(x[5m])`, `rate(x[5m])`},
		{"inside and", `up == 0 and push_time_seconds`, `up and push_time_seconds`},
		{"both sides of and", `max by (i) (a) > 0 and on (i) sum by (i) (b) == 0`, `max by (i) (a) and on (i) sum by (i) (b)`},
		{"time based", `time() - max by (p) (x) > 300`, `time() - max by (p) (x)`},
		{"ratio", `sum(rate(a[5m])) / sum(rate(b[5m])) > 0.05`, `sum(rate(a[5m])) / sum(rate(b[5m]))`},
		{"absent", `absent(x{a="b"})`, `x{a="b"}`},
		{"absent_over_time", `absent_over_time(x[5m])`, `x`},
		{"bool comparison kept", `up == bool 0`, `up == bool 0`},
		{"vector comparison kept", `a > b`, `a > b`},
	} {
		t.Run(c.name, func(t *testing.T) { checkRewrite(t, "stripThresholds", stripThresholds, c.in, c.want) })
	}
}

// checkRewrite checks that rewrite turns the PromQL expression in into
// want, compared as Prometheus prints them.
func checkRewrite(t *testing.T, name string, rewrite func(string) (string, error), in, want string) {
	t.Helper()
	got, err := rewrite(in)
	if err != nil {
		t.Fatal(err)
	}
	w, err := promqlParser.ParseExpr(want)
	if err != nil {
		t.Fatal(err)
	}
	if got != w.String() {
		t.Errorf("%s(%q) = %q, want %q", name, in, got, w.String())
	}
}

// operationsLinkRE matches a link to a section of docs/operations.md.
var operationsLinkRE = regexp.MustCompile(`docs/operations\.md#([a-z0-9-]+)`)

// markdownAnchors returns the anchors of the Markdown file at path under
// the module root: the GitHub slugs of its headings and its explicit
// <a id="..."> anchors.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(globModule(t, path)[0])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if m := explicitAnchorRE.FindStringSubmatch(line); m != nil {
			out[m[1]] = true
		}
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.ToLower(strings.TrimSpace(strings.TrimLeft(h, "#")))
			h = strings.ReplaceAll(slugDropRE.ReplaceAllString(h, ""), " ", "-")
			out[h] = true
		}
	}
	return out
}

var (
	explicitAnchorRE = regexp.MustCompile(`<a id="([^"]+)">`)
	// slugDropRE is what GitHub leaves out of a heading's anchor.
	slugDropRE = regexp.MustCompile(`[^a-z0-9 _-]`)
)

// promqlParser parses the expressions of the dashboard and the rules.
var promqlParser = parser.NewParser(parser.Options{})

// stripThresholds returns expr without its comparisons against a number
// (up == 0 becomes up) and with absent(x) replaced by x: an expression that
// returns data whenever the series the alert watches exist, whether or not
// its condition holds.
func stripThresholds(expr string) (string, error) {
	e, err := promqlParser.ParseExpr(expr)
	if err != nil {
		return "", err
	}
	return strip(e).String(), nil
}

func strip(e parser.Expr) parser.Expr {
	switch n := e.(type) {
	case *parser.BinaryExpr:
		if n.Op.IsComparisonOperator() && !n.ReturnBool {
			if isNumber(n.RHS) {
				return strip(n.LHS)
			}
			if isNumber(n.LHS) {
				return strip(n.RHS)
			}
		}
		n.LHS, n.RHS = strip(n.LHS), strip(n.RHS)
	case *parser.ParenExpr:
		n.Expr = strip(n.Expr)
		if _, ok := n.Expr.(*parser.ParenExpr); ok {
			return n.Expr
		}
	case *parser.AggregateExpr:
		n.Expr = strip(n.Expr)
	case *parser.SubqueryExpr:
		n.Expr = strip(n.Expr)
	case *parser.Call:
		switch n.Func.Name {
		case "absent":
			return strip(n.Args[0])
		case "absent_over_time":
			if m, ok := n.Args[0].(*parser.MatrixSelector); ok {
				return m.VectorSelector
			}
		}
		for i, a := range n.Args {
			n.Args[i] = strip(a)
		}
	}
	return e
}

// isNumber reports whether e is a number literal, possibly in parentheses
// or negated.
func isNumber(e parser.Expr) bool {
	switch n := e.(type) {
	case *parser.NumberLiteral:
		return true
	case *parser.ParenExpr:
		return isNumber(n.Expr)
	case *parser.UnaryExpr:
		return isNumber(n.Expr)
	}
	return false
}

// vectorSelectors returns the vector selectors expr reads, those of range
// selectors too.
func vectorSelectors(expr string) ([]*parser.VectorSelector, error) {
	e, err := promqlParser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out, nil
}

// selectors returns the vector selectors expr reads (those of range
// selectors too), each as an expression of its own.
func selectors(expr string) ([]string, error) {
	vss, err := vectorSelectors(expr)
	var out []string
	for _, vs := range vss {
		out = append(out, vs.String())
	}
	return out, err
}

// loadRules returns every rule of the rule files.
func loadRules(t *testing.T) []promRule {
	t.Helper()
	var out []promRule
	for _, f := range globModule(t, ruleFilesGlob) {
		var rf promRuleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			out = append(out, g.Rules...)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no rules in %s", ruleFilesGlob)
	}
	return out
}

// runPromtool runs promtool with args and fails the test with its output
// when it fails.
func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtoolBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, &out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), &out)
}

// globModule returns the files matching pattern under the module root,
// failing the test when there are none.
func globModule(t *testing.T, pattern string) []string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no file matches %s in %s", pattern, root)
	}
	return files
}

// readYAML decodes the YAML file at path into v.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
