package push

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/stream"
)

// faultRawV1 encodes a version 1 message field by field as docs/wire-format.md
// lays it out, without envelope.Append's checks, so a test can write what
// the encoder refuses (an empty job or instance, invalid UTF-8).
func faultRawV1(job, instance string, start time.Time, payload []byte) []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b := []byte(envelope.Magic)
	b = append(b, envelope.Version)
	b = str(b, job)
	b = str(b, instance)
	b = str(b, "dc1")
	b = binary.BigEndian.AppendUint64(b, uint64(start.UnixNano()))
	b = binary.AppendUvarint(b, uint64(12*time.Millisecond))
	b = append(b, byte(envelope.OutcomeSuccess))
	b = str(b, "")
	b = str(b, testenv.TextContentType)
	b = append(b, byte(envelope.CodecSnappy))
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// faultAckCounter is a delivery handed straight to the receiver, for messages
// larger than the NATS server's max_payload lets through the channel.
type faultAckCounter struct {
	data []byte
	acks atomic.Int32
}

func (m *faultAckCounter) Data() []byte      { return m.data }
func (m *faultAckCounter) Ack() error        { m.acks.Add(1); return nil }
func (m *faultAckCounter) Redelivered() bool { return false }

// Term counts as an acknowledgement: either ends the message's deliveries.
func (m *faultAckCounter) Term() error { m.acks.Add(1); return nil }

func (m *faultAckCounter) Publisher() (string, bool) { return "", false }

// TestFaultHostileChannel sends every hostile payload over each transport:
// NATS Streaming's one channel, and JetStream's subjects (each payload on
// the subject of the group it names, or one of its own when it names none).
//
// The two run one after the other, and no other test of the package runs
// meanwhile (this one is not parallel): each heap measure is of the whole
// process, so it must see no other work than its own, not even the other
// transport's servers shutting down.
func TestFaultHostileChannel(t *testing.T) {
	t.Run("stan", func(t *testing.T) { testFaultHostileChannel(t, false) })
	t.Run("jetstream", func(t *testing.T) { testFaultHostileChannel(t, true) })
}

