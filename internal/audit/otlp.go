package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// The OTLP logs protobuf is encoded by hand: it is a handful of messages,
// and the generated types would bring gRPC and its gateway along.
// Field numbers are those of opentelemetry/proto/logs/v1/logs.proto,
// common/v1/common.proto and resource/v1/resource.proto.

const (
	otlpQueue    = 4096
	otlpBatch    = 256
	otlpInterval = time.Second
)

// exporter sends events to an OTLP/HTTP collector from its own bounded
// queue, in batches. It never blocks the recorder: when the queue is full or
// the collector fails, events are dropped and Warn is called once.
type exporter struct {
	url     string
	client  *http.Client
	version string
	warn    func(error)

	q        chan otlpRecord
	stop     chan struct{}
	done     chan struct{}
	warnOnce sync.Once
	ctx      context.Context
	cancel   context.CancelFunc
}

// otlpRecord is one event, ready to encode.
type otlpRecord struct {
	line []byte // the JSON line, without the newline
	e    Event
}

func newExporter(endpoint string, client *http.Client, version string, warn func(error)) (*exporter, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("audit: otlp_endpoint %q is not an http(s) URL", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/logs"
	}
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	ctx, cancel := context.WithCancel(context.Background())
	x := &exporter{
		url: u.String(), client: client, version: version, warn: warn,
		q: make(chan otlpRecord, otlpQueue), stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	go x.run()
	return x, nil
}

// enqueue copies the lines in buf (one per event) onto the queue.
func (x *exporter) enqueue(buf []byte, events []Event) {
	if x == nil {
		return
	}
	for _, e := range events {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return
		}
		rec := otlpRecord{line: bytes.Clone(buf[:i]), e: e}
		buf = buf[i+1:]
		select {
		case x.q <- rec:
		default:
			x.fail(fmt.Errorf("the OTLP queue is full (collector %s too slow): dropping events; the local log is complete", x.url))
		}
	}
}

func (x *exporter) fail(err error) {
	x.warnOnce.Do(func() { x.warn(err) })
}

func (x *exporter) run() {
	defer close(x.done)
	tick := time.NewTicker(otlpInterval)
	defer tick.Stop()
	var batch []otlpRecord
	for {
		select {
		case rec := <-x.q:
			batch = append(batch, rec)
			if len(batch) >= otlpBatch {
				x.send(batch)
				batch = batch[:0]
			}
		case <-tick.C:
			if len(batch) > 0 {
				x.send(batch)
				batch = batch[:0]
			}
		case <-x.stop:
			for {
				select {
				case rec := <-x.q:
					batch = append(batch, rec)
					if len(batch) >= otlpBatch {
						x.send(batch)
						batch = batch[:0]
					}
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				x.send(batch)
			}
			return
		}
	}
}

// close sends what is queued, waiting at most wait before giving up.
func (x *exporter) close(wait time.Duration) {
	if x == nil {
		return
	}
	close(x.stop)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-x.done:
	case <-t.C:
		x.cancel()
		<-x.done
	}
	x.cancel()
}

