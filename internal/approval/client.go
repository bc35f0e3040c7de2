package approval

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrSessionEnded is returned by Client calls once the session's control
// socket has closed.
var ErrSessionEnded = errors.New("the session ended")

// Client talks to a running session's control socket. Its methods are safe
// for concurrent use; one connection carries them all.
type Client struct {
	nc net.Conn
	wm sync.Mutex // serialises writes

	mu      sync.Mutex
	next    uint64
	calls   map[uint64]chan serverMsg
	watches map[uint64]*watch
	done    chan struct{} // closed when the connection is gone
	err     error         // why, once done is closed
}

// watch is one Watch on the client side.
type watch struct {
	ch    chan []Request
	ready chan error // the server's first answer: nil for a list; buffered
}

// Dial connects to the control socket at path. It refuses a socket in a
// directory that is not the user's own, or (where the platform tells) one
// served by another user. A session that refuses this client (it runs
// inside the crew) gives an error wrapping ErrRefused.
func Dial(path string) (*Client, error) {
	if err := checkDir(filepath.Dir(path), false); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	nc, err := net.DialTimeout("unix", path, helloTimeout)
	if err != nil {
		return nil, err
	}
	p, err := peerOf(nc)
	if err == nil {
		p.release()
	}
	if err != nil || p.known && p.uid != os.Getuid() {
		nc.Close()
		return nil, errors.New("the socket is not served by you")
	}
	c := &Client{
		nc:      nc,
		calls:   map[uint64]chan serverMsg{},
		watches: map[uint64]*watch{},
		done:    make(chan struct{}),
	}
	nc.SetDeadline(time.Now().Add(helloTimeout))
	// A session that refuses this client says so and closes without reading,
	// so a failed write still leaves its reason to read.
	werr := c.write(clientMsg{Op: "hello", Proto: protoVersion, PID: os.Getpid()})
	sc := bufio.NewScanner(nc)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var hello serverMsg
	if !sc.Scan() {
		nc.Close()
		switch {
		case werr != nil:
			return nil, werr
		case sc.Err() != nil:
			return nil, sc.Err()
		}
		return nil, ErrSessionEnded
	}
	if err := json.Unmarshal(sc.Bytes(), &hello); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bad answer from the session: %w", err)
	}
	if hello.Type != "hello" {
		nc.Close()
		if hello.Code == codeRefused {
			return nil, refusal(hello.Error)
		}
		return nil, fmt.Errorf("the session refused: %s", hello.Error)
	}
	nc.SetDeadline(time.Time{})
	go c.read(sc)
	return c, nil
}

// Close ends the connection; pending calls fail and watch channels close.
func (c *Client) Close() error {
	err := c.nc.Close()
	<-c.done
	return err
}

// Done is closed when the connection has ended: Close, or the session ended.
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) write(m clientMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.wm.Lock()
	defer c.wm.Unlock()
	_, err = c.nc.Write(append(b, '\n'))
	return err
}

// read dispatches the server's messages until the connection ends.
func (c *Client) read(sc *bufio.Scanner) {
	for sc.Scan() {
		var m serverMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		c.mu.Lock()
		if ch := c.calls[m.ID]; ch != nil {
			delete(c.calls, m.ID)
			ch <- m // buffered
		} else if w := c.watches[m.ID]; w != nil {
			switch m.Type {
			case "pending":
				if w.ready != nil {
					w.ready <- nil
					w.ready = nil
				}
				latest(w.ch, orEmpty(m.Pending))
			case "error":
				if w.ready != nil {
					w.ready <- serverError(m)
					w.ready = nil
				}
				delete(c.watches, m.ID)
				close(w.ch)
			}
		}
		c.mu.Unlock()
	}
	c.nc.Close()
	c.mu.Lock()
	c.err = ErrSessionEnded
	for id, w := range c.watches {
		close(w.ch)
		delete(c.watches, id)
	}
	close(c.done)
	c.mu.Unlock()
}

// latest puts v in ch (capacity 1), replacing a value nobody took yet: a
// slow reader skips to the newest list. Only the reader goroutine sends.
func latest(ch chan []Request, v []Request) {
	select {
	case ch <- v:
	default:
		select {
		case <-ch:
		default:
		}
		ch <- v
	}
}

func orEmpty(rs []Request) []Request {
	if rs == nil {
		return []Request{}
	}
	return rs
}

// call sends m with a fresh id and waits for the reply.
func (c *Client) call(ctx context.Context, m clientMsg) (serverMsg, error) {
	ch := make(chan serverMsg, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return serverMsg{}, c.err
	}
	c.next++
	m.ID = c.next
	c.calls[m.ID] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.calls, m.ID)
		c.mu.Unlock()
	}
	if err := c.write(m); err != nil {
		forget()
		return serverMsg{}, ErrSessionEnded
	}
	select {
	case r := <-ch:
		if r.Type == "error" {
			if r.Code == codeNotPending {
				return r, fmt.Errorf("request %q: %w", m.Request, ErrNotPending)
			}
			return r, serverError(r)
		}
		return r, nil
	case <-c.done:
		return serverMsg{}, ErrSessionEnded
	case <-ctx.Done():
		forget()
		return serverMsg{}, ctx.Err()
	}
}

// Pending returns the session's waiting requests, oldest first.
func (c *Client) Pending(ctx context.Context) ([]Request, error) {
	r, err := c.call(ctx, clientMsg{Op: "list"})
	if err != nil {
		return nil, err
	}
	return orEmpty(r.Pending), nil
}

// Decide answers the pending request id. Its error wraps ErrNotPending when
// the request is unknown or already decided, and ErrRefused when this
// client may not answer.
func (c *Client) Decide(ctx context.Context, id string, ch Choice) error {
	_, err := c.call(ctx, clientMsg{Op: "decide", Request: id, Choice: ch})
	return err
}

// Watch returns a channel that receives the pending list now and after
// every change (a slow reader gets the newest list, not every one). The
// channel closes when ctx ends or the session ends. While a watch lasts, a
// headless session waits for this client's decisions instead of denying at
// once. Watch returns once the session has answered: with the channel
// holding the first list, or with an error (wrapping ErrRefused when this
// client may not watch).
func (c *Client) Watch(ctx context.Context) (<-chan []Request, error) {
	w := &watch{ch: make(chan []Request, 1), ready: make(chan error, 1)}
	ready := w.ready
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.next++
	id := c.next
	c.watches[id] = w
	c.mu.Unlock()
	if err := c.write(clientMsg{Op: "watch", ID: id}); err != nil {
		c.stopWatch(id)
		return nil, ErrSessionEnded
	}
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-c.done:
		return nil, ErrSessionEnded
	case <-ctx.Done():
		if c.stopWatch(id) {
			c.write(clientMsg{Op: "unwatch", ID: id})
		}
		return nil, ctx.Err()
	}
	go func() {
		select {
		case <-ctx.Done():
			if c.stopWatch(id) {
				c.write(clientMsg{Op: "unwatch", ID: id})
			}
		case <-c.done:
		}
	}()
	return w.ch, nil
}

// stopWatch closes the watch's channel unless the reader already did.
func (c *Client) stopWatch(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches[id]
	if w == nil {
		return false
	}
	delete(c.watches, id)
	close(w.ch)
	return true
}

// serverError turns an error message from the server into an error.
func serverError(m serverMsg) error {
	switch m.Code {
	case codeRefused:
		return refusal(m.Error)
	case codeNotPending:
		return fmt.Errorf("%s: %w", m.Error, ErrNotPending)
	}
	return errors.New(m.Error)
}
