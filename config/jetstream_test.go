package config

import (
	"testing"
	"time"
)

func TestJetStreamSection(t *testing.T) {
	c := mustParse(t, "max_age: 2m\npoller_stream:\n  urls: nats://a:4222\n  stream: PROMETHEUS\njobs:\n  j: {targets: [{url: 'http://a'}]}\n")
	if err := c.Validate(RolePoller); err != nil {
		t.Fatalf("a JetStream section with stream and urls alone: %v", err)
	}
	s := c.PollerStream
	if !s.JetStream() || s.Subject() != "prometheus" || !s.Creates() || s.Replicas != 1 || s.Storage != StorageFile ||
		s.Consumer != "prometheus-streams" || time.Duration(s.PinnedTTL) != 5*time.Second || s.MaxBytes != 0 {
		t.Fatalf("defaults: %+v", s)
	}
	off := mustParse(t, "poller_stream: {urls: 'nats://a:4222', stream: S, topic: metrics.dc1, create_stream: false, storage: memory, replicas: 3, max_bytes: 1GiB}\n")
	if s := off.PollerStream; s.Creates() || s.Subject() != "metrics.dc1" || s.Storage != StorageMemory || s.Replicas != 3 || s.MaxBytes != 1<<30 {
		t.Fatalf("set keys: %+v", s)
	}
	// A 1.0 section stays NATS Streaming.
	v1 := mustParse(t, "poller_stream: {urls: 'nats://a:4222', cluster_id: c, topic: t}\n")
	if v1.PollerStream.JetStream() {
		t.Fatal("a section with cluster_id is JetStream")
	}
}

func TestJetStreamSectionErrors(t *testing.T) {
	checkParseErrors(t, []parseErrorCase{
		{"both transports", "poller_stream:\n  cluster_id: c\n  stream: S\n", "config.yaml:3: poller_stream.stream: conflicts with cluster_id: stream uses JetStream, cluster_id NATS Streaming; set one"},
		{"bad stream name", "receiver_stream:\n  stream: a.b\n", `config.yaml:2: receiver_stream.stream: "a.b" is no JetStream name (no white space, ., *, >, / or \)`},
		{"bad consumer name", "receiver_stream:\n  stream: S\n  consumer: 'x y'\n", `config.yaml:3: receiver_stream.consumer: "x y" is no JetStream name (no white space, ., *, >, / or \)`},
		{"bad storage", "receiver_stream:\n  stream: S\n  storage: disk\n", `config.yaml:3: receiver_stream.storage: "disk" is not "file" or "memory"`},
		{"replicas", "receiver_stream:\n  stream: S\n  replicas: 7\n", "config.yaml:3: receiver_stream.replicas: must be 1 to 5"},
		{"pinned ttl", "receiver_stream:\n  stream: S\n  pinned_ttl: 10ms\n", "config.yaml:3: receiver_stream.pinned_ttl: must be at least 2s (the active receiver pulls every half of it, and 1s is the shortest pull)"},
	})
}
