package approval

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// TestUnknownPeerCannotWatchOrDecide: where the platform does not name the
// client's process (here a net.Pipe, which has no peer credentials), the
// client may list but not watch or decide, since it could be the crew. Its
// watch leaves a headless queue denying at once.
func TestUnknownPeerCannotWatchOrDecide(t *testing.T) {
	q := NewQueue(Options{Headless: true})
	defer q.Close()
	var mu sync.Mutex
	var refused []RefusedPeer
	s := &server{q: q, user: "u", host: "h", conns: map[net.Conn]struct{}{},
		inCrew:    func(int) (bool, error) { t.Error("InCrew called without a pid"); return true, nil },
		onRefused: func(p RefusedPeer) { mu.Lock(); refused = append(refused, p); mu.Unlock() }}
	srv, cli := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serveConn(srv)
		srv.Close()
	}()
	defer func() { cli.Close(); <-done }()
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	sc := bufio.NewScanner(cli)
	say := func(line string) serverMsg {
		t.Helper()
		if _, err := fmt.Fprintln(cli, line); err != nil {
			t.Fatal(err)
		}
		if !sc.Scan() {
			t.Fatalf("no answer to %s: %v", line, sc.Err())
		}
		var m serverMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := say(`{"op":"hello","proto":1,"pid":1}`); m.Type != "hello" {
		t.Fatalf("hello: %+v", m)
	}
	if m := say(`{"op":"list","id":1}`); m.Type != "pending" {
		t.Errorf("list: %+v", m)
	}
	if m := say(`{"op":"watch","id":2}`); m.Type != "error" || m.Code != codeRefused || m.ID != 2 {
		t.Errorf("watch: %+v, want refused", m)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if v := q.Ask(ctx, Request{Method: "DELETE", URL: "https://h.example/x", Rule: "r"}); v.How != "headless" {
		t.Errorf("verdict %+v, want a headless deny", v)
	}
	if m := say(`{"op":"decide","id":3,"request":"1","choice":"session"}`); m.Type != "error" || m.Code != codeRefused || m.Error != msgNoPID {
		t.Errorf("decide: %+v, want refused with %q", m, msgNoPID)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 2 || refused[0].PID != 0 {
		t.Errorf("refusals %+v, want the watch and the decide", refused)
	}
}
