package config

import (
	"testing"
)

// streamAuth is the authentication part of a StreamConfig, comparable.
type streamAuth struct{ Credentials, NKey, User, Password, Token string }

func TestStreamAuth(t *testing.T) {
	tests := []struct {
		name    string
		input   string // the body of poller_stream, indented by two spaces
		want    streamAuth
		wantErr string
	}{
		{name: "none", input: "  topic: t\n"},
		{name: "credentials", input: "  credentials: /etc/nats/poller.creds\n", want: streamAuth{Credentials: "/etc/nats/poller.creds"}},
		{name: "nkey", input: "  nkey: /etc/nats/poller.nk\n", want: streamAuth{NKey: "/etc/nats/poller.nk"}},
		{name: "user and password", input: "  user: poller\n  password: s3cret\n", want: streamAuth{User: "poller", Password: "s3cret"}},
		{name: "user alone", input: "  user: poller\n", want: streamAuth{User: "poller"}},
		{name: "token", input: "  token: abc\n", want: streamAuth{Token: "abc"}},
		{name: "numeric token is a string", input: "  token: 12345\n", want: streamAuth{Token: "12345"}},
		{name: "null counts as unset", input: "  token:\n  user: poller\n", want: streamAuth{User: "poller"}},
		{
			// Files are read when connecting, so a missing one is no
			// error here.
			name: "missing files are accepted", input: "  credentials: /nonexistent/x.creds\n",
			want: streamAuth{Credentials: "/nonexistent/x.creds"},
		},
		{
			name: "password without user", input: "  password: s3cret\n",
			wantErr: "config.yaml:3: poller_stream.password: requires user",
		},
		{
			name: "empty credentials", input: "  credentials: ''\n",
			wantErr: "config.yaml:3: poller_stream.credentials: must not be empty (leave the key out to not use it)",
		},
		{
			name: "empty nkey", input: `  nkey: ""` + "\n",
			wantErr: "config.yaml:3: poller_stream.nkey: must not be empty (leave the key out to not use it)",
		},
		{
			name: "empty password", input: "  user: u\n  password: ''\n",
			wantErr: "config.yaml:4: poller_stream.password: must not be empty (leave the key out to not use it)",
		},
		{
			name: "user and token", input: "  user: u\n  password: p\n  token: abc\n",
			wantErr: "config.yaml:5: poller_stream.token: conflicts with user (line 3): set only one of credentials, nkey, user (with password) and token",
		},
		{
			name: "credentials and nkey", input: "  nkey: /a.nk\n  credentials: /a.creds\n",
			wantErr: "config.yaml:3: poller_stream.nkey: conflicts with credentials (line 4): set only one of credentials, nkey, user (with password) and token",
		},
		{
			name: "three methods", input: "  credentials: /a.creds\n  nkey: /a.nk\n  token: abc\n",
			wantErr: "config.yaml:4: poller_stream.nkey: conflicts with credentials (line 3): set only one of credentials, nkey, user (with password) and token\n" +
				"config.yaml:5: poller_stream.token: conflicts with credentials (line 3): set only one of credentials, nkey, user (with password) and token",
		},
		{
			name: "not a string", input: "  user: [a]\n",
			wantErr: "config.yaml:3: poller_stream.user: cannot unmarshal !!seq into string",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("verbose: true\npoller_stream:\n"+tt.input), "config.yaml")
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			s := c.Stream(RolePoller)
			got := streamAuth{Credentials: s.Credentials, NKey: s.NKey, User: s.User, Password: s.Password, Token: s.Token}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestStreamAuthPerSection checks that each stream section has its own
// credentials and that a clash names the section it is in.
func TestStreamAuthPerSection(t *testing.T) {
	c := mustParse(t, "poller_stream:\n  user: p\n  password: pw\nreceiver_stream:\n  token: tok\n")
	if s := c.Stream(RolePoller); s.User != "p" || s.Password != "pw" || s.Token != "" {
		t.Errorf("poller_stream: %+v", s)
	}
	if s := c.Stream(RoleReceiver); s.Token != "tok" || s.User != "" {
		t.Errorf("receiver_stream: %+v", s)
	}
	_, err := Parse([]byte("receiver_stream:\n  token: tok\n  nkey: /x\n"), "config.yaml")
	checkErr(t, err, "config.yaml:2: receiver_stream.token: conflicts with nkey (line 3): set only one of credentials, nkey, user (with password) and token")
}
