package registry

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secret = "s3cret-Pa55word"

func writeConfig(t *testing.T, json string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(json), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fakeHelper writes docker-credential-<name> speaking the helper protocol:
// "get" reads a server URL on stdin; known URLs get JSON, others the
// not-found message with exit 1.
func fakeHelper(t *testing.T, name string, known map[string][2]string) {
	t.Helper()
	dir := t.TempDir()
	var cases strings.Builder
	for url, up := range known {
		fmt.Fprintf(&cases, "  %q) printf '{\"ServerURL\":\"%%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}' \"$url\";;\n", url, up[0], up[1])
	}
	script := "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r url\ncase \"$url\" in\n" + cases.String() +
		"  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n"
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestResolveOrder(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	fakeHelper(t, "fake", map[string][2]string{
		"127.0.0.1:5000":              {"helperuser", secret},
		"https://index.docker.io/v1/": {"hubuser", secret},
		"tok.test":                    {"<token>", "identity-token-value"},
	})
	allEnv := env(map[string]string{EnvUser: "envuser", EnvPassword: secret})
	cases := []struct {
		name                string
		o                   ResolveOptions
		wantUser, wantToken string
		wantSource          string
	}{
		{"flags beat everything",
			ResolveOptions{Registry: "127.0.0.1:5000", Username: "flaguser", Password: secret,
				ConfigDir: writeConfig(t, `{"credsStore":"fake"}`), Getenv: allEnv},
			"flaguser", "", "--username"},
		{"credHelpers entry for the registry",
			ResolveOptions{Registry: "127.0.0.1:5000", ConfigDir: writeConfig(t, `{"credHelpers":{"127.0.0.1:5000":"fake"},"auths":{"127.0.0.1:5000":{"auth":"`+b64("authuser:"+secret)+`"}}}`), Getenv: allEnv},
			"helperuser", "", "docker-credential-fake"},
		{"credsStore for Docker Hub uses the index URL",
			ResolveOptions{Registry: "index.docker.io", ConfigDir: writeConfig(t, `{"credsStore":"fake"}`)},
			"hubuser", "", "docker-credential-fake"},
		{"identity token from a helper",
			ResolveOptions{Registry: "tok.test", ConfigDir: writeConfig(t, `{"credsStore":"fake"}`)},
			"", "identity-token-value", "docker-credential-fake"},
		{"store without the entry falls back to auths",
			ResolveOptions{Registry: "reg.test:443", ConfigDir: writeConfig(t, `{"credsStore":"fake","auths":{"https://reg.test:443/v2/":{"auth":"`+b64("authuser:"+secret)+`"}}}`)},
			"authuser", "", "config.json"},
		{"auths base64",
			ResolveOptions{Registry: "127.0.0.1:5000", ConfigDir: writeConfig(t, `{"auths":{"127.0.0.1:5000":{"auth":"`+b64("authuser:"+secret)+`"}}}`), Getenv: allEnv},
			"authuser", "", "config.json"},
		{"env when config has nothing for the registry",
			ResolveOptions{Registry: "127.0.0.1:5000", ConfigDir: writeConfig(t, `{"auths":{"other.test":{"auth":"`+b64("x:y")+`"}}}`), Getenv: allEnv},
			"envuser", "", EnvUser},
		{"env when there is no config file",
			ResolveOptions{Registry: "127.0.0.1:5000", ConfigDir: t.TempDir(), Getenv: allEnv},
			"envuser", "", EnvUser},
		{"anonymous",
			ResolveOptions{Registry: "127.0.0.1:5000", ConfigDir: t.TempDir()},
			"", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Resolve(c.o)
			if err != nil {
				t.Fatal(err)
			}
			if got.Username != c.wantUser || got.IdentityToken != c.wantToken || !strings.Contains(got.Source, c.wantSource) {
				t.Errorf("got %v token=%v, want user %q token %q source ~%q", got, got.IdentityToken != "", c.wantUser, c.wantToken, c.wantSource)
			}
			if c.wantUser != "" && got.Password != secret {
				t.Errorf("password not resolved")
			}
			for _, s := range []string{got.String(), fmt.Sprintf("%v %+v %#v %s", got, got, got, got)} {
				if strings.Contains(s, secret) || strings.Contains(s, "identity-token-value") {
					t.Errorf("formatting leaks the secret: %s", s)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	cases := map[string]ResolveOptions{
		"go together":       {Registry: "r.test", Username: "u"},
		"not base64":        {Registry: "r.test", ConfigDir: writeConfig(t, `{"auths":{"r.test":{"auth":"!!!"}}}`)},
		"not user:password": {Registry: "r.test", ConfigDir: writeConfig(t, `{"auths":{"r.test":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("nocolon"))+`"}}}`)},
		"not on PATH":       {Registry: "r.test", ConfigDir: writeConfig(t, `{"credsStore":"surely-not-installed-xyz"}`)},
		"invalid JSON":      {Registry: "r.test", ConfigDir: writeConfig(t, `{"auths": "`+secret)},
		"set both":          {Registry: "r.test", ConfigDir: t.TempDir(), Getenv: env(map[string]string{EnvPassword: secret})},
	}
	for want, o := range cases {
		_, err := Resolve(o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error leaks the secret: %v", want, err)
		}
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://index.docker.io/v1/": DockerHub, "registry-1.docker.io": DockerHub, "": DockerHub,
		"http://127.0.0.1:5000/v2/": "127.0.0.1:5000", "Reg.Test": "reg.test",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"auths":{"r":{"auth":"dTpw"}},"credsStore":"x","credHelpers":{"a":"b"}}`))
	f.Add([]byte(`{"auths":"` + secret))
	f.Add([]byte(`{"auths":{"r":{"auth":5}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := parseConfig(b)
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("error quotes the file: %v", err)
		}
	})
}
