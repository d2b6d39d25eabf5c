package deployer

import "testing"

const testPasswd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:999:998::/var/lib/postgresql:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
const testGroup = "root:x:0:\nsecrets:x:700:\n"

// TestResolveUserOneRule: one resolution for every target: a numeric uid takes
// its passwd entry's group (not gid = uid), names are looked up, unknown
// names fail.
func TestResolveUserOneRule(t *testing.T) {
	for spec, want := range map[string][2]int{
		"": {0, 0}, "0": {0, 0}, "postgres": {999, 998}, "1000": {1000, 1001}, "1000:5": {1000, 5},
		"4242": {4242, 0}, "app:secrets": {1000, 700}, "65532:65532": {65532, 65532},
	} {
		uid, gid, err := ResolveUser(spec, []byte(testPasswd), []byte(testGroup))
		if err != nil || uid != want[0] || gid != want[1] {
			t.Errorf("ResolveUser(%q) = %d:%d, %v; want %d:%d", spec, uid, gid, err, want[0], want[1])
		}
	}
	for _, bad := range []string{"nobody", "app:nogroup"} {
		if _, _, err := ResolveUser(bad, []byte(testPasswd), []byte(testGroup)); err == nil {
			t.Errorf("ResolveUser(%q): want an error", bad)
		}
	}
	if uid, gid, err := ResolveUser("1000", nil, nil); err != nil || uid != 1000 || gid != 0 {
		t.Errorf("no passwd file: %d:%d %v", uid, gid, err)
	}
}

// FuzzResolveUser: an image's passwd and group files are outside input;
// resolution never panics.
func FuzzResolveUser(f *testing.F) {
	f.Add("app", testPasswd, testGroup)
	f.Add("1000:secrets", testPasswd, testGroup)
	f.Add("x:y", "x:x:-1:zz\n::::\n", ":::\n")
	f.Fuzz(func(t *testing.T, spec, passwd, group string) {
		_, _, _ = ResolveUser(spec, []byte(passwd), []byte(group))
	})
}
