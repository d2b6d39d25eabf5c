package deployer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/compose-spec/compose-go/v2/types"
)

// ConfigHash is the SHA-256 of a service's definition with the fields that do
// not change a running container cleared (build, pull policy, scale, replicas,
// depends_on, profiles), as docker compose computes it. A container whose
// config-hash label differs is recreated by up.
func ConfigHash(s types.ServiceConfig) (string, error) {
	o := s
	o.Build = nil
	o.PullPolicy = ""
	o.Scale = nil
	o.DependsOn = nil
	o.Profiles = nil
	if o.Deploy != nil {
		d := *o.Deploy
		d.Replicas = nil
		o.Deploy = &d
	}
	b, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("hash service %s: %w", s.Name, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
