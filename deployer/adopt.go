package deployer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/types"
)

// adoptSecrets gives this machine the generated secrets that the stack's
// running containers already hold but that are not stored here (another
// machine deployed it, or the config directory was lost): each value is
// read back from a running container that uses it (through the API, as the
// change check does) and stored like a generated one (0600). Generating a
// new value instead would hand the services a password the database was
// never given. A value no running container holds is generated later, as on
// a first up. missing names the generated secrets this machine lacks.
func (d *Deployer) adoptSecrets(ctx context.Context, p *types.Project, configDir string, missing []string) error {
	srcs, err := secretSources(p, configDir)
	if err != nil {
		return err
	}
	cs, err := d.projectContainers(ctx, p.Name)
	if err != nil {
		return err
	}
	for _, name := range missing {
		var value []byte
		var from string
	search:
		for _, c := range cs {
			s, ok := p.Services[c.Labels[LabelService]]
			if !ok || c.State != "running" || c.Labels[LabelRole] != "" || !hasDelivery(c) {
				continue
			}
			files, err := deliveryFiles(s)
			if err != nil {
				return err
			}
			for _, f := range files {
				if f.Kind != kindSecret || f.Name != name {
					continue
				}
				got := map[string][]byte{}
				if err := d.readDelivered(ctx, c.ID, f.Target, 4096, got); err != nil {
					return fmt.Errorf("read secret %s back from %s: %w", name, containerName(c), err)
				}
				if v, ok := got[f.Target]; ok && len(v) > 0 {
					value, from = v, containerName(c)
					break search
				}
			}
		}
		if value == nil {
			continue
		}
		stored := srcs[name].Stored
		if err := os.MkdirAll(filepath.Dir(stored), 0o700); err != nil {
			return fmt.Errorf("store secret %s: %w", name, err)
		}
		if err := os.WriteFile(stored, value, 0o600); err != nil {
			return fmt.Errorf("store secret %s: %w", name, err)
		}
		d.out.Event("Secret %s is not stored on this machine: took the value %s holds (kept in %s, mode 0600)", name, from, stored)
	}
	return nil
}
