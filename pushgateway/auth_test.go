package pushgateway_test

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	commoncfg "github.com/prometheus/common/config"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// authProxy is an HTTPS server in front of gw that lets through only
// requests with the basic auth user and password given, as a reverse proxy
// guarding a Pushgateway would. It returns the server and the path of a
// file holding its CA certificate.
func authProxy(t *testing.T, gw *embedded.Pushgateway, user, password string) (*httptest.Server, string) {
	t.Helper()
	target, err := url.Parse(gw.URL())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: tr,
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="pushgateway"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, ca
}

func TestPushThroughTLSAndBasicAuth(t *testing.T) {
	gw := startGateway(t, false)
	srv, ca := authProxy(t, gw, "receiver", "s3cret")
	key := pushgateway.GroupingKey{Job: "node", Labels: []pushgateway.Label{{Name: "instance", Value: "host-1:9100"}}}
	body := readFile(t, "../testdata/node_exporter.prom")

	tests := []struct {
		name     string
		password string
		ca       string
		wantCode int // 0: the push succeeds
	}{
		{name: "right password", password: "s3cret", ca: ca},
		{name: "wrong password", password: "wrong", ca: ca, wantCode: http.StatusUnauthorized},
		{name: "unknown CA", password: "s3cret", wantCode: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := commoncfg.DefaultHTTPClientConfig
			hc.BasicAuth = &commoncfg.BasicAuth{Username: "receiver", Password: commoncfg.Secret(tt.password)}
			hc.TLSConfig = commoncfg.TLSConfig{CAFile: tt.ca}
			if err := hc.Validate(); err != nil {
				t.Fatal(err)
			}
			httpClient, err := commoncfg.NewClientFromConfig(hc, "pushgateway")
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, pushgateway.Options{URL: srv.URL, HTTPClient: httpClient})
			err = c.Push(t.Context(), key, contentTypeText, body)
			switch tt.wantCode {
			case 0:
				if err != nil {
					t.Fatalf("Push: %v", err)
				}
				if want := map[string]string{"job": "node", "instance": "host-1:9100"}; !hasGroup(t, gw, want) {
					t.Fatalf("groups = %v, want %v", groups(t, gw), want)
				}
			case -1:
				if err == nil || pushgateway.Retryable(err) {
					t.Fatalf("Push with an unknown CA: %v (retryable %v), want a certificate error that is not retried", err, pushgateway.Retryable(err))
				}
			default:
				var se *pushgateway.Error
				if !errors.As(err, &se) || se.Code != tt.wantCode {
					t.Fatalf("Push: %v, want an *Error %d", err, tt.wantCode)
				}
				// Wrong credentials stay wrong until the configuration
				// changes: a 401 is not retried.
				if pushgateway.Retryable(err) {
					t.Fatalf("Retryable(%v) = true, want false", err)
				}
			}
		})
	}
}
