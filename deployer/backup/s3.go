package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a bucket of an S3-compatible store that keeps copies of the
// encrypted backups: <prefix><id>.tar.age, then <prefix><id>.json (the
// manifest, uploaded last: a backup without it is unfinished and never
// listed). The files are the ones in the local Store, already encrypted.
type S3 struct {
	// Endpoint is the store's URL (https://host[:port], or http:// for a
	// loopback or private store).
	Endpoint *url.URL
	// Bucket and Prefix say where the objects go ("" or ending in "/").
	Bucket, Prefix string
	// AccessKey and SecretKey sign the requests; Region is the bucket's
	// region ("" lets the client ask).
	AccessKey, SecretKey, Region string
}

// S3Env is what NewS3 reads from the environment: the variables of the AWS
// command-line tools.
type S3Env func(string) string

// NewS3 reads --s3 s3://BUCKET[/PREFIX] and the store's endpoint (--s3-endpoint,
// else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL) and credentials
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) from getenv.
func NewS3(rawURL, endpoint string, getenv S3Env) (*S3, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--s3 %q: want s3://BUCKET or s3://BUCKET/PREFIX", rawURL)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	if strings.Contains(prefix, "//") || strings.Contains("/"+prefix, "/../") || strings.Contains("/"+prefix, "/./") {
		return nil, fmt.Errorf("--s3 %q: the prefix has an empty, . or .. part", rawURL)
	}
	for _, v := range []string{endpoint, getenv("AWS_ENDPOINT_URL_S3"), getenv("AWS_ENDPOINT_URL")} {
		if v != "" {
			endpoint = v
			break
		}
	}
	if endpoint == "" {
		return nil, fmt.Errorf("--s3 %s: give the store's address with --s3-endpoint https://HOST[:PORT] (or AWS_ENDPOINT_URL)", rawURL)
	}
	ep, err := url.Parse(endpoint)
	if err != nil || (ep.Scheme != "https" && ep.Scheme != "http") || ep.Host == "" || (ep.Path != "" && ep.Path != "/") || ep.User != nil {
		return nil, fmt.Errorf("--s3-endpoint %q: want https://HOST[:PORT]", endpoint)
	}
	s := &S3{Endpoint: ep, Bucket: u.Host, Prefix: prefix, AccessKey: getenv("AWS_ACCESS_KEY_ID"), SecretKey: getenv("AWS_SECRET_ACCESS_KEY"), Region: getenv("AWS_REGION")}
	if s.AccessKey == "" || s.SecretKey == "" {
		return nil, fmt.Errorf("--s3 %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the store's credentials", rawURL)
	}
	return s, nil
}

// String is the bucket and prefix as the user wrote them.
func (s *S3) String() string { return "s3://" + s.Bucket + "/" + s.Prefix }

func (s *S3) client() (*minio.Client, error) {
	c, err := minio.New(s.Endpoint.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: s.Endpoint.Scheme == "https",
		Region: s.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", s.Endpoint.Host, err)
	}
	return c, nil
}

// Upload copies backup m from store to the bucket: the file, with its
// SHA-256 for the store to check on arrival, then the manifest.
func (s *S3) Upload(ctx context.Context, store Store, m *Manifest) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(store.Dir, m.File))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := c.PutObject(ctx, s.Bucket, s.Prefix+m.File, f, m.Size, minio.PutObjectOptions{
		ContentType: "application/octet-stream", SendContentMd5: true,
		UserMetadata: map[string]string{"sha256": m.SHA256}}); err != nil {
		return fmt.Errorf("upload %s to %s: %w", m.File, s, err)
	}
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if _, err := c.PutObject(ctx, s.Bucket, s.Prefix+m.ID+".json", strings.NewReader(string(b)), int64(len(b)), minio.PutObjectOptions{
		ContentType: "application/json", SendContentMd5: true}); err != nil {
		return fmt.Errorf("upload the manifest of %s to %s: %w", m.ID, s, err)
	}
	return nil
}

// maxManifest bounds a manifest read from the bucket.
const maxManifest = 1 << 20

// List returns the complete backups of project in the bucket (all projects
// when ""), oldest first; a manifest that does not parse is reported in bad.
func (s *S3) List(ctx context.Context, project string) (list []*Manifest, bad []error, err error) {
	c, err := s.client()
	if err != nil {
		return nil, nil, err
	}
	for obj := range c.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: s.Prefix}) {
		if obj.Err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", s, obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, s.Prefix)
		if strings.Contains(name, "/") || !strings.HasSuffix(name, ".json") {
			continue
		}
		m, err := s.manifest(ctx, c, obj.Key)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if m.ID+".json" != name {
			bad = append(bad, fmt.Errorf("%s: holds the manifest of %s", obj.Key, m.ID))
			continue
		}
		if project == "" || m.Project == project {
			list = append(list, m)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list, bad, nil
}

func (s *S3) manifest(ctx context.Context, c *minio.Client, key string) (*Manifest, error) {
	o, err := c.GetObject(ctx, s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	defer o.Close()
	b, err := io.ReadAll(io.LimitReader(o, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%s: over %d bytes, not a manifest", key, maxManifest)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return m, nil
}

// Fetch copies backup id from the bucket into store (the file under a
// temporary name, renamed once complete, then the manifest) and checks it
// against its manifest (size, SHA-256): a damaged copy is refused (exit 3)
// and the copy removed. A backup already in store is checked, not fetched
// again (nor removed when damaged: it is the user's).
func (s *S3) Fetch(ctx context.Context, store Store, id string) (*Manifest, error) {
	if strings.ContainsAny(id, "/\\") || id == "" || id == "." || id == ".." {
		return nil, fmt.Errorf("--backup %q: not a backup id", id)
	}
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	m, err := s.manifest(ctx, c, s.Prefix+id+".json")
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && er.Code == "NoSuchKey" {
			return nil, refuse(id, "no backup %s in %s (invdeploy backups --s3 %s lists them)", id, s, s)
		}
		return nil, err
	}
	if m.ID != id {
		return nil, refuse(id, "%s%s.json holds the manifest of %s", s, id, m.ID)
	}
	if err := os.MkdirAll(store.Dir, 0o700); err != nil {
		return nil, err
	}
	final := filepath.Join(store.Dir, m.File)
	fetched := false
	if _, err := os.Stat(final); err != nil {
		if err := c.FGetObject(ctx, s.Bucket, s.Prefix+m.File, final, minio.GetObjectOptions{}); err != nil {
			return nil, fmt.Errorf("download %s from %s: %w", m.File, s, err)
		}
		fetched = true
	}
	if err := store.Verify(m); err != nil {
		if fetched {
			os.Remove(final)
		}
		return nil, err
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(store.Dir, m.ID+".json"), b, 0o600); err != nil {
		return nil, err
	}
	return m, nil
}
