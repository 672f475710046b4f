package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"text/template"
)

// streamsConfig fills testdata/prometheus-streams-1.0.yaml.tmpl.
type streamsConfig struct {
	LogFile        string
	MonitorPort    int
	ClusterID      string
	NATSURLs       string // one comma-separated string, as 1.0 wrote it
	PushgatewayURL string
	NodeURL        string
}

// promConfig fills testdata/prometheus.yml.tmpl.
type promConfig struct {
	PushgatewayHost string
}

// render executes the template testdata/<name> with data and returns the
// text.
func render(t *testing.T, name string, data any) []byte {
	t.Helper()
	tmpl, err := template.New(name).Option("missingkey=error").ParseFiles(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("parse template: %v", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatalf("render %s: %v", name, err)
	}
	return b.Bytes()
}

// writeFile writes b to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
