package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The HAR 1.2 schema, written from the spec independently of har.go: every
// field the spec defines, with custom fields allowed only where they start
// with an underscore (here: _crewgate).
type harSchema struct {
	Log struct {
		Version string `json:"version"`
		Creator struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Comment string `json:"comment"`
		} `json:"creator"`
		Browser  json.RawMessage  `json:"browser"`
		Pages    json.RawMessage  `json:"pages"`
		Entries  []harSchemaEntry `json:"entries"`
		Comment  string           `json:"comment"`
		Crewgate json.RawMessage  `json:"_crewgate"`
	} `json:"log"`
}

type harSchemaNV struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Comment string `json:"comment"`
}

type harSchemaEntry struct {
	Pageref         string  `json:"pageref"`
	StartedDateTime string  `json:"startedDateTime"`
	Time            float64 `json:"time"`
	Request         struct {
		Method      string        `json:"method"`
		URL         string        `json:"url"`
		HTTPVersion string        `json:"httpVersion"`
		Cookies     []harSchemaNV `json:"cookies"`
		Headers     []harSchemaNV `json:"headers"`
		QueryString []harSchemaNV `json:"queryString"`
		PostData    *struct {
			MimeType string        `json:"mimeType"`
			Params   []harSchemaNV `json:"params"`
			Text     string        `json:"text"`
			Comment  string        `json:"comment"`
		} `json:"postData"`
		HeadersSize int    `json:"headersSize"`
		BodySize    int64  `json:"bodySize"`
		Comment     string `json:"comment"`
	} `json:"request"`
	Response struct {
		Status      int           `json:"status"`
		StatusText  string        `json:"statusText"`
		HTTPVersion string        `json:"httpVersion"`
		Cookies     []harSchemaNV `json:"cookies"`
		Headers     []harSchemaNV `json:"headers"`
		Content     struct {
			Size        int64  `json:"size"`
			Compression int64  `json:"compression"`
			MimeType    string `json:"mimeType"`
			Text        string `json:"text"`
			Encoding    string `json:"encoding"`
			Comment     string `json:"comment"`
		} `json:"content"`
		RedirectURL string `json:"redirectURL"`
		HeadersSize int    `json:"headersSize"`
		BodySize    int64  `json:"bodySize"`
		Comment     string `json:"comment"`
	} `json:"response"`
	Cache   map[string]json.RawMessage `json:"cache"`
	Timings struct {
		Blocked float64 `json:"blocked"`
		DNS     float64 `json:"dns"`
		Connect float64 `json:"connect"`
		Send    float64 `json:"send"`
		Wait    float64 `json:"wait"`
		Receive float64 `json:"receive"`
		SSL     float64 `json:"ssl"`
		Comment string  `json:"comment"`
	} `json:"timings"`
	ServerIPAddress string          `json:"serverIPAddress"`
	Connection      string          `json:"connection"`
	Comment         string          `json:"comment"`
	Crewgate        json.RawMessage `json:"_crewgate"`
}

// harRequired lists the keys HAR 1.2 requires in each object.
var harRequired = map[string][]string{
	"log":      {"version", "creator", "entries"},
	"creator":  {"name", "version"},
	"entry":    {"startedDateTime", "time", "request", "response", "cache", "timings"},
	"request":  {"method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"},
	"response": {"status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL", "headersSize", "bodySize"},
	"content":  {"size", "mimeType"},
	"timings":  {"send", "wait", "receive"},
	"postData": {"mimeType"},
	"nv":       {"name", "value"},
}

