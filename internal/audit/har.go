package audit

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/). Fields that
// start with an underscore are custom, as the spec allows.

type harFile struct {
	Log harLog `json:"log"`
}

type harLog struct {
	Version  string      `json:"version"`
	Creator  harCreator  `json:"creator"`
	Entries  []harEntry  `json:"entries"`
	Comment  string      `json:"comment,omitempty"`
	Crewgate *harSession `json:"_crewgate,omitempty"`
}

type harCreator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type harEntry struct {
	StartedDateTime string       `json:"startedDateTime"`
	Time            float64      `json:"time"`
	Request         harRequest   `json:"request"`
	Response        harResponse  `json:"response"`
	Cache           struct{}     `json:"cache"`
	Timings         harTimings   `json:"timings"`
	Comment         string       `json:"comment,omitempty"`
	Crewgate        *harDecision `json:"_crewgate,omitempty"`
}

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harRequest struct {
	Method      string       `json:"method"`
	URL         string       `json:"url"`
	HTTPVersion string       `json:"httpVersion"`
	Cookies     []harNV      `json:"cookies"`
	Headers     []harNV      `json:"headers"`
	QueryString []harNV      `json:"queryString"`
	PostData    *harPostData `json:"postData,omitempty"`
	HeadersSize int          `json:"headersSize"`
	BodySize    int64        `json:"bodySize"`
}

type harPostData struct {
	MimeType string  `json:"mimeType"`
	Params   []harNV `json:"params"`
	Text     string  `json:"text"`
	Comment  string  `json:"comment,omitempty"`
}

type harResponse struct {
	Status      int        `json:"status"`
	StatusText  string     `json:"statusText"`
	HTTPVersion string     `json:"httpVersion"`
	Cookies     []harNV    `json:"cookies"`
	Headers     []harNV    `json:"headers"`
	Content     harContent `json:"content"`
	RedirectURL string     `json:"redirectURL"`
	HeadersSize int        `json:"headersSize"`
	BodySize    int64      `json:"bodySize"`
}

type harContent struct {
	Size     int64  `json:"size"`
	MimeType string `json:"mimeType"`
	Text     string `json:"text,omitempty"`
	Comment  string `json:"comment,omitempty"`
}

type harTimings struct {
	Blocked float64 `json:"blocked"`
	DNS     float64 `json:"dns"`
	Connect float64 `json:"connect"`
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
	SSL     float64 `json:"ssl"`
}

// harDecision is what crewgate did with one request.
type harDecision struct {
	ID          string         `json:"id"`
	Upstream    string         `json:"upstream,omitempty"`
	Route       string         `json:"route,omitempty"`
	Rule        string         `json:"rule,omitempty"`
	Decision    string         `json:"decision"`
	Reason      string         `json:"reason,omitempty"`
	Refusal     string         `json:"refusal,omitempty"`
	Approval    *Approval      `json:"approval,omitempty"`
	Leak        *Leak          `json:"leak,omitempty"`
	Masked      map[string]int `json:"masked,omitempty"`
	Scanned     *bool          `json:"scanned,omitempty"`
	Form        string         `json:"form,omitempty"`
	Streamed    bool           `json:"streamed,omitempty"`
	RequestSHA  string         `json:"request_body_sha256,omitempty"`
	ResponseSHA string         `json:"response_body_sha256,omitempty"`
	Error       string         `json:"error,omitempty"`
	NoResponse  bool           `json:"no_response,omitempty"`
}

// harSession describes the session the HAR comes from.
type harSession struct {
	Session  string   `json:"session"`
	Identity Identity `json:"identity"`
	Command  []string `json:"command"`
	Started  string   `json:"started"`
	Ended    string   `json:"ended,omitempty"`
	ExitCode *int     `json:"exit_code,omitempty"`
	Totals   *Totals  `json:"totals,omitempty"`
	Tunnels  []Tunnel `json:"tunnels,omitempty"`
	Abrupt   bool     `json:"abrupt,omitempty"`
}

// ExportHAR writes the session log at path as HAR 1.2 to w: one entry per
// request with its response, bodies as recorded (masked previews; the
// comment says when one is cut short), crewgate's decisions under
// "_crewgate" in each entry, and the session itself under the log's
// "_crewgate".
func ExportHAR(path string, w io.Writer) error {
	lg, err := Read(path)
	if err != nil {
		return err
	}
	return WriteHAR(w, lg, "")
}

