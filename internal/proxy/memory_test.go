package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/mask"
)

// TestJSONResponsesShareOneBudget sends 40 concurrent 7 MiB JSON responses
// through a proxy whose mask.memory is 32 MiB (1 MiB and 8 MiB under the
// race detector). Each document must be held
// whole to mask its json_fields, so what does not fit in time is refused
// (502 response-uninspectable), never passed unmasked, and the heap stays
// bounded by the budget instead of growing with the number of responses
// (about 600 MiB before the budget was shared).
func TestJSONResponsesShareOneBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 280 MiB")
	}
	budget, size := int64(32<<20), 7<<20
	if raceEnabled {
		// The race detector slows masking tenfold: the same shape, scaled.
		budget, size = 8<<20, 1<<20
	}
	doc := []byte(`{"password":"hunter2-top-secret","data":"` + strings.Repeat("x", size) + `"}`)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	u := openaiUpstream(up)
	u.ResponseMask = mask.Config{JSONFields: []string{"password"}}
	h := start(t, Config{Upstreams: []Upstream{u}, BodyMemory: budget})
	client := *h.client
	client.Timeout = time.Minute

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()

	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", "https://openai.example.com/v1/big", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				// Check the field was masked without holding the body.
				var head [64]byte
				n, _ := io.ReadFull(resp.Body, head[:])
				rest, _ := io.Copy(io.Discard, resp.Body)
				if !bytes.HasPrefix(head[:n], []byte(`{"password":"[MASKED:json_field]"`)) || int(rest)+n < len(doc)-20 {
					t.Errorf("200 with %q... (%d bytes)", head[:n], int(rest)+n)
				}
				ok.Add(1)
			case resp.StatusCode == http.StatusBadGateway && resp.Header.Get("X-Crewgate-Error") == "response-uninspectable":
				var r refusalBody
				if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || !strings.Contains(r.Error.Message, "mask.memory") {
					t.Errorf("refusal %+v (%v)", r, err)
				}
				refused.Add(1)
			default:
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("status %d: %.200s", resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("%d masked, %d refused; heap grew by %d MiB at most (budget %d MiB)", ok.Load(), refused.Load(), grew>>20, budget>>20)
	if ok.Load() == 0 {
		t.Error("no response fitted the budget")
	}
	// The budget, the garbage the collector has not reclaimed yet and
	// forty connections' buffers.
	if grew > 3*budget+16<<20 {
		t.Errorf("heap grew by %d MiB with a budget of %d MiB", grew>>20, budget>>20)
	}
}

// TestRequestPrefixesShareTheBudget: the first MiB of a request body, read
// for the log and the placeholder check, is held against mask.memory until
// its exchange ends; a request that finds no room is refused, and the room
// comes back when the exchanges end.
func TestRequestPrefixesShareTheBudget(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	})
	crm := openaiUpstream(up)
	crm.Name, crm.Hosts, crm.Placeholder = "crm", []string{"crm.example.com"}, "crewgate-placeholder-crm-0123456789"
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up), crm}, BodyMemory: 5 << 19}) // 2.5 MiB
	post := func(path string) *http.Response {
		req, _ := http.NewRequest("POST", "https://openai.example.com"+path, bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20)))
		req.Header.Set("Authorization", "Bearer "+placeholder)
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if resp := post("/slow"); resp.StatusCode != 200 {
				t.Errorf("slow: %d", resp.StatusCode)
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // both are held at the upstream
	if resp := post("/fast"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Crewgate-Error") != "body-uninspectable" {
		t.Errorf("third body: %d %s, want 403 body-uninspectable", resp.StatusCode, resp.Header.Get("X-Crewgate-Error"))
	}
	close(release)
	wg.Wait()
	if resp := post("/fast"); resp.StatusCode != 200 {
		t.Errorf("after the exchanges ended: %d", resp.StatusCode)
	}
}
