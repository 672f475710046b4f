package stream

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// authWait bounds every wait in these tests.
const authWait = 10 * time.Second

// Hints the connection errors carry, as users read them in the log.
const (
	authHint         = "authorization failed (check user/password, token, nkey or credentials of poller_stream)"
	authViolation    = "nats: Authorization Violation"
	tlsHint          = "TLS handshake failed (check tls ca, cert and key used by poller_stream)"
	unknownAuthority = "x509: certificate signed by unknown authority"
)

// roundTrip connects a publisher and a subscriber with the options mod
// makes and checks that a message gets through.
func roundTrip(t *testing.T, s *embedded.Streaming, mod func(*STANOptions)) {
	t.Helper()
	po, so := options(s, "pub"), options(s, "sub")
	mod(&po)
	mod(&so)
	pub, err := NewSTANPublisher(po, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, pub.Run)
	col := &collector{ack: true}
	sub, err := NewSTANSubscriber(so, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, col.handle) })
	testenv.WaitFor(t, "publisher and subscriber to connect", authWait, func() bool {
		return pub.Connected() && sub.Connected()
	})
	publish(t, pub, "x")
	testenv.WaitFor(t, "the message to arrive", authWait, func() bool { return col.count() == 1 })
}

// connectFailure runs a publisher (or, with subscriber, a subscriber) with
// the options mod makes, waits for its first failed attempt and returns
// what it logged at warning level. It checks that the failure was counted
// and that nothing connected.
func connectFailure(t *testing.T, s *embedded.Streaming, subscriber bool, mod func(*STANOptions)) string {
	t.Helper()
	buf := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := options(s, "client")
	mod(&opts)
	var (
		c         *connection
		connected func() bool
	)
	if subscriber {
		sub, err := NewSTANSubscriber(opts, logger, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, func(Message) {}) })
		c, connected = sub.c, sub.Connected
	} else {
		pub, err := NewSTANPublisher(opts, logger, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, pub.Run)
		c, connected = pub.c, pub.Connected
	}
	failures := c.metrics.attempts.WithLabelValues("failure")
	testenv.WaitFor(t, "two failed connection attempts", authWait, func() bool {
		return testutil.ToFloat64(failures) >= 2
	})
	if connected() {
		t.Fatal("connected despite the failures")
	}
	if got := testutil.ToFloat64(c.metrics.attempts.WithLabelValues("success")); got != 0 {
		t.Fatalf("success attempts = %v, want 0", got)
	}
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "stream connection failed") {
		t.Fatalf("first failure not logged at warning level; log:\n%s", out)
	}
	return out
}

func checkContains(t *testing.T, log string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q; log:\n%s", w, log)
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	nkeySeed := func(name string) (file, public string) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		public, err = kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		file = filepath.Join(dir, name)
		if err := os.WriteFile(file, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		return file, public
	}
	seedFile, seedPublic := nkeySeed("user.nk")
	otherSeedFile, _ := nkeySeed("other.nk")
	missing := filepath.Join(dir, "missing")

	userServer := embedded.StreamingOptions{User: "prom", Password: "right"}
	tests := []struct {
		name       string
		server     embedded.StreamingOptions
		subscriber bool               // fail as the receiver rather than the poller
		client     func(*STANOptions) // the client's authentication
		wantErr    []string           // nil: publish and receive work
	}{
		{
			name: "user and password", server: userServer,
			client: func(o *STANOptions) { o.User, o.Password = "prom", "right" },
		},
		{
			name: "wrong password", server: userServer,
			client:  func(o *STANOptions) { o.User, o.Password = "prom", "wrong" },
			wantErr: []string{authHint, authViolation},
		},
		{
			name: "wrong password of the receiver", server: userServer, subscriber: true,
			client:  func(o *STANOptions) { o.User, o.Password = "prom", "wrong" },
			wantErr: []string{"authorization failed (check user/password, token, nkey or credentials of receiver_stream)", authViolation},
		},
		{
			name: "no credentials", server: userServer,
			client:  func(*STANOptions) {},
			wantErr: []string{authHint, authViolation},
		},
		{
			name: "token", server: embedded.StreamingOptions{Token: "t0ken"},
			client: func(o *STANOptions) { o.Token = "t0ken" },
		},
		{
			name: "wrong token", server: embedded.StreamingOptions{Token: "t0ken"},
			client:  func(o *STANOptions) { o.Token = "other" },
			wantErr: []string{authHint, authViolation},
		},
		{
			name: "nkey", server: embedded.StreamingOptions{NKeyPublic: seedPublic},
			client: func(o *STANOptions) { o.NKeySeedFile = seedFile },
		},
		{
			name: "nkey beside a user", server: embedded.StreamingOptions{NKeyPublic: seedPublic, User: "prom", Password: "right"},
			client: func(o *STANOptions) { o.User, o.Password = "prom", "right" },
		},
		{
			name: "nkey of another user", server: embedded.StreamingOptions{NKeyPublic: seedPublic},
			client:  func(o *STANOptions) { o.NKeySeedFile = otherSeedFile },
			wantErr: []string{authHint, authViolation},
		},
		{
			name: "nkey seed file missing", server: embedded.StreamingOptions{NKeyPublic: seedPublic},
			client:  func(o *STANOptions) { o.NKeySeedFile = missing },
			wantErr: []string{"nkey seed file " + missing + " of poller_stream: nats: open " + missing + ": no such file or directory"},
		},
		{
			name: "credentials file missing", server: userServer,
			client:  func(o *STANOptions) { o.Credentials = missing },
			wantErr: []string{"cannot read the credentials file of poller_stream: nats: open " + missing + ": no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testenv.Streaming(t, tt.server)
			if tt.wantErr == nil {
				roundTrip(t, s, tt.client)
				return
			}
			log := connectFailure(t, s, tt.subscriber, tt.client)
			checkContains(t, log, tt.wantErr)
			t.Logf("logged: %s", strings.SplitN(log, "\n", 2)[0])
		})
	}
}