// WriteHAR writes lg as HAR 1.2; version names crewgate in the creator
// (empty: the version recorded in the session).
func WriteHAR(w io.Writer, lg *Log, version string) error {
	st := lg.Start()
	if version == "" {
		version = st.Version
	}
	if version == "" {
		version = "unknown"
	}
	sess := &harSession{
		Session:  lg.Events[0].Session,
		Identity: st.Identity,
		Command:  st.Command,
		Started:  harTime(lg.Events[0].Time),
		Abrupt:   lg.Abrupt,
	}
	out := harFile{Log: harLog{Version: "1.2", Creator: harCreator{Name: "crewgate", Version: version}, Entries: []harEntry{}, Crewgate: sess}}
	byID := map[string]int{}
	for _, e := range lg.Events {
		switch {
		case e.Request != nil:
			byID[e.ID] = len(out.Log.Entries)
			out.Log.Entries = append(out.Log.Entries, harFromRequest(e))
		case e.Approval != nil:
			if i, ok := byID[e.ID]; ok {
				ent := &out.Log.Entries[i]
				a := *e.Approval
				ent.Crewgate.Approval = &a
				ent.Timings.Blocked = float64(a.WaitedMS)
				ent.Time += float64(a.WaitedMS)
			}
		case e.Response != nil:
			if i, ok := byID[e.ID]; ok {
				harAddResponse(&out.Log.Entries[i], e.Response)
			}
		case e.Leak != nil:
			if i, ok := byID[e.ID]; ok {
				l := *e.Leak
				out.Log.Entries[i].Crewgate.Leak = &l
			}
		case e.Tunnel != nil:
			sess.Tunnels = append(sess.Tunnels, *e.Tunnel)
		case e.End != nil:
			sess.Ended = harTime(e.Time)
			code, t := e.End.ExitCode, e.End.Totals
			sess.ExitCode, sess.Totals = &code, &t
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func harFromRequest(e Event) harEntry {
	r := e.Request
	ent := harEntry{
		StartedDateTime: harTime(e.Time),
		Request: harRequest{
			Method: r.Method, URL: r.URL, HTTPVersion: "HTTP/1.1",
			Cookies: []harNV{}, Headers: harHeaders(r.Headers), QueryString: []harNV{},
			HeadersSize: -1,
		},
		Response: harResponse{
			StatusText: "", HTTPVersion: "HTTP/1.1", Cookies: []harNV{}, Headers: []harNV{},
			Content: harContent{MimeType: "x-unknown"}, HeadersSize: -1, BodySize: -1,
		},
		Timings: harTimings{Blocked: -1, DNS: -1, Connect: -1, SSL: -1},
		Crewgate: &harDecision{
			ID: e.ID, Upstream: r.Upstream, Route: string(r.Route), Rule: r.Rule, Decision: string(r.Decision),
			Reason: r.Reason, Refusal: r.Refusal, NoResponse: true,
		},
	}
	if u, err := url.Parse(r.URL); err == nil {
		keys := make([]string, 0)
		q := u.Query()
		for k := range q {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			for _, v := range q[k] {
				ent.Request.QueryString = append(ent.Request.QueryString, harNV{k, v})
			}
		}
	}
	if b := r.Body; b != nil {
		ent.Request.BodySize = b.Size
		ent.Crewgate.RequestSHA = b.SHA256
		pd := &harPostData{MimeType: r.Headers.Get("Content-Type"), Params: []harNV{}, Text: b.Preview}
		pd.Comment = bodyComment(b)
		ent.Request.PostData = pd
	}
	return ent
}

func harAddResponse(ent *harEntry, r *Response) {
	ent.Crewgate.NoResponse = false
	ent.Response.Status = r.Status
	ent.Response.StatusText = http.StatusText(r.Status)
	ent.Response.Headers = harHeaders(r.Headers)
	ent.Response.BodySize = r.Bytes
	ent.Response.Content = harContent{Size: r.Bytes, MimeType: r.Headers.Get("Content-Type")}
	if ent.Response.Content.MimeType == "" {
		ent.Response.Content.MimeType = "x-unknown"
	}
	if loc := r.Headers.Get("Location"); loc != "" {
		ent.Response.RedirectURL = loc
	}
	if b := r.Body; b != nil {
		ent.Response.Content.Text = b.Preview
		ent.Response.Content.Comment = bodyComment(b)
		ent.Crewgate.ResponseSHA = b.SHA256
	}
	ent.Time += float64(r.DurationMS)
	ent.Timings.Wait = float64(r.DurationMS)
	d := ent.Crewgate
	d.Masked, d.Form, d.Streamed, d.Error = r.Masked, r.Form, r.Streamed, r.Error
	scanned := r.Scanned
	d.Scanned = &scanned
}

func bodyComment(b *Body) string {
	switch {
	case b.Binary:
		return "binary body: no preview recorded"
	case b.Truncated:
		return "masked preview of the first bytes only, as recorded by crewgate"
	}
	return ""
}

func harHeaders(h http.Header) []harNV {
	out := []harNV{}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range h[k] {
			out = append(out, harNV{k, v})
		}
	}
	return out
}

func harTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
