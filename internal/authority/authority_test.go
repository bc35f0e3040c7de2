package authority

import "testing"

func TestParse(t *testing.T) {
	for _, c := range []struct{ in, def, want string }{
		{"API.Example.com.", HTTPS, "api.example.com:443"},
		{"api.example.com:0443", HTTPS, "api.example.com:443"},
		{"api.example.com", HTTP, "api.example.com:80"},
		{"[::1]:8080", HTTPS, "[::1]:8080"},
		{"[::1]", HTTPS, "[::1]:443"},
		{"127.0.0.1:9", HTTPS, "127.0.0.1:9"},
		{"[fe80::1%25lo]:443", HTTPS, "[fe80::1%25lo]:443"},
	} {
		a, err := Parse(c.in, c.def)
		if err != nil || a.String() != c.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", c.in, a, err, c.want)
		}
	}
	for _, bad := range []string{"", ":443", "a.test:0", "a.test:65536", "a.test:+443", "a.test:x", "a b.test", "a.test@b.test", "a.test/x", "a.test:443:1"} {
		if a, err := Parse(bad, HTTPS); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", bad, a)
		}
	}
}

func TestPattern(t *testing.T) {
	for _, c := range []struct {
		entry, host, port, def string
		match                  bool
	}{
		{"api.example.com", "api.example.com", "443", HTTPS, true},
		{"api.example.com", "api.example.com", "8443", HTTPS, false},
		{"api.example.com", "api.example.com", "80", HTTP, true},
		{"api.example.com", "api.example.com", "443", HTTP, false},
		{"api.example.com:8443", "api.example.com", "8443", HTTPS, true},
		{"api.example.com:8443", "api.example.com", "443", HTTPS, false},
		{"*.example.com", "a.b.example.com", "443", HTTPS, true},
		{"*.example.com", "example.com", "443", HTTPS, false},
		{"*.example.com", "badexample.com", "443", HTTPS, false},
		{"API.Example.com.", "api.example.com", "443", HTTPS, true},
	} {
		p, err := ParsePattern(c.entry)
		if err != nil {
			t.Fatalf("%s: %v", c.entry, err)
		}
		if got := p.Match(Authority{Host: c.host, Port: c.port}, c.def); got != c.match {
			t.Errorf("%s matches %s:%s (default %s) = %v", c.entry, c.host, c.port, c.def, got)
		}
	}
	for _, bad := range []string{"*.com", "*.co.uk", "*.github.io", "*.test", "1.2.3.4", "[::1]", "a.test:0", "a.test:http", "https://a.test", "a.test/x", "*", "*.", ""} {
		if p, err := ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) = %v, want an error", bad, p)
		}
	}
}
