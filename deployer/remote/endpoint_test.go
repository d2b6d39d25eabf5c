package remote

import (
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	ok := []struct {
		in   string
		want Endpoint
	}{
		{"ssh://ubuntu@ec2.example.test", Endpoint{Scheme: "ssh", User: "ubuntu", Host: "ec2.example.test", Port: 22, Socket: DefaultSocket}},
		{"ssh://root@10.0.0.2:2222", Endpoint{Scheme: "ssh", User: "root", Host: "10.0.0.2", Port: 2222, Socket: DefaultSocket}},
		{"ssh://h/run/user/1000/docker.sock", Endpoint{Scheme: "ssh", Host: "h", Port: 22, Socket: "/run/user/1000/docker.sock"}},
		{"ssh://u@[::1]:22/", Endpoint{Scheme: "ssh", User: "u", Host: "::1", Port: 22, Socket: DefaultSocket}},
		{"SSH://u@h", Endpoint{Scheme: "ssh", User: "u", Host: "h", Port: 22, Socket: DefaultSocket}},
		{"tcp://docker.internal.test:2376", Endpoint{Scheme: "tcp", Host: "docker.internal.test", Port: 2376}},
		{"tcp://127.0.0.1:2375", Endpoint{Scheme: "tcp", Host: "127.0.0.1", Port: 2375}},
	}
	for _, c := range ok {
		got, err := ParseHost(c.in)
		if err != nil {
			t.Errorf("ParseHost(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseHost(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	bad := map[string]string{
		"":                            "empty",
		"ec2.example.test":            "want ssh://",
		"http://h:2375":               "not supported",
		"ssh://u:hunter2@h":           "password",
		"ssh://u:hunter2@h:bad port":  "password",
		"ssh://u:hunter2@h?x=1":       "password",
		"ssh://u@h:0":                 "port",
		"ssh://u@h:99999":             "port",
		"ssh://u@h:":                  "empty port",
		"ssh://u@h?x=1":               "query",
		"ssh://u@h#frag":              "fragment",
		"ssh://u@h/var/../etc/passwd": "not clean",
		"tcp://h":                     "needs a port",
		"tcp://u@h:2376":              "no user",
		"tcp://h:2376/x":              "no path",
		"unix:///var/run/docker.sock": "want ssh://",
		" ssh://u@h":                  "spaces",
	}
	for in, want := range bad {
		_, err := ParseHost(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseHost(%q) error = %v, want one containing %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the URL password: %v", err)
		}
	}
}

func TestEndpointStringRoundTrips(t *testing.T) {
	for _, in := range []string{"ssh://u@h:22", "ssh://u@[::1]:2222/run/d.sock", "tcp://h:2376"} {
		ep, err := ParseHost(in)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseHost(ep.String())
		if err != nil || again != ep {
			t.Errorf("%q -> %q -> %+v, %v", in, ep.String(), again, err)
		}
	}
}

func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"ssh://u@h", "ssh://u@h:2222/run/docker.sock", "tcp://h:2376", "ssh://u:p@h", "ssh://[::1]:22", "tcp://%zz", "ssh://u@h/a/../b"} {
		f.Add(s)
	}
	f.Add("ssh://u:hunter2@h:bad")
	f.Add("ssh://u:hunter2@h?q")
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := ParseHost(s)
		if pw, has := passwordOf(s); has && len(pw) > 3 {
			if err == nil {
				t.Fatalf("accepted a URL with a password: %q", s)
			}
			if strings.Contains(err.Error(), ":"+pw+"@") || strings.Contains(Redact(s), ":"+pw+"@") {
				t.Fatalf("message shows the password: %v", err)
			}
		}
		if err != nil {
			return
		}
		if ep.Scheme != "ssh" && ep.Scheme != "tcp" {
			t.Fatalf("accepted scheme %q", ep.Scheme)
		}
		if ep.Port < 1 || ep.Port > 65535 || ep.Host == "" {
			t.Fatalf("accepted %+v", ep)
		}
		if ep.Scheme == "ssh" && !strings.HasPrefix(ep.Socket, "/") {
			t.Fatalf("socket %q not absolute", ep.Socket)
		}
		again, err := ParseHost(ep.String())
		if err != nil || again != ep {
			t.Fatalf("round trip %q -> %q -> %+v, %v", s, ep.String(), again, err)
		}
	})
}
