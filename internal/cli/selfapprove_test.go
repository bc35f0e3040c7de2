package cli_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests play a prompt-injected crew that tries to approve its own
// requests: it has crewgate's uid, CREWGATE_SESSION and XDG_RUNTIME_DIR, so
// it can reach the control socket. Only a human outside the crew may answer
// (DESIGN.md invariant 6).

const selfApproveRules = `rules:
  - name: confirm-deletes
    action: approve
    reason: deletes data
    match: {methods: [DELETE]}
`

// crewBinVar tells the crew where the crewgate binary is; not a CREWGATE_*
// name, which the crew's environment would lose.
const crewBinVar = "SELFAPPROVE_CREWGATE"

// selfApproveSandbox is a sandbox for a crew that needs approvals, with a
// short private XDG_RUNTIME_DIR of its own (socket paths are short).
func selfApproveSandbox(t *testing.T) (*sandbox, *standIn, string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl missing; run scripts/test.sh")
	}
	requirePython(t, "json")
	api := newStandIn(t)
	s := runSandbox(t, api, selfApproveRules)
	runDir, err := os.MkdirTemp("", "cg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	s.env = append(s.env, "XDG_RUNTIME_DIR="+runDir, crewBinVar+"="+crewgateBin)
	return s, api, runDir
}

// crewDelete is the crew's request that needs approval, in Python: it prints
// the status, the refusal's code and how long the answer took.
const crewDelete = `
import json, os, subprocess, time
def delete(path):
    start = time.time()
    r = subprocess.run(["curl", "-sS", "-X", "DELETE", "https://api.example.com" + path,
                        "-H", "Authorization: Bearer " + os.environ["OPENAI_API_KEY"],
                        "-w", "\n%{http_code}"], capture_output=True, text=True)
    body, _, status = r.stdout.rpartition("\n")
    code = ""
    try:
        code = json.loads(body)["error"]["code"]
    except Exception:
        pass
    print("delete %s: %s %s %.1fs" % (path, status, code, time.time() - start), flush=True)

def self_approve(say=False):
    """Run crewgate approve as the crew would and allow every request it
    lists for the session; the caller waits for it."""
    import threading
    approve = subprocess.Popen([os.environ["` + crewBinVar + `"], "approve", os.environ["CREWGATE_SESSION"]],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def answer():
        for line in approve.stdout:
            f = line.split()
            if len(f) >= 2 and f[0] == "request":
                if say:
                    print("crew approve saw", f[1], flush=True)
                approve.stdin.write("s " + f[1] + "\n")
                approve.stdin.flush()
    threading.Thread(target=answer, daemon=True).start()
    return approve
`

// deletesWereRefused checks the stand-in never saw a DELETE.
func deletesWereRefused(t *testing.T, api *standIn, wantRequests int) {
	t.Helper()
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.auths) != wantRequests {
		t.Errorf("the stand-in got %d requests, want %d", len(api.auths), wantRequests)
	}
}

// TestSelfApproveThroughTheSocket: the crew opens the control socket itself
// and sends hello, watch and a decide for every request it sees, while its
// DELETE waits for approval. crewgate is headless, so the DELETE must be
// denied at once (approval-unavailable), the crew must hear nothing but the
// refusal, and crewgate warns about the attempt.
func TestSelfApproveThroughTheSocket(t *testing.T) {
	s, api, _ := selfApproveSandbox(t)
	crew := filepath.Join(s.home, "crew.py")
	os.WriteFile(crew, []byte(crewDelete+`
import socket, threading
path = os.path.join(os.environ["XDG_RUNTIME_DIR"], "crewgate", os.environ["CREWGATE_SESSION"] + ".sock")
sock = socket.socket(socket.AF_UNIX)
sock.connect(path)
def send(m):
    try:
        sock.sendall((json.dumps(m) + "\n").encode())
    except OSError as e:
        print("send failed:", type(e).__name__, flush=True)
def listen():
    try:
        for line in sock.makefile("r"):
            print("socket:", line.strip(), flush=True)
            m = json.loads(line)
            for r in m.get("pending") or []:
                send({"op": "decide", "id": 9, "request": r["id"], "choice": "session"})
    except OSError as e:
        print("socket error:", type(e).__name__, flush=True)
    print("socket closed", flush=True)
reader = threading.Thread(target=listen, daemon=True)
reader.start()
send({"op": "hello", "proto": 1, "pid": 1})
send({"op": "watch", "id": 1})
send({"op": "list", "id": 2})
time.sleep(0.5)
delete("/v1/records/42")
reader.join(5)
`), 0o600)

	r := s.run("", "run", "--", "/usr/bin/python3", crew)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	var socketLines []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "socket: ") {
			socketLines = append(socketLines, l)
		}
	}
	if len(socketLines) != 1 || !strings.Contains(socketLines[0], `"type":"error"`) ||
		!strings.Contains(socketLines[0], "permission denied: the crew cannot answer its own approval prompts") ||
		!strings.Contains(r.stdout, "socket closed") {
		t.Errorf("the crew heard more than the refusal:\n%s", r.stdout)
	}
	m := regexp.MustCompile(`delete /v1/records/42: 403 approval-unavailable ([\d.]+)s`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the DELETE was not refused as approval-unavailable:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if d, _ := time.ParseDuration(m[1] + "s"); d > 5*time.Second {
		t.Errorf("the headless deny took %s: the crew's watch made it wait", d)
	}
	if !strings.Contains(r.stderr, "refused a control socket client") || !strings.Contains(r.stderr, "runs inside the crew") {
		t.Errorf("crewgate did not warn about the crew's attempt:\n%s", r.stderr)
	}
	deletesWereRefused(t, api, 0)
}

