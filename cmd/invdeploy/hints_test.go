package main

import "testing"

// TestHints: the hints after up (and remote up) carry -f/--file, -p, -H and
// --host as given; logs gets --file because its -f means follow; a password
// in the host URL never reaches a hint.
func TestHints(t *testing.T) {
	stack := &stackOptions{Files: []string{"deploy/shop.yaml", "over ride.yaml"}, Project: "shop"}
	for _, tc := range []struct {
		got, want string
	}{
		{localHint(&globalOptions{}, stack, "down"), "invdeploy down -f deploy/shop.yaml -f 'over ride.yaml' -p shop"},
		{localHint(&globalOptions{}, stack, "logs -f"), "invdeploy logs -f --file deploy/shop.yaml --file 'over ride.yaml' -p shop"},
		{localHint(&globalOptions{Host: "unix:///run/user/1000/docker.sock"}, &stackOptions{}, "status"), "invdeploy -H unix:///run/user/1000/docker.sock status"},
		{localHint(&globalOptions{}, &stackOptions{Project: "it's"}, "down"), `invdeploy down -p 'it'\''s'`},
		{remoteHint(&globalOptions{Host: "ssh://admin@203.0.113.7:2222"}, &remoteOptions{identities: []string{"~/.ssh/ec2"}}, stack, "down"),
			"invdeploy remote down --host ssh://admin@203.0.113.7:2222 -i ~/.ssh/ec2 -f deploy/shop.yaml -f 'over ride.yaml' -p shop"},
		{remoteHint(&globalOptions{Host: "ssh://admin:hunter2@h"}, &remoteOptions{}, &stackOptions{}, "status"), "invdeploy remote status --host ssh://admin:xxxxx@h"},
	} {
		if tc.got != tc.want {
			t.Errorf("hint\n got %s\nwant %s", tc.got, tc.want)
		}
	}
}
