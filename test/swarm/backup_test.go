package swarm

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// testBackup: swarm backup finds the node that runs the database's task,
// streams pg_basebackup from it to this machine encrypted and checksummed;
// the file decrypts with the project's key into a base backup holding the
// invoice written just before. remote restore against that node is
// refused (exit 3): the database there is a Swarm task.
func testBackup(t *testing.T, w *world) {
	const project, port = "swbk", 18711
	mgr := w.bed.Nodes[0].URL()
	t.Cleanup(func() { w.run(t, nil, "swarm", "down", "--host", mgr, "-p", project, "--volumes") })
	w.must(t, 0, nil, "swarm", "up", "--host", mgr, "-p", project, "--port", fmt.Sprint(port))
	marker := fmt.Sprintf("swarm-backup-%d", time.Now().UnixNano())
	body := `{"currency":"EUR","customer":{"name":"` + marker + `"},"line_items":[{"description":"x","quantity":1,"unit_amount":1234}]}`
	resp, err := httpClient.Post(w.api(0, port)+"/v1/invoices", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create invoice: %s", resp.Status)
	}

	data := t.TempDir()
	env := []string{"XDG_DATA_HOME=" + data}
	r := w.must(t, 0, env, "swarm", "backup", "--host", mgr, "-p", project, "-o", "json")
	var m struct {
		ID, File, SHA256, Service string
		Size                      int64
		StartLSN                  string `json:"start_lsn"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.Service != "db" || m.StartLSN == "" {
		t.Fatalf("swarm backup -o json: %v %+v\n%s", err, m, r.stdout)
	}
	file, err := os.ReadFile(filepath.Join(data, "invdeploy", project, "backups", m.File))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	if hex.EncodeToString(sum[:]) != m.SHA256 || int64(len(file)) != m.Size {
		t.Fatalf("backup file: %d bytes sha256 %x, manifest %d %s", len(file), sum, m.Size, m.SHA256)
	}
	if bytes.Contains(file, []byte(marker)) {
		t.Fatal("the backup file holds the invoice in clear: not encrypted")
	}
	keyFile := filepath.Join(w.xdg, "invdeploy", project, "backup.agekey")
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(kb))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := age.Decrypt(bytes.NewReader(file), ids...)
	if err != nil {
		t.Fatalf("decrypt the backup with %s: %v", keyFile, err)
	}
	tr := tar.NewReader(plain)
	var names []string
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read the decrypted backup: %v", err)
		}
		names = append(names, h.Name)
		b, _ := io.ReadAll(tr)
		found = found || bytes.Contains(b, []byte(marker))
	}
	if !found || !slices.Contains(names, "PG_VERSION") || !slices.Contains(names, "backup_label") {
		t.Fatalf("decrypted backup: marker found %v, %d files (PG_VERSION, backup_label wanted)", found, len(names))
	}
	t.Logf("swarm backup: %s, %d bytes, %d files; %s", m.ID, m.Size, len(names), strings.TrimSpace(lastLine(r.stderr)))

	// The node that runs the database refuses remote restore.
	node := -1
	for i := range w.bed.Nodes {
		cs, err := w.node(t, i).ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", "com.docker.compose.project="+project), filters.Arg("label", "com.docker.compose.service=db"))})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) > 0 {
			node = i
		}
	}
	if node < 0 {
		t.Fatal("no node runs the database")
	}
	r = w.run(t, env, "remote", "restore", "--host", w.bed.Nodes[node].URL(), "-p", project, "--backup", m.ID)
	if r.code != 3 || !strings.Contains(r.stderr, "Swarm service") {
		t.Fatalf("remote restore on the database's swarm node: exit %d, want 3 naming Swarm:\n%s", r.code, r.stderr)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
