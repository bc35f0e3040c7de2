package proxy

import (
	"bytes"
	"net/http"
	"strings"
)

// foreignFor is the upstreams whose placeholders must not go to, where
// to is nil for a host no upstream claims.
func (p *Proxy) foreignFor(to *route) []*route {
	if to != nil {
		return to.foreign
	}
	return p.foreign
}

// placeholderIn returns the name of an upstream whose placeholder the
// request's URL or headers carry although it goes elsewhere (to is nil for
// a host no upstream claims).
func (p *Proxy) placeholderIn(req *http.Request, to *route) string {
	foreign := p.foreignFor(to)
	if len(foreign) == 0 {
		return ""
	}
	url := req.URL.String()
	for _, r := range foreign {
		if strings.Contains(url, r.Placeholder) || headersHold(req.Header, r.Placeholder) {
			return r.Name
		}
	}
	return ""
}

// placeholderInBody is placeholderIn for the part of the body read.
func (p *Proxy) placeholderInBody(body []byte, to *route) string {
	for _, r := range p.foreignFor(to) {
		if bytes.Contains(body, []byte(r.Placeholder)) {
			return r.Name
		}
	}
	return ""
}

// headersHold reports whether any header value contains s.
func headersHold(h http.Header, s string) bool {
	for _, vals := range h {
		for _, v := range vals {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}
