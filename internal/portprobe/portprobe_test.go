package portprobe

import (
	"net"
	"reflect"
	"testing"
)

func listen(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestHeld(t *testing.T) {
	onAll := listen(t, ":0")               // like docker-proxy on 0.0.0.0
	onLoopback := listen(t, "127.0.0.1:0") // a local-only service still blocks publishing
	free := freePort(t)
	held, err := Held([]int{free, onAll, onLoopback})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{onAll, onLoopback}; !reflect.DeepEqual(held, want) {
		t.Fatalf("Held = %v, want %v", held, want)
	}
	// Probing must not keep the free port.
	if held, err := Held([]int{free}); err != nil || len(held) != 0 {
		t.Fatalf("second probe of a free port: %v, %v", held, err)
	}
}

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []int
		ok   bool
	}{
		{[]string{"8000", "5432"}, []int{8000, 5432}, true},
		{nil, nil, false},
		{[]string{"0"}, nil, false},
		{[]string{"65536"}, nil, false},
		{[]string{"80a"}, nil, false},
		{[]string{"-1"}, nil, false},
	} {
		got, err := ParsePorts(tc.args)
		if (err == nil) != tc.ok || (tc.ok && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("ParsePorts(%q) = %v, %v", tc.args, got, err)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"8000", "0", "65535", "65536", "+80", " 80", "1e3", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts([]string{s})
		if err == nil && (len(ports) != 1 || ports[0] < 1 || ports[0] > 65535) {
			t.Fatalf("ParsePorts(%q) = %v", s, ports)
		}
	})
}