func testFaultHostileChannel(t *testing.T, jetstream bool) {
	const bodyLimit = 16 << 20
	now := time.Now()
	body := func(s string) []byte { return envelope.Compress(nil, []byte(s)) }

	// Sanity: faultRawV1 writes what Append writes.
	if got, err := envelope.Decode(faultRawV1("node", "x", now, body("m 1\n"))); err != nil || got.Job != "node" || got.Instance != "x" {
		t.Fatalf("rawV1 does not encode a valid message: %v", err)
	}

	noise := func(n int) []byte {
		b := make([]byte, n)
		// In one call: a byte at a time takes 0.2s under the race detector.
		_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
		b[0] = 0x01 // neither the magic's 0xFF nor the start of JSON
		return b
	}
	// A block that inflates to n zero bytes: snappy's best ratio, ~21x.
	bomb := func(n int) []byte { return snappy.Encode(nil, make([]byte, n)) }
	bomb64 := bomb(64 << 20)
	bomb18 := bomb(18 << 20) // the largest kind of bomb a 1 MB max_payload lets through
	bombUnder := bomb(bodyLimit - 1)
	unknownVersion := scrape(t, "node", "v2", now, testenv.TextContentType, []byte("m 1\n"))
	unknownVersion[3] = envelope.Version + 1
	truncatedV1 := scrape(t, "node", "cut", now, testenv.TextContentType, []byte("m 1\n"))
	truncatedV1 = truncatedV1[:len(truncatedV1)-4]
	// A valid length header (60 bytes) and a literal that runs past the end.
	corrupt := append(binary.AppendUvarint(nil, 60), 59<<2, 'a', 'b', 'c', 'd', 'e')
	longEscape := strings.Repeat("../", 333) + "x" // 1000 characters

	type hostile struct {
		name   string
		msg    []byte
		reason string // the drop reason; "" when the message is pushed
		direct bool   // too large for the channel: handed to the receiver
		// For a message that is pushed: its exact group and the value of
		// odd_value it carries.
		job, instance string
		odd           float64
		up            float64
	}
	odd := func(name, job, instance string, v float64) hostile {
		return hostile{
			name: name, job: job, instance: instance, odd: v, up: 1,
			msg: scrape(t, job, instance, now, testenv.TextContentType, []byte("odd_value "+strconv.FormatFloat(v, 'f', -1, 64)+"\n")),
		}
	}
	cases := []hostile{
		{name: "empty", msg: []byte{}, reason: "empty"},
		{name: "NUL byte", msg: []byte{0}, reason: "bad_magic"},
		{name: "plain text", msg: []byte("GET /metrics HTTP/1.1\r\n\r\n"), reason: "bad_magic"},
		{name: "JSON garbage", msg: []byte(`{"job": [1,2,{"x":`), reason: "legacy_json"},
		{name: "truncated JSON", msg: []byte(`{"job":"node","instance":"j","time":1700000000,"publisher":"p","Scrape":"H4sIAAAAAAAA/yo`), reason: "legacy_json"},
		{name: "JSON of the wrong types", msg: []byte(`{"job":1,"instance":["x"],"time":"now","Scrape":false}`), reason: "legacy_json"},
		{name: "random noise, largest that fits the channel", msg: noise(1000 << 10), reason: "bad_magic"},
		{name: "4 MiB of random noise", msg: noise(4 << 20), reason: "bad_magic", direct: true},
		{name: "invalid UTF-8 in the instance", msg: faultRawV1("node", "\xff\xfe\xfd", now, body("m 1\n")), reason: "invalid_utf8"},
		{name: "invalid UTF-8 as a message", msg: []byte("\xc3\x28\xa0\xa1"), reason: "bad_magic"},
		{name: "unknown version", msg: unknownVersion, reason: "unsupported_version"},
		{name: "truncated version 1", msg: truncatedV1, reason: "truncated"},
		{name: "snappy block inflating to 64 MiB", msg: faultRawV1("node", "bomb64", now, bomb64), reason: "body_too_large", direct: true},
		{name: "snappy block inflating to 18 MiB", msg: faultRawV1("node", "bomb18", now, bomb18), reason: "body_too_large"},
		{name: "snappy header claiming 1 TiB", msg: faultRawV1("node", "tib", now, append(binary.AppendUvarint(nil, 1<<40), "abc"...)), reason: "body_too_large"},
		{name: "valid header, corrupt body", msg: faultRawV1("node", "corrupt", now, corrupt), reason: "corrupt_body"},
		{name: "empty job", msg: faultRawV1("", "x", now, body("m 1\n")), reason: "missing_field"},
		{name: "empty instance", msg: faultRawV1("node", "", now, body("m 1\n")), reason: "missing_field"},
		{name: "job of 1025 bytes", msg: faultRawV1(strings.Repeat("j", 1025), "x", now, body("m 1\n")), reason: "field_too_long"},
		// Pushed, each under exactly its own label values.
		{name: "snappy block inflating to just under the limit", msg: faultRawV1("node", "bomb-under", now, bombUnder), job: "node", instance: "bomb-under"},
		odd("instance /", "node", "/", 1),
		odd("instance ..", "node", "..", 2),
		odd("instance escaping to the victim", "node", "../../job/node/instance/victim", 3),
		odd("job ..", "..", "victim", 4),
		odd("job /", "/", "victim", 5),
		odd("job with slashes", "node/instance/victim", "x", 6),
		odd("instance of 1000 characters", "node", longEscape, 7),
		odd("job of 1000 characters", strings.Repeat("j", 1000), "x", 8),
		odd("instance with a NUL and newline", "node", "a\x00b\nc", 9),
	}
	for i := range cases {
		if cases[i].direct == (len(cases[i].msg) < 1000<<10+100) {
			t.Fatalf("%s: %d bytes, direct %v: fix the table", cases[i].name, len(cases[i].msg), cases[i].direct)
		}
	}

	// A 1s ack wait: a message the receiver failed to acknowledge would
	// come again within the test. One message in flight at a time, so that
	// a message's ack wait runs while it is handled, not also while the
	// megabyte messages sent before it wait for their turn on a loaded
	// machine, which could outlast it.
	e := newEnvWith(t, Options{MaxAge: 30 * time.Second, BodyLimit: bodyLimit}, "", envSettings{ackWait: time.Second, maxInflight: 1, timeout: 5 * time.Second, jetstream: jetstream})
	victim := map[string]string{"job": "node", "instance": "victim"}
	good := map[string]string{"job": "node", "instance": "good"}
	e.publish(t, scrape(t, "node", "victim", now, testenv.TextContentType, []byte("victim_value 42\n")))
	e.waitGateway(t, "victim_value", victim, 42)

	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	published := 1 // the victim
	var direct []*faultAckCounter
	for i, c := range cases {
		if c.direct {
			// The stream refuses it: NATS's max_payload is 1 MB.
			err := e.pub.Publish(stream.Key{Publisher: "dc1", Job: "direct", Instance: c.name}, c.msg, func(error) {})
			if err == nil {
				t.Fatalf("%s: a %d byte message was accepted for publishing; the test assumes a 1 MB max_payload", c.name, len(c.msg))
			}
			// Handed over as a server with a larger max_payload would
			// deliver it (handle runs alongside the subscription's
			// callback here; -race checks that this is safe).
			m := &faultAckCounter{data: c.msg}
			direct = append(direct, m)
			e.sub.handle(t, m)
		} else {
			e.publish(t, c.msg)
			published++
		}
		// Good scrapes keep coming between the hostile ones.
		e.publish(t, scrape(t, "node", "good", now.Add(time.Duration(i+1)*time.Millisecond), testenv.TextContentType,
			[]byte("good_seq "+strconv.Itoa(i+1)+"\n")))
		published++
	}
	e.waitGateway(t, "good_seq", good, float64(len(cases)))

	wantDrops := map[string]float64{}
	for _, c := range cases {
		if c.reason != "" {
			wantDrops[c.reason]++
		}
	}
	for reason, n := range wantDrops {
		testenv.WaitFor(t, "drops for "+reason, 10*time.Second, func() bool {
			return e.receiver.dropped(reason) >= n
		})
	}
	for _, c := range cases {
		if c.reason != "" {
			continue
		}
		labels := map[string]string{"job": c.job, "instance": c.instance}
		if c.odd != 0 {
			e.waitGateway(t, "odd_value", labels, c.odd)
		}
		e.waitGateway(t, "up", labels, c.up)
	}
	for _, m := range direct {
		testenv.WaitFor(t, "the oversized deliveries to be acknowledged", 5*time.Second, func() bool { return m.acks.Load() == 1 })
	}

	// Exact label values, and no group overwrote another: the Pushgateway
	// holds exactly the groups pushed, the victim still with its value.
	fams, err := testenv.Families(e.gateway + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]bool{{"node", "victim"}: true, {"node", "good"}: true}
	for _, c := range cases {
		if c.reason == "" {
			want[[2]string{c.job, c.instance}] = true
		}
	}
	have := map[[2]string]bool{}
	for _, m := range fams["up"].GetMetric() {
		var job, inst string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "job":
				job = l.GetValue()
			case "instance":
				inst = l.GetValue()
			}
		}
		have[[2]string{job, inst}] = true
		if !want[[2]string{job, inst}] {
			t.Errorf("the Pushgateway has a group nobody pushed: job=%q instance=%q", job, inst)
		}
	}
	for g := range want {
		if !have[g] {
			t.Errorf("group job=%q instance=%q missing from the Pushgateway", g[0], g[1])
		}
	}
	if v, ok := testenv.Value(fams, "victim_value", victim); !ok || v != 42 {
		t.Errorf("victim_value = %v (present %v), want 42: a hostile group overwrote it", v, ok)
	}
	if n := len(fams["victim_value"].GetMetric()); n != 1 {
		t.Errorf("%d victim_value series, want 1", n)
	}

	// The heap once everything was handled.
	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)

	// Everything was acknowledged once: over two ack waits nothing comes
	// again (the server would redeliver after 1s). On JetStream the good
	// scrapes share one subject, where a newer one replaces one not yet
	// delivered, so what arrived is what must not grow.
	wantReceived := float64(published + len(direct))
	if jetstream {
		wantReceived = e.receiver.received()
	}
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := e.receiver.received(); got != wantReceived {
			t.Fatalf("messages_received_total = %v, want %v: redeliveries of unacknowledged messages", got, wantReceived)
		}
		time.Sleep(50 * time.Millisecond) // polling an invariant over the ack wait window
	}
	for reason, n := range wantDrops {
		if got := e.receiver.dropped(reason); got != n {
			t.Errorf("messages_dropped_total{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	if n := e.receiver.dropped(output.ReasonRejected); n != 0 {
		t.Errorf("%v pushes rejected by the Pushgateway", n)
	}
	if n := testutil.ToFloat64(e.receiver.metrics.unparseable); n != 1 {
		t.Errorf("unparseable_scrapes_total = %v, want 1 (the bomb under the limit)", n)
	}

	t.Logf("heap in use (whole test process: receiver, NATS server, Pushgateway, test): %.1f MiB before, %.1f MiB after (%+.1f MiB); allocated during the run %.1f MiB; %d messages, %d direct",
		faultMiB(ms0.HeapAlloc), faultMiB(ms1.HeapAlloc), faultMiB(ms1.HeapAlloc)-faultMiB(ms0.HeapAlloc), faultMiB(ms1.TotalAlloc-ms0.TotalAlloc), published, len(direct))
	if ms1.HeapAlloc > ms0.HeapAlloc+64<<20 {
		t.Errorf("heap grew by %.1f MiB", faultMiB(ms1.HeapAlloc)-faultMiB(ms0.HeapAlloc))
	}
}

func faultMiB(n uint64) float64 { return float64(n) / (1 << 20) }