// TestSelfApproveWithCrewgateApprove: the crew runs 'crewgate approve'
// itself and answers "allow for the session" to whatever it is shown, then
// makes its DELETE. The crew's approve must fail with the permission message
// and the DELETE be denied at once. Then, as the control, a 'crewgate
// approve' started outside the crew (a sibling of 'crewgate run') answers
// the crew's next DELETE, and the log names it as the approver.
func TestSelfApproveWithCrewgateApprove(t *testing.T) {
	s, api, _ := selfApproveSandbox(t)
	goFile := filepath.Join(s.home, "go")
	crew := filepath.Join(s.home, "crew.py")
	os.WriteFile(crew, []byte(crewDelete+`
import sys
approve = self_approve(say=True)
time.sleep(0.5)
delete("/v1/records/42")
try:
    code = approve.wait(5)
except subprocess.TimeoutExpired:
    approve.kill()
    code = "still running"
print("crew approve exit:", code, "stderr:", approve.stderr.read().replace("\n", " | "), flush=True)
print("attacks done", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
delete("/v1/records/43")
`), 0o600)

	run := exec.Command(crewgateBin, "run", "--no-tui", "--", "/usr/bin/python3", crew, goFile)
	run.Env = s.env
	var runErr strings.Builder
	run.Stderr = &runErr
	out, _ := run.StdoutPipe()
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	var crewOut strings.Builder
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		crewOut.WriteString(lines.Text() + "\n")
		if lines.Text() == "attacks done" {
			break
		}
	}
	got := crewOut.String()
	if !regexp.MustCompile(`delete /v1/records/42: 403 approval-unavailable [0-4]\.\ds`).MatchString(got) {
		t.Errorf("the crew's DELETE was not denied at once as approval-unavailable:\n%s\nstderr:\n%s", got, runErr.String())
	}
	if strings.Contains(got, "crew approve saw") ||
		!strings.Contains(got, "crew approve exit: 1 stderr: crewgate: approve: session ") ||
		!strings.Contains(got, "permission denied: the crew cannot answer its own approval prompts; run `crewgate approve` from a terminal outside the crew") {
		t.Errorf("the crew's own 'crewgate approve' was not refused:\n%s", got)
	}

	// The control: the user's own approve, outside the crew, still answers.
	approve := exec.Command(crewgateBin, "approve")
	approve.Env = s.env
	in, _ := approve.StdinPipe()
	aout, _ := approve.StdoutPipe()
	aerr, _ := approve.StderrPipe()
	if err := approve.Start(); err != nil {
		t.Fatal(err)
	}
	defer approve.Process.Kill()
	go func() {
		sc := bufio.NewScanner(aerr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Watching session") {
				os.WriteFile(goFile, nil, 0o600) // attached: let the crew go on
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(aout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 4 && f[0] == "request" && strings.HasSuffix(f[3], "/v1/records/43") {
				io.WriteString(in, "a "+f[1]+"\n")
			}
		}
	}()
	for lines.Scan() {
		crewOut.WriteString(lines.Text() + "\n")
	}
	if err := run.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, runErr.String())
	}
	approve.Wait()
	if !strings.Contains(crewOut.String(), "delete /v1/records/43: 200 ") {
		t.Errorf("the approve outside the crew could not answer:\n%s\nstderr:\n%s", crewOut.String(), runErr.String())
	}
	if !strings.Contains(runErr.String(), "refused a control socket client") {
		t.Errorf("crewgate did not warn about the crew's approve:\n%s", runErr.String())
	}
	deletesWereRefused(t, api, 1)
	logs, _ := filepath.Glob(filepath.Join(s.home, ".local", "state", "crewgate", "sessions", "*.jsonl"))
	if len(logs) != 1 {
		t.Fatalf("logs: %v", logs)
	}
	b, _ := os.ReadFile(logs[0])
	if want := regexp.MustCompile(`"by":"approve:[^"]+ pid ` + strconv.Itoa(approve.Process.Pid) + `"`); !want.Match(b) ||
		!strings.Contains(string(b), `"how":"once"`) || !strings.Contains(string(b), `"how":"headless"`) {
		t.Errorf("the log does not show the headless deny and who allowed the second DELETE (pid %d):\n%s", approve.Process.Pid, b)
	}
}