func validateHAR(t *testing.T, data []byte) harSchema {
	t.Helper()
	var h harSchema
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		t.Fatalf("not HAR 1.2: %v", err)
	}
	var raw map[string]any
	json.Unmarshal(data, &raw)
	need := func(obj any, kind, where string) map[string]any {
		m, ok := obj.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object", where)
		}
		for _, k := range harRequired[kind] {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: required %q missing", where, k)
			}
		}
		return m
	}
	nvs := func(v any, where string) {
		list, ok := v.([]any)
		if !ok {
			t.Errorf("%s: not an array", where)
		}
		for _, nv := range list {
			need(nv, "nv", where)
		}
	}
	lg := need(raw["log"], "log", "log")
	need(lg["creator"], "creator", "log.creator")
	entries, _ := lg["entries"].([]any)
	for i, e := range entries {
		where := "log.entries[" + string(rune('0'+i)) + "]"
		em := need(e, "entry", where)
		req := need(em["request"], "request", where+".request")
		for _, k := range []string{"cookies", "headers", "queryString"} {
			nvs(req[k], where+".request."+k)
		}
		if pd, ok := req["postData"]; ok {
			need(pd, "postData", where+".request.postData")
		}
		resp := need(em["response"], "response", where+".response")
		nvs(resp["cookies"], where+".response.cookies")
		nvs(resp["headers"], where+".response.headers")
		need(resp["content"], "content", where+".response.content")
		need(em["timings"], "timings", where+".timings")
	}
	if h.Log.Version != "1.2" || h.Log.Creator.Name != "crewgate" {
		t.Errorf("log version %q creator %q", h.Log.Version, h.Log.Creator.Name)
	}
	for i, e := range h.Log.Entries {
		if _, err := time.Parse(time.RFC3339Nano, e.StartedDateTime); err != nil {
			t.Errorf("entry %d: startedDateTime %q: %v", i, e.StartedDateTime, err)
		}
		tm := e.Timings
		if tm.Send < 0 || tm.Wait < 0 || tm.Receive < 0 {
			t.Errorf("entry %d: send, wait and receive must not be negative: %+v", i, tm)
		}
		sum := tm.Send + tm.Wait + tm.Receive
		for _, opt := range []float64{tm.Blocked, tm.DNS, tm.Connect} {
			if opt > 0 {
				sum += opt
			}
		}
		if sum != e.Time {
			t.Errorf("entry %d: time %v is not the sum of its timings %v", i, e.Time, sum)
		}
	}
	return h
}

func TestHARCarriesDecisionsAndMaskedBodies(t *testing.T) {
	var buf bytes.Buffer
	if err := ExportHAR(writeSample(t, t.TempDir(), "s1"), &buf); err != nil {
		t.Fatal(err)
	}
	h := validateHAR(t, buf.Bytes())
	if n := len(h.Log.Entries); n != 4 {
		t.Fatalf("%d entries, want 4 (one per request)", n)
	}
	if strings.Contains(buf.String(), "sk-real-secret") {
		t.Error("the HAR holds a credential")
	}
	e := h.Log.Entries[0]
	if e.Response.Status != 200 || !strings.Contains(e.Response.Content.Text, "[MASKED:email]") || len(e.Request.QueryString) != 2 {
		t.Errorf("entry 0: %+v", e)
	}
	var d struct {
		Decision string
		Rule     string
		Approval *Approval
		Masked   map[string]int
		Leak     *Leak
	}
	json.Unmarshal(h.Log.Entries[1].Crewgate, &d)
	if d.Decision != "approve" || d.Rule != "confirm-deletes" || d.Approval == nil || d.Approval.By != "alice" || h.Log.Entries[1].Timings.Blocked != 3200 {
		t.Errorf("entry 1 _crewgate: %s", h.Log.Entries[1].Crewgate)
	}
	d = struct {
		Decision string
		Rule     string
		Approval *Approval
		Masked   map[string]int
		Leak     *Leak
	}{}
	json.Unmarshal(h.Log.Entries[3].Crewgate, &d)
	if d.Decision != "deny" || d.Leak == nil || d.Leak.Upstream != "openai" {
		t.Errorf("entry 3 _crewgate: %s", h.Log.Entries[3].Crewgate)
	}
}
