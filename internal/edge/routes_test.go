package edge

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"api.example.com", true},
		{"a.b", true},
		{"xn--bcher-kva.example", true},
		{"a-b.c-d.example", true},
		{"", false},
		{"localhost", false},
		{"API.example.com", false},
		{"api.example.com.", false},
		{"*.example.com", false},
		{"192.0.2.1", false},
		{"::1", false},
		{"-api.example.com", false},
		{"api-.example.com", false},
		{"api..example.com", false},
		{"api example.com", false},
		{"api_x.example.com", false},
		{"example.123", false},
		{strings.Repeat("a", 64) + ".example.com", false},
		{strings.Repeat("a.", 127) + "com", false},
	} {
		err := ValidHost(tc.host)
		if (err == nil) != tc.ok {
			t.Errorf("ValidHost(%q) = %v, want ok %v", tc.host, err, tc.ok)
		}
	}
}

func TestTableSetRemove(t *testing.T) {
	var tb Table
	tb, err := tb.Set(Route{Project: "b", Service: "web", Hosts: []string{"b.example.com"}, Upstream: "127.0.0.1:8001"})
	if err != nil {
		t.Fatal(err)
	}
	tb, err = tb.Set(Route{Project: "a", Service: "api", Hosts: []string{"a.example.com", "www.a.example.com"}, Upstream: "127.0.0.1:8000", HSTS: 60})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tb.Hosts(), " "); got != "a.example.com b.example.com www.a.example.com" {
		t.Fatalf("hosts %q", got)
	}
	if tb.Routes[0].Project != "a" {
		t.Fatalf("routes not sorted: %+v", tb.Routes)
	}
	// The same service again replaces its route.
	tb, err = tb.Set(Route{Project: "a", Service: "api", Hosts: []string{"a.example.com"}, Upstream: "127.0.0.1:8000"})
	if err != nil || len(tb.Routes) != 2 {
		t.Fatalf("replace: %v %+v", err, tb.Routes)
	}
	// Another service may not take a host.
	if _, err := tb.Set(Route{Project: "c", Service: "x", Hosts: []string{"b.example.com"}, Upstream: "127.0.0.1:1"}); err == nil {
		t.Fatal("a host of another service was taken")
	}
	if tb = tb.Remove("a", ""); len(tb.Routes) != 1 || tb.Routes[0].Project != "b" {
		t.Fatalf("remove: %+v", tb.Routes)
	}
	b, _ := json.Marshal(tb)
	back, err := ParseTable(b)
	if err != nil || len(back.Routes) != 1 {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func TestRouteValidate(t *testing.T) {
	good := Route{Project: "p", Service: "s", Hosts: []string{"p.example.com"}, Upstream: "127.0.0.1:8000"}
	for name, mut := range map[string]func(*Route){
		"no project":    func(r *Route) { r.Project = "" },
		"no hosts":      func(r *Route) { r.Hosts = nil },
		"bad host":      func(r *Route) { r.Hosts = []string{"x"} },
		"bad upstream":  func(r *Route) { r.Upstream = "8000" },
		"bad port":      func(r *Route) { r.Upstream = "127.0.0.1:70000" },
		"hsts":          func(r *Route) { r.HSTS = -1 },
		"cert only":     func(r *Route) { r.CertFile = "a.crt" },
		"cert path":     func(r *Route) { r.CertFile, r.KeyFile = "../a.crt", "a.key" },
		"cert absolute": func(r *Route) { r.CertFile, r.KeyFile = "/etc/a.crt", "a.key" },
	} {
		r := good
		r.Hosts = append([]string{}, good.Hosts...)
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzValidHost: whatever the input, ValidHost does not panic, and what it
// accepts is lower case, dotted, without spaces or a trailing dot.
func FuzzValidHost(f *testing.F) {
	for _, s := range []string{"api.example.com", "", "*.a.b", "1.2.3.4", "a..b", "A.B", "é.example", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if ValidHost(h) != nil {
			return
		}
		if h != strings.ToLower(h) || !strings.Contains(h, ".") || strings.ContainsAny(h, " */:") || strings.HasSuffix(h, ".") || len(h) > 253 {
			t.Fatalf("accepted %q", h)
		}
	})
}

// FuzzParseTable: the routes file and the admin API's bodies are parsed
// without a panic, and a table that parses validates.
func FuzzParseTable(f *testing.F) {
	f.Add([]byte(`{"routes":[{"project":"p","service":"s","hosts":["a.example.com"],"upstream":"127.0.0.1:8000","hsts":60}]}`))
	f.Add([]byte(`{"routes":[]}`))
	f.Add([]byte(`{"routes":[{"project":"p","service":"s","hosts":["a.example.com"],"upstream":"x"}]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tb, err := ParseTable(b)
		if err != nil {
			return
		}
		if err := tb.Validate(); err != nil {
			t.Fatalf("parsed but invalid: %v", err)
		}
	})
}