// TestSelfApproveInARealTerminal: crewgate runs on a terminal (tmux) with its
// prompt, so the crew's DELETE waits for the human. The crew runs 'crewgate
// approve' itself to answer it first; that must fail, the prompt must say
// what "allow for the session" covers, and only the human's key decides.
// Then a 'crewgate approve' in another tmux window (outside crewgate's tree,
// like any terminal of the user's) answers the crew's next DELETE.
func TestSelfApproveInARealTerminal(t *testing.T) {
	s, api, _ := selfApproveSandbox(t)
	goFile := filepath.Join(s.home, "go")
	crew := filepath.Join(s.home, "crew.py")
	os.WriteFile(crew, []byte(crewDelete+`
import sys, threading
first = threading.Thread(target=delete, args=("/v1/records/42",))
first.start()
time.sleep(0.5)
approve = self_approve()
try:
    code = approve.wait(5)
except subprocess.TimeoutExpired:
    code = "still running"
print("crew approve exit:", code, flush=True)
print("crew approve said:", approve.stderr.readline().strip() if code != "still running" else "", flush=True)
first.join()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
delete("/v1/records/43")
`), 0o600)
	term := newTerminal(t, s.env, crewgateBin, "run", "--", "/usr/bin/python3", crew, goFile)

	// The crew's output is held while the prompt is up; crewgate's warning
	// about the crew's approve shows above it, the prompt stays.
	term.waitFor(`approvals: refused a control socket client.*reason="runs inside the crew"`)
	term.waitFor(`approve this request\?[\s\S]*DELETE https://api\.example\.com/v1/records/42[\s\S]*` +
		regexp.QuoteMeta("s allow DELETE api.example.com:443/v1/records/42 for the session (rule confirm-deletes)"))
	time.Sleep(700 * time.Millisecond) // a new prompt ignores keys for a moment
	term.tmux("send-keys", "d")
	term.waitFor(`crew approve exit: 1`)
	term.waitFor(`crew approve said: crewgate: approve: session \S+: permission denied: the crew cannot answer its own approval prompts`)
	term.waitFor(`delete /v1/records/42: 403 approval-denied`)

	// The user's own approve, in a window of the same tmux server.
	line := append([]string{"env", "-i"}, s.env...)
	line = append(line, "TERM=xterm-256color", "NO_COLOR=1", crewgateBin, "approve")
	term.tmux("new-window", "-d", strings.Join(quoteAll(line), " ")+"; echo APPROVE-EXIT=$?; sleep 60")
	approveScreen := func() string { return term.tmux("capture-pane", "-p", "-t", ":1") }
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(approveScreen(), "waiting for requests"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the outside approve did not attach:\n%s", approveScreen())
		}
	}
	os.WriteFile(goFile, nil, 0o600)
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(approveScreen(), "DELETE https://api.example.com/v1/records/43"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the outside approve never showed the second DELETE:\n%s", approveScreen())
		}
	}
	if sc := approveScreen(); !strings.Contains(sc, "[s] allow DELETE api.example.com:443/v1/records/43 for the session (rule confirm-deletes)") {
		t.Errorf("the approve prompt does not say what s covers:\n%s", sc)
	}
	term.tmux("send-keys", "-t", ":1", "a")
	term.waitFor(`delete /v1/records/43: 200 `)
	term.waitFor(`EXIT=0`)
	deletesWereRefused(t, api, 1)
}