// TestCredentialsFile runs the server in operator (JWT) mode, the only
// mode in which .creds files authenticate.
func TestCredentialsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newAccount := func(operator nkeys.KeyPair) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		token, err := jwt.NewAccountClaims(pub).Encode(operator)
		if err != nil {
			t.Fatal(err)
		}
		return kp, pub, token
	}
	writeCreds := func(account nkeys.KeyPair, name string) string {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		uc := jwt.NewUserClaims(pub)
		uc.Name = name
		token, err := uc.Encode(account)
		if err != nil {
			t.Fatal(err)
		}
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(token, seed)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name+".creds")
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	operator, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	operatorPub, err := operator.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	account, accountPub, accountJWT := newAccount(operator)
	// An account the server does not know: its users are refused.
	stranger, _, _ := newAccount(operator)

	s := testenv.Streaming(t, embedded.StreamingOptions{Operator: &embedded.OperatorOptions{
		TrustedKey:  operatorPub,
		Accounts:    map[string]string{accountPub: accountJWT},
		Credentials: writeCreds(account, "streaming"),
	}})
	t.Run("right", func(t *testing.T) {
		creds := writeCreds(account, "prom")
		roundTrip(t, s, func(o *STANOptions) { o.Credentials = creds })
	})
	t.Run("unknown account", func(t *testing.T) {
		creds := writeCreds(stranger, "intruder")
		log := connectFailure(t, s, false, func(o *STANOptions) { o.Credentials = creds })
		checkContains(t, log, []string{authHint})
	})
}

