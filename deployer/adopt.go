package deployer

import (
	"context"
	"fmt"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
)

// heldSecret reads a generated secret back from a running container of the
// stack that uses it (through the API, as the change check does): the value
// and the container's name, or nil when no running container holds it.
// The planner adopts such a value instead of generating a new one, which
// would hand the services a password the database was never given.
func (d *Deployer) heldSecret(ctx context.Context, p *types.Project, cs []container.Summary, name string) ([]byte, string, error) {
	for _, c := range cs {
		s, ok := p.Services[c.Labels[LabelService]]
		if !ok || c.State != "running" || c.Labels[LabelRole] != "" || !hasDelivery(c) {
			continue
		}
		files, err := deliveryFiles(s)
		if err != nil {
			return nil, "", err
		}
		for _, f := range files {
			if f.Kind != kindSecret || f.Name != name {
				continue
			}
			got := map[string][]byte{}
			if err := d.readDelivered(ctx, c.ID, f.Target, 4096, got); err != nil {
				return nil, "", fmt.Errorf("read secret %s back from %s: %w", name, containerName(c), err)
			}
			if v, ok := got[f.Target]; ok && len(v) > 0 {
				return v, containerName(c), nil
			}
		}
	}
	return nil, "", nil
}

// storeSecret keeps an adopted secret on this machine like a generated one
// (see writeMirror).
func storeSecret(name, stored string, value []byte) error {
	if err := writeMirror(stored, value); err != nil {
		return fmt.Errorf("store secret %s: %w", name, err)
	}
	return nil
}
