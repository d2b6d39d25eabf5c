package deployer

import (
	"regexp"
	"testing"
)

func TestCheckProjectName(t *testing.T) {
	for name, ok := range map[string]bool{
		"invoicing": true, "shop-2": true, "a_b": true, "0day": true,
		"": false, "Shop": false, "../h1sec": false, "h1/sec": false, "-x": false, "_x": false,
		"my.shop": false, "shop ": false, "sh\u00f6p": false,
	} {
		err := CheckProjectName(name)
		if (err == nil) != ok {
			t.Errorf("CheckProjectName(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !IsInvalid(err) {
			t.Errorf("CheckProjectName(%q): %v is not an invalid request (exit 2)", name, err)
		}
	}
}

// FuzzCheckProjectName holds the rule to compose's definition for any input.
func FuzzCheckProjectName(f *testing.F) {
	for _, s := range []string{"invoicing", "../H1SEC", "-a", "a-", "\x00", "Ab"} {
		f.Add(s)
	}
	rule := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := CheckProjectName(s) == nil, rule.MatchString(s); got != want {
			t.Fatalf("CheckProjectName(%q) ok=%v, compose's rule says %v", s, got, want)
		}
	})
}
