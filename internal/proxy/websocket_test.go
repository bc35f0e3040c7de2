package proxy

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/crewgate/crewgate/internal/testenv"
)

// TestWebSocketFramesAreMasked: an upstream that hands the injected key
// back over a WebSocket (a real client and server library), in text and
// binary messages, after asking for compression. Every frame reaches the
// crew at once, valid, with the key filled.
func TestWebSocketFramesAreMasked(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			out := []byte(strings.ReplaceAll(string(msg), "KEY", key))
			if typ == websocket.MessageBinary {
				out = []byte(base64.StdEncoding.EncodeToString(out))
			}
			if err := c.Write(ctx, typ, out); err != nil {
				return
			}
		}
	})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}})
	client := *h.client
	client.Timeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://openai.example.com/v1/realtime", &websocket.DialOptions{
		HTTPClient: &client, HTTPHeader: http.Header{"Authorization": {"Bearer " + placeholder}},
		CompressionMode: websocket.CompressionContextTakeover,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for _, tc := range []struct {
		typ websocket.MessageType
		msg string
	}{
		{websocket.MessageText, "hello"},
		{websocket.MessageText, "the key is KEY, twice: KEY"},
		{websocket.MessageBinary, "user:KEY"},
		{websocket.MessageText, strings.Repeat("long ", 20000) + "KEY"},
	} {
		if err := c.Write(ctx, tc.typ, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		readCtx, cancelRead := context.WithTimeout(ctx, 2*time.Second)
		typ, got, err := c.Read(readCtx)
		cancelRead()
		if err != nil {
			t.Fatalf("%.40q: %v", tc.msg, err)
		}
		if f, ok := testenv.Reveals(got, realSecret); ok || typ != tc.typ {
			t.Errorf("%.40q: type %v, the crew sees the key (%s): %.200q", tc.msg, typ, f, got)
		}
		if strings.Contains(tc.msg, "KEY") && !strings.Contains(string(got), "****") {
			t.Errorf("%.40q: nothing masked: %.200q", tc.msg, got)
		}
	}
}
