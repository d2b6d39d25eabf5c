package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// s3Server is a real S3-compatible server (SeaweedFS's weed, built by
// scripts/s3bed.sh) on loopback ports of base..base+40.
type s3Server struct {
	endpoint       string
	access, secret string
	client         *minio.Client
}

func startS3(t *testing.T, base int) *s3Server {
	t.Helper()
	bin := filepath.Join(os.Getenv("HOME"), ".cache", "invdeploy", "s3bed", "bin", "weed")
	if v := os.Getenv("S3BED"); v != "" {
		bin = filepath.Join(v, "bin", "weed")
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.Missing(t, bin+" (bash scripts/s3bed.sh builds it)")
	}
	dir := t.TempDir()
	s := &s3Server{access: "invdeploytest", secret: fmt.Sprintf("s3-secret-%d", time.Now().UnixNano())}
	cfg := fmt.Sprintf(`{"identities":[{"name":"invdeploy","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, s.access, s.secret)
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := func(n int) string { return strconv.Itoa(base + n) }
	logf, err := os.Create(filepath.Join(dir, "weed.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "server", "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1", "-dir", filepath.Join(dir, "data"),
		"-master.port", p(0), "-master.port.grpc", p(1), "-master.telemetry=false", "-volume.port", p(10), "-volume.port.grpc", p(11),
		"-filer.port", p(20), "-filer.port.grpc", p(21), "-filer.localSocket", filepath.Join(dir, "filer.sock"),
		"-s3", "-s3.port", p(30), "-s3.port.grpc", p(31), "-s3.port.iceberg", "0", "-s3.port.lance", "0", "-s3.config", filepath.Join(dir, "s3.json"),
		"-debug.port", p(40), "-volume.max", "5", "-master.volumeSizeLimitMB", "64")
	os.MkdirAll(filepath.Join(dir, "data"), 0o700)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	s.endpoint = "http://127.0.0.1:" + p(30)
	s.client, err = minio.New("127.0.0.1:"+p(30), &minio.Options{Creds: credentials.NewStaticV4(s.access, s.secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, derr := net.DialTimeout("tcp", "127.0.0.1:"+p(30), time.Second)
		if derr == nil {
			c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := s.client.MakeBucket(ctx, "invdeploy-backups", minio.MakeBucketOptions{})
			if er := minio.ToErrorResponse(err); er.Code == "BucketAlreadyOwnedByYou" {
				err = nil
			}
			if err == nil {
				// Ready once it stores an object (its first volume is
				// allocated on the first write).
				_, err = s.client.PutObject(ctx, "invdeploy-backups", "ready", strings.NewReader("ready"), 5, minio.PutObjectOptions{})
			}
			cancel()
			if err == nil {
				return s
			}
			derr = err
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "weed.log"))
			t.Fatalf("the S3 server did not come up: %v\n%s", derr, tail(string(log), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestBackupS3: backup --s3 copies the encrypted backup into a bucket of a
// real S3-compatible server (the manifest last), backups --s3 lists it;
// with the local copies gone, restore --s3 --backup ID fetches it, checks
// it by SHA-256 and restores exactly what it held; a damaged object is
// refused (exit 3) with nothing changed.
func TestBackupS3(t *testing.T) {
	s3 := startS3(t, 26500)
	e, proj, api := backupEnv(t, "AWS_ACCESS_KEY_ID="+s3.access, "AWS_SECRET_ACCESS_KEY="+s3.secret, "AWS_ENDPOINT_URL="+s3.endpoint)
	c := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 4; i++ {
		if _, err := api.create(c, i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	bucket := "s3://invdeploy-backups/" + proj
	r := e.mustRun(localRoot(), "backup", "-p", proj, "--s3", bucket, "-o", "json")
	var m struct{ ID, File string }
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("backup -o json: %v\n%s", err, r.stdout)
	}
	ctx := context.Background()
	orig, err := s3.object(ctx, proj+"/"+m.File)
	if err != nil {
		t.Fatalf("the backup is not in the bucket: %v", err)
	}
	if !bytes.HasPrefix(orig, []byte("age-encryption.org/v1")) {
		t.Fatal("the object in the bucket is not age-encrypted")
	}
	if _, err := s3.object(ctx, proj+"/"+m.ID+".json"); err != nil {
		t.Fatalf("no manifest in the bucket: %v", err)
	}
	list := e.mustRun(localRoot(), "backups", "-p", proj, "--s3", bucket, "-o", "json")
	var l struct {
		S3 struct {
			Backups []struct{ ID string } `json:"backups"`
		} `json:"s3"`
	}
	if err := json.Unmarshal([]byte(list.stdout), &l); err != nil || len(l.S3.Backups) != 1 || l.S3.Backups[0].ID != m.ID {
		t.Fatalf("backups --s3: %v\n%s", err, list.stdout)
	}
	for i := 0; i < 2; i++ {
		if _, err := api.create(c, true); err != nil {
			t.Fatal(err)
		}
	}
	var dataHome string
	for _, kv := range e.extra {
		if v, ok := strings.CutPrefix(kv, "XDG_DATA_HOME="); ok {
			dataHome = v
		}
	}
	local := filepath.Join(dataHome, "invdeploy", proj, "backups")
	if err := os.RemoveAll(local); err != nil {
		t.Fatal(err)
	}

	// A damaged object: refused by checksum, nothing changed, no copy left.
	flipped := append([]byte(nil), orig...)
	flipped[len(flipped)/2] ^= 0x40
	s3.put(t, proj+"/"+m.File, flipped)
	ids := e.containerIDs(proj)
	r = e.run(localRoot(), "restore", "-p", proj, "--s3", bucket, "--backup", m.ID)
	if r.code != 3 || !strings.Contains(r.stderr, "nothing was changed") {
		t.Fatalf("restore of a damaged object: exit %d, want 3:\n%s", r.code, r.stderr)
	}
	if now := e.containerIDs(proj); fmt.Sprint(now) != fmt.Sprint(ids) {
		t.Fatalf("the refused restore changed the containers: %v -> %v", ids, now)
	}
	if _, err := os.Stat(filepath.Join(local, m.File)); err == nil {
		t.Fatal("the damaged copy was left in the local directory")
	}
	if n := len(api.all()); n != 6 {
		t.Fatalf("after the refused restore: %d invoices, want 6", n)
	}

	s3.put(t, proj+"/"+m.File, orig)
	r = e.mustRun(localRoot(), "restore", "-p", proj, "--s3", bucket, "--backup", m.ID)
	got := api.all()
	if len(got) != 4 {
		t.Fatalf("restore --s3 --backup %s: %d invoices, want the 4 it holds\n%s", m.ID, len(got), r.stderr)
	}
	checkIntact(t, got)
	t.Logf("backup --s3 %s: %s; restore: %s", bucket, m.ID, strings.TrimSpace(r.stdout))
}

func (s *s3Server) object(ctx context.Context, key string) ([]byte, error) {
	o, err := s.client.GetObject(ctx, "invdeploy-backups", key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(o)
	return b.Bytes(), err
}

func (s *s3Server) put(t *testing.T, key string, b []byte) {
	t.Helper()
	if _, err := s.client.PutObject(context.Background(), "invdeploy-backups", key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}
