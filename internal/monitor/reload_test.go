package monitor

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// send makes a request with method to url and returns the status and body.
func send(t *testing.T, client *http.Client, method, url, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReload(t *testing.T) {
	var calls atomic.Int32
	var fail atomic.Bool
	reload := func(context.Context) error {
		calls.Add(1)
		if fail.Load() {
			return errors.New("config.yaml:3: identity: restart to apply: identity")
		}
		return nil
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := writeFile(t, t.TempDir(), "web.yml", "basic_auth_users:\n  prometheus: "+string(hash)+"\n")
	s := serve(t, webConfig, WithReload(reload))
	plain := serve(t, "")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + s.Addr() + "/-/reload"

	tests := []struct {
		name, method, url, user string
		fail                    bool
		want                    int
		wantBody                string
		wantCalls               int32
	}{
		{"success", http.MethodPost, url, "prometheus", false, http.StatusOK, "ok\n", 1},
		{"refused with the reason", http.MethodPost, url, "prometheus", true, http.StatusInternalServerError, "config.yaml:3: identity: restart to apply: identity\n", 1},
		{"GET", http.MethodGet, url, "prometheus", false, http.StatusMethodNotAllowed, "", 0},
		{"PUT, as Prometheus takes it", http.MethodPut, url, "prometheus", false, http.StatusOK, "ok\n", 1},
		{"DELETE", http.MethodDelete, url, "prometheus", false, http.StatusMethodNotAllowed, "", 0},
		{"without credentials", http.MethodPost, url, "", false, http.StatusUnauthorized, "", 0},
		{"not enabled", http.MethodPost, "http://" + plain.Addr() + "/-/reload", "", false, http.StatusNotFound, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fail.Store(tt.fail)
			before := calls.Load()
			code, body := send(t, client, tt.method, tt.url, tt.user, "s3cret")
			if code != tt.want {
				t.Errorf("%s: %d %q, want %d", tt.method, code, body, tt.want)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			if got := calls.Load() - before; got != tt.wantCalls {
				t.Errorf("reload called %d times, want %d", got, tt.wantCalls)
			}
		})
	}
	if code, _ := send(t, client, http.MethodGet, "http://"+s.Addr()+"/metrics", "prometheus", "s3cret"); code != http.StatusOK {
		t.Errorf("GET /metrics beside /-/reload: %d", code)
	}
}
