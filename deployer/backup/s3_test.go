package backup

import (
	"strings"
	"testing"
)

func s3env(m map[string]string) S3Env { return func(k string) string { return m[k] } }

var s3creds = map[string]string{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret-key"}

func TestNewS3(t *testing.T) {
	s, err := NewS3("s3://shop-backups/prod/db/", "https://s3.example.net:9000", s3env(s3creds))
	if err != nil {
		t.Fatal(err)
	}
	if s.Bucket != "shop-backups" || s.Prefix != "prod/db/" || s.Endpoint.Host != "s3.example.net:9000" || s.String() != "s3://shop-backups/prod/db/" {
		t.Fatalf("parsed %+v", s)
	}
	env := map[string]string{"AWS_ENDPOINT_URL": "http://10.0.0.5:8333"}
	for k, v := range s3creds {
		env[k] = v
	}
	if s, err := NewS3("s3://b", "", s3env(env)); err != nil || s.Prefix != "" || s.Endpoint.Scheme != "http" {
		t.Fatalf("endpoint from AWS_ENDPOINT_URL: %+v %v", s, err)
	}
	for _, c := range []struct{ url, endpoint, want string }{
		{"https://b/p", "https://h", "want s3://BUCKET"},
		{"s3:///p", "https://h", "want s3://BUCKET"},
		{"s3://u:p@b/p", "https://h", "want s3://BUCKET"},
		{"s3://b/a/../c", "https://h", "prefix"},
		{"s3://b/a//c", "https://h", "prefix"},
		{"s3://b", "", "--s3-endpoint"},
		{"s3://b", "ftp://h", "want https://HOST"},
		{"s3://b", "https://h/path", "want https://HOST"},
	} {
		if _, err := NewS3(c.url, c.endpoint, s3env(s3creds)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewS3(%q, %q): %v, want an error with %q", c.url, c.endpoint, err, c.want)
		}
	}
	if _, err := NewS3("s3://b", "https://h", s3env(nil)); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("no credentials: %v", err)
	}
}

// FuzzNewS3: any --s3 and --s3-endpoint either refuse or give a bucket, a
// prefix that is empty or ends in "/" with no . or .. part, and an http(s)
// endpoint; no error repeats the secret key.
func FuzzNewS3(f *testing.F) {
	for _, s := range []string{"s3://b", "s3://b/p/", "s3://b/../x", "s3://b/%2e%2e/x", "s3://b?x=1", "s3://b#f", "s3://ü/ä"} {
		f.Add(s, "https://h:9000")
	}
	f.Add("s3://b", "http://[::1]:8333")
	f.Fuzz(func(t *testing.T, raw, endpoint string) {
		s, err := NewS3(raw, endpoint, s3env(s3creds))
		if err != nil {
			if strings.Contains(err.Error(), s3creds["AWS_SECRET_ACCESS_KEY"]) {
				t.Fatalf("the error repeats the secret key: %v", err)
			}
			return
		}
		if s.Bucket == "" || (s.Prefix != "" && !strings.HasSuffix(s.Prefix, "/")) || strings.HasPrefix(s.Prefix, "/") {
			t.Fatalf("%q: bucket %q prefix %q", raw, s.Bucket, s.Prefix)
		}
		for _, part := range strings.Split(strings.TrimSuffix(s.Prefix, "/"), "/") {
			if s.Prefix != "" && (part == "" || part == "." || part == "..") {
				t.Fatalf("%q: prefix %q has part %q", raw, s.Prefix, part)
			}
		}
		if s.Endpoint.Scheme != "https" && s.Endpoint.Scheme != "http" {
			t.Fatalf("%q: endpoint %v", endpoint, s.Endpoint)
		}
	})
}