func (x *exporter) send(batch []otlpRecord) {
	if x.ctx.Err() != nil {
		return
	}
	body := encodeLogsRequest(batch, x.version)
	req, err := http.NewRequestWithContext(x.ctx, http.MethodPost, x.url, bytes.NewReader(body))
	if err != nil {
		x.fail(err)
		return
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := x.client.Do(req)
	if err != nil {
		x.fail(fmt.Errorf("sending session events to the OTLP collector: %w (dropping them; the local log is complete)", err))
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		x.fail(fmt.Errorf("the OTLP collector %s answered %s (dropping events; the local log is complete)", x.url, resp.Status))
	}
}

// Severity numbers of the OTLP log data model.
const (
	sevInfo = 9
	sevWarn = 13
)

// encodeLogsRequest encodes an ExportLogsServiceRequest holding one
// ResourceLogs (service.name crewgate) with one ScopeLogs of the batch.
func encodeLogsRequest(batch []otlpRecord, version string) []byte {
	var scope pb
	var is pb
	is.str(1, "crewgate/audit")
	is.str(2, version)
	scope.msg(1, is.b)
	for _, rec := range batch {
		scope.msg(2, encodeLogRecord(rec))
	}
	var res pb
	res.msg(1, kv("service.name", anyStr("crewgate")))
	if version != "" {
		res.msg(1, kv("service.version", anyStr(version)))
	}
	var rl pb
	rl.msg(1, res.b)
	rl.msg(2, scope.b)
	var req pb
	req.msg(1, rl.b)
	return req.b
}

func encodeLogRecord(rec otlpRecord) []byte {
	e := rec.e
	var lr pb
	lr.fixed64(1, uint64(e.Time.UnixNano()))
	sev, text := severity(&e)
	lr.varint(2, sev)
	lr.str(3, text)
	lr.msg(5, anyStr(string(rec.line)))
	lr.msg(6, kv("crewgate.session", anyStr(e.Session)))
	lr.msg(6, kv("crewgate.event.type", anyStr(string(e.Type))))
	lr.msg(6, kv("crewgate.seq", anyInt(e.Seq)))
	lr.msg(6, kv("crewgate.hash", anyStr(e.Hash)))
	if e.ID != "" {
		lr.msg(6, kv("crewgate.request.id", anyStr(e.ID)))
	}
	switch {
	case e.Request != nil:
		lr.msg(6, kv("http.request.method", anyStr(e.Request.Method)))
		lr.msg(6, kv("url.full", anyStr(e.Request.URL)))
		lr.msg(6, kv("crewgate.decision", anyStr(string(e.Request.Decision))))
		if e.Request.Rule != "" {
			lr.msg(6, kv("crewgate.rule", anyStr(e.Request.Rule)))
		}
	case e.Response != nil:
		lr.msg(6, kv("http.response.status_code", anyInt(int64(e.Response.Status))))
	case e.Approval != nil:
		lr.msg(6, kv("crewgate.decision", anyStr(string(e.Approval.Decision))))
	}
	lr.fixed64(11, uint64(e.Time.UnixNano()))
	lr.str(12, "crewgate."+string(e.Type))
	return lr.b
}

func severity(e *Event) (uint64, string) {
	switch {
	case e.Type == TypeLeak, e.Type == TypeGap,
		e.Request != nil && e.Request.Decision == DecisionDeny,
		e.Approval != nil && e.Approval.Decision != DecisionAllow:
		return sevWarn, "WARN"
	}
	return sevInfo, "INFO"
}

// kv encodes a KeyValue.
func kv(key string, value []byte) []byte {
	var b pb
	b.str(1, key)
	b.msg(2, value)
	return b.b
}

// anyStr and anyInt encode an AnyValue.
func anyStr(s string) []byte {
	var b pb
	b.strAlways(1, s)
	return b.b
}

func anyInt(n int64) []byte {
	var b pb
	b.tag(3, 0)
	b.uvarint(uint64(n))
	return b.b
}

// pb is a minimal protobuf writer.
type pb struct{ b []byte }

func (p *pb) tag(field, wire int) { p.uvarint(uint64(field)<<3 | uint64(wire)) }
func (p *pb) uvarint(v uint64)    { p.b = binary.AppendUvarint(p.b, v) }

func (p *pb) varint(field int, v uint64) {
	if v != 0 {
		p.tag(field, 0)
		p.uvarint(v)
	}
}

func (p *pb) fixed64(field int, v uint64) {
	if v != 0 {
		p.tag(field, 1)
		p.b = binary.LittleEndian.AppendUint64(p.b, v)
	}
}

func (p *pb) str(field int, s string) {
	if s != "" {
		p.strAlways(field, s)
	}
}

// strAlways writes s even when empty: an AnyValue's oneof must be present.
func (p *pb) strAlways(field int, s string) {
	p.tag(field, 2)
	p.uvarint(uint64(len(s)))
	p.b = append(p.b, s...)
}

func (p *pb) msg(field int, m []byte) {
	p.tag(field, 2)
	p.uvarint(uint64(len(m)))
	p.b = append(p.b, m...)
}
