package swarm

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer"
)

func hosts(managers, workers int) []Host {
	var hs []Host
	for i := 0; i < managers+workers; i++ {
		hs = append(hs, Host{Name: string(rune('a' + i)), Addr: "10.0.1." + strconv.Itoa(i+1), Manager: i < managers})
	}
	return hs
}

func TestCheckInit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []Host
		o     InitOptions
		want  string // "" means allowed
	}{
		{"one manager", hosts(1, 2), InitOptions{}, ""},
		{"three managers", hosts(3, 0), InitOptions{ClusterCIDR: "10.0.1.0/24", AppPorts: []int{8000}, AllowFrom: "0.0.0.0/0"}, ""},
		{"no manager", hosts(0, 2), InitOptions{}, "at least one manager"},
		{"two managers", hosts(2, 1), InitOptions{}, "odd number"},
		{"world cluster", hosts(1, 0), InitOptions{ClusterCIDR: "0.0.0.0/0"}, "2377"},
		{"world cluster v6", hosts(1, 0), InitOptions{ClusterCIDR: "::/0"}, "2377"},
		{"bad cidr", hosts(1, 0), InitOptions{ClusterCIDR: "10.0.1.0"}, "not a CIDR"},
		{"bad allow-from", hosts(1, 0), InitOptions{AllowFrom: "anywhere"}, "not a CIDR"},
		{"swarm port as app port", hosts(1, 0), InitOptions{AppPorts: []int{2377}}, "swarm port"},
		{"vxlan as app port", hosts(1, 0), InitOptions{AppPorts: []int{4789}}, "swarm port"},
		{"port out of range", hosts(1, 0), InitOptions{AppPorts: []int{70000}}, "not a port"},
		{"same host twice", append(hosts(1, 1), Host{Name: "z", Addr: "10.0.1.1"}), InitOptions{}, "same address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckInit(tc.hosts, tc.o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if !errors.Is(err, deployer.ErrPreflight) {
				t.Errorf("err is not a preflight refusal (exit 3): %v", err)
			}
		})
	}
}

func TestRules(t *testing.T) {
	rules := Rules(hosts(1, 1), InitOptions{AppPorts: []int{8000}})
	var lines []string
	for _, r := range rules {
		lines = append(lines, r.Protocol+" "+strconv.Itoa(r.Port)+" "+r.Source)
		if r.Port == PortManagement && strings.HasSuffix(r.Source, "/0") {
			t.Errorf("2377 open to %s", r.Source)
		}
	}
	got := strings.Join(lines, "\n")
	want := strings.Join([]string{
		"tcp 2377 10.0.1.1/32", "tcp 7946 10.0.1.1/32", "udp 7946 10.0.1.1/32", "udp 4789 10.0.1.1/32",
		"tcp 2377 10.0.1.2/32", "tcp 7946 10.0.1.2/32", "udp 7946 10.0.1.2/32", "udp 4789 10.0.1.2/32",
		"tcp 8000 0.0.0.0/0",
	}, "\n")
	if got != want {
		t.Errorf("rules:\n%s\nwant:\n%s", got, want)
	}
	if c := rules[0].AWSCommand(); !strings.Contains(c, "--protocol tcp --port 2377 --cidr 10.0.1.1/32") {
		t.Errorf("AWSCommand = %q", c)
	}
}
