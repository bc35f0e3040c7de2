package approval_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/approval"
)

const crewRefusal = "permission denied: the crew cannot answer its own approval prompts; run `crewgate approve` from a terminal outside the crew"

// refusals records what OnRefusedPeer is told.
type refusals struct {
	mu  sync.Mutex
	got []approval.RefusedPeer
}

func (r *refusals) add(p approval.RefusedPeer) {
	r.mu.Lock()
	r.got = append(r.got, p)
	r.mu.Unlock()
}

func (r *refusals) list() []approval.RefusedPeer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]approval.RefusedPeer(nil), r.got...)
}

// crewServe serves q with an InCrew that places every client in the crew,
// and records the pids it was asked about and the refusals.
func crewServe(t *testing.T, q *approval.Queue, inCrew bool, err error) (string, *refusals, func() []int) {
	t.Helper()
	var mu sync.Mutex
	var asked []int
	rs := &refusals{}
	path, _ := serveWith(t, "s1", q, approval.ServeOptions{
		InCrew: func(pid int) (bool, error) {
			mu.Lock()
			asked = append(asked, pid)
			mu.Unlock()
			return inCrew, err
		},
		OnRefusedPeer: rs.add,
	})
	return path, rs, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), asked...)
	}
}

// attack plays a crew that ignores what the server says: it sends hello,
// watch and decide at once, then reads until the server closes.
func attack(t *testing.T, path, request string) []string {
	t.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, `{"op":"hello","proto":1,"pid":1}`+"\n"+`{"op":"watch","id":1}`+"\n"+`{"op":"decide","id":2,"request":%q,"choice":"session"}`+"\n"+`{"op":"list","id":3}`+"\n", request)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var lines []string
	sc := bufio.NewScanner(nc)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if errors.Is(sc.Err(), os.ErrDeadlineExceeded) {
		t.Errorf("the server kept the crew's connection open; it said %q", lines)
	}
	return lines
}

// TestCrewIsRefusedBeforeHello: a client inside the crew hears the refusal
// and nothing else: no hello, no list, its decide is not taken, and the
// session hears about it.
func TestCrewIsRefusedBeforeHello(t *testing.T) {
	runtimeDir(t)
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	path, rs, asked := crewServe(t, q, true, nil)
	ch := ask(t.Context(), q, req("7", "confirm", "crm.example.com"))
	waitPending(t, q, 1)

	lines := attack(t, path, "7")
	if len(lines) != 1 || !strings.Contains(lines[0], `"type":"error"`) || !strings.Contains(lines[0], `"code":"refused"`) ||
		!strings.Contains(lines[0], "the crew cannot answer its own approval prompts") {
		t.Errorf("the crew heard %q, want the refusal alone", lines)
	}
	notYet(t, ch)
	if p := q.Pending(); len(p) != 1 {
		t.Errorf("pending after the attack: %v", p)
	}

	_, err := approval.Dial(path)
	if !errors.Is(err, approval.ErrRefused) || err.Error() != crewRefusal {
		t.Errorf("Dial from the crew: %v, want ErrRefused saying %q", err, crewRefusal)
	}
	if got := asked(); len(got) == 0 || got[0] != os.Getpid() {
		t.Errorf("InCrew was asked about %v, want this process (%d) from SO_PEERCRED", got, os.Getpid())
	}
	if got := rs.list(); len(got) < 2 || got[0].PID != os.Getpid() || got[0].Reason != "runs inside the crew" {
		t.Errorf("OnRefusedPeer got %+v, want two refusals of pid %d that run inside the crew", got, os.Getpid())
	}
	q.Decide("7", approval.Deny, "terminal")
	if v := verdict(t, ch); v.Allow || v.How != "denied" || v.By != "terminal" {
		t.Errorf("verdict %+v, want the terminal's deny", v)
	}
}

// TestCrewWatchDoesNotMakeHeadlessWait: a watch is what turns a headless
// deny into a wait; the crew's watch must not.
func TestCrewWatchDoesNotMakeHeadlessWait(t *testing.T) {
	runtimeDir(t)
	q := approval.NewQueue(approval.Options{Headless: true})
	defer q.Close()
	path, _, _ := crewServe(t, q, true, nil)
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintln(nc, `{"op":"hello","proto":1}`)
	fmt.Fprintln(nc, `{"op":"watch","id":1}`)
	time.Sleep(100 * time.Millisecond) // time for a watch to attach, were it taken
	if v := askNow(t, q, req("", "confirm", "crm.example.com")); v.Allow || v.How != "headless" || v.By != "" {
		t.Errorf("headless with the crew watching: %+v, want a headless deny at once", v)
	}
}

// TestCannotPlaceClientIsRefused: when InCrew cannot tell, the client is
// refused as if it were the crew (fail closed), saying why.
func TestCannotPlaceClientIsRefused(t *testing.T) {
	runtimeDir(t)
	q := approval.NewQueue(approval.Options{Headless: true})
	defer q.Close()
	path, rs, _ := crewServe(t, q, false, errors.New("parent 12: gone"))
	_, err := approval.Dial(path)
	if !errors.Is(err, approval.ErrRefused) || !strings.Contains(err.Error(), "cannot tell whether this client runs inside the crew (parent 12: gone)") {
		t.Errorf("Dial: %v, want a refusal that cannot place the client", err)
	}
	got := rs.list()
	if len(got) == 0 {
		t.Error("OnRefusedPeer was not called")
	}
	for _, p := range got { // serveWith's probe, then Dial
		if p.PID != os.Getpid() || !strings.Contains(p.Reason, "cannot tell whether it runs inside the crew") {
			t.Errorf("OnRefusedPeer got %+v", p)
		}
	}
	if v := askNow(t, q, req("", "confirm", "crm.example.com")); v.How != "headless" {
		t.Errorf("verdict %+v, want a headless deny", v)
	}
}

// TestClientOutsideTheCrewAnswers: the control case of the tests above,
// with the verdict naming the client's pid as the kernel gave it, not as
// the client claimed it.
func TestClientOutsideTheCrewAnswers(t *testing.T) {
	runtimeDir(t)
	q := approval.NewQueue(approval.Options{Headless: true})
	defer q.Close()
	path, rs, asked := crewServe(t, q, false, nil)
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintln(nc, `{"op":"hello","proto":1,"pid":4242}`)
	fmt.Fprintln(nc, `{"op":"watch","id":1}`)
	r := bufio.NewScanner(nc)
	for i := 0; i < 2 && r.Scan(); i++ { // hello, then the first list: attached
	}
	ch := ask(t.Context(), q, req("", "confirm", "crm.example.com"))
	id := waitPending(t, q, 1)[0].ID
	fmt.Fprintf(nc, `{"op":"decide","id":2,"request":%q,"choice":"once"}`+"\n", id)
	v := verdict(t, ch)
	if want := fmt.Sprintf(" pid %d", os.Getpid()); !v.Allow || v.How != "once" || !strings.HasPrefix(v.By, "approve:") || !strings.HasSuffix(v.By, want) {
		t.Errorf("verdict %+v, want allowed once by approve:<user>@<host>%s", v, want)
	}
	if len(asked()) == 0 || len(rs.list()) != 0 {
		t.Errorf("InCrew asked %v, refusals %+v; want asked and none refused", asked(), rs.list())
	}
}