func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, otherCA := testenv.NewCA(t, "test CA"), testenv.NewCA(t, "other CA")
	// Certificates for 127.0.0.1, usable by a server and by a client.
	issue := func(by *testenv.CA, name string) testenv.Cert {
		return by.Issue(t, testenv.CertOptions{CommonName: name, IPAddresses: testenv.Loopback(), Server: true, Client: true})
	}
	pair := issue(ca, "server").TLS()
	client := issue(ca, "poller.example.net")
	caFile := ca.Write(t, dir, "ca.pem")
	otherCAFile := otherCA.Write(t, dir, "other-ca.pem")
	certFile, keyFile := client.Write(t, dir, "client.pem", "client-key.pem")
	otherCertFile, otherKeyFile := issue(otherCA, "intruder.example.net").Write(t, dir, "intruder.pem", "intruder-key.pem")
	// The puppet scheme's layout: ssl_dir/certs/ca.pem,
	// ssl_dir/certs/<identity>.pem, ssl_dir/private_keys/<identity>.pem.
	sslDir := filepath.Join(dir, "puppet")
	ca.WritePuppet(t, sslDir, "poller.example.net", client)

	pool := ca.Pool()
	serverTLS := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	mutualTLS := &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
	}
	mutualTLS12 := mutualTLS.Clone()
	mutualTLS12.MaxVersion = tls.VersionTLS12
	tests := []struct {
		name    string
		server  *tls.Config
		client  *config.TLSConfig // nil: no tls section
		wantErr []string          // nil: publish and receive work
	}{
		{name: "file scheme", server: serverTLS, client: &config.TLSConfig{Scheme: config.SchemeFile, CA: caFile}},
		{
			name: "file scheme with client certificate", server: mutualTLS,
			client: &config.TLSConfig{Scheme: config.SchemeFile, CA: caFile, Cert: certFile, Key: keyFile},
		},
		{
			name: "puppet scheme", server: mutualTLS,
			client: &config.TLSConfig{Scheme: config.SchemePuppet, SSLDir: sslDir, Identity: "poller.example.net"},
		},
		{
			name: "other CA", server: serverTLS, client: &config.TLSConfig{Scheme: config.SchemeFile, CA: otherCAFile},
			wantErr: []string{tlsHint, unknownAuthority},
		},
		{
			name: "no tls section", server: serverTLS,
			wantErr: []string{"TLS handshake failed (the server requires TLS; set tls for poller_stream)", unknownAuthority},
		},
		{
			// TLS 1.2 checks the client certificate inside the handshake,
			// so the server's alert is what the client reads.
			name: "no client certificate, TLS 1.2", server: mutualTLS12, client: &config.TLSConfig{Scheme: config.SchemeFile, CA: caFile},
			wantErr: []string{"TLS handshake failed, the server refused this client (check tls cert and key used by poller_stream)", "remote error: tls: "},
		},
		{
			// TLS 1.3 checks it after the client's handshake is done: the
			// client reads the alert or finds the connection closed, as
			// the race goes. Both hints point at the same keys.
			name: "no client certificate, TLS 1.3", server: mutualTLS, client: &config.TLSConfig{Scheme: config.SchemeFile, CA: caFile},
			wantErr: []string{"refused this client (check tls cert and key used by poller_stream)"},
		},
		{
			name: "client certificate of another CA", server: mutualTLS12,
			client:  &config.TLSConfig{Scheme: config.SchemeFile, CA: caFile, Cert: otherCertFile, Key: otherKeyFile},
			wantErr: []string{"TLS handshake failed, the server refused this client (check tls cert and key used by poller_stream)", "remote error: tls: "},
		},
		{
			name: "server without TLS", client: &config.TLSConfig{Scheme: config.SchemeFile, CA: caFile},
			wantErr: []string{"the server does not offer TLS (check urls and tls of poller_stream)", "nats: secure connection not available"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testenv.Streaming(t, embedded.StreamingOptions{TLS: tt.server})
			clientTLS, err := tt.client.ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			mod := func(o *STANOptions) { o.TLS = clientTLS }
			if tt.wantErr == nil {
				roundTrip(t, s, mod)
				return
			}
			log := connectFailure(t, s, false, mod)
			checkContains(t, log, tt.wantErr)
			t.Logf("logged: %s", strings.SplitN(log, "\n", 2)[0])
		})
	}
}

// TestAuthOptionsExclusive checks the guard behind the configuration's own:
// one authentication method per connection.
func TestAuthOptionsExclusive(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*STANOptions)
		wantErr string
	}{
		{name: "one", mod: func(o *STANOptions) { o.User, o.Password = "u", "p" }},
		{name: "two", mod: func(o *STANOptions) { o.User, o.Token = "u", "t" }, wantErr: "stream: set only one of credentials, nkey seed file, user and token"},
		{name: "password alone", mod: func(o *STANOptions) { o.Password = "p" }, wantErr: "stream: password requires user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := STANOptions{URLs: []string{"nats://127.0.0.1:1"}, ClusterID: "c", ClientID: "p", Channel: "x"}
			tt.mod(&o)
			_, err := NewSTANPublisher(o, nil, prometheus.NewRegistry())
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("error %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestRedactedURLs(t *testing.T) {
	tests := []struct {
		name  string
		input []string
		want  string
	}{
		{"plain", []string{"nats://a:4222", "tls://b:4222"}, "nats://a:4222,tls://b:4222"},
		{"password", []string{"nats://prom:s3cret@a:4222"}, "nats://prom:xxxxx@a:4222"},
		{"token", []string{"nats://t0ken@a:4222", "nats://b:4222"}, "nats://xxxxx@a:4222,nats://b:4222"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redactedURLs(tt.input); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
