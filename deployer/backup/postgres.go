package backup

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// defaultPGDATA is the official image's data directory.
const defaultPGDATA = "/var/lib/postgresql/data"

// Postgres is a stack's PostgreSQL service as backup and restore see it.
type Postgres struct {
	Project string
	Service string
	Image   string
	// User is the container's user (the service's user:, "" for the image's).
	User string
	// Role is the superuser (POSTGRES_USER, default postgres).
	Role string
	// DataDir is PGDATA inside the container; Mount the target of the
	// named volume that holds it (DataDir or a parent of it).
	DataDir string
	Mount   string
	// VolumeKey is the compose key of that volume, Volume its engine name.
	VolumeKey string
	Volume    string
	// Continuous is the continuous protection settings (nil: off).
	Continuous *Continuous
}

// ArchiveVolume is the engine name of the volume continuous protection
// writes WAL and base backups to.
func (pg *Postgres) ArchiveVolume() string { return pg.Project + "_" + archiveKey(pg.Service) }

// FindPostgres picks the PostgreSQL service of p: service when named, else
// the one with x-invdeploy backup settings, else the only service whose
// image is postgres. Its data must live in a named volume.
func FindPostgres(p *types.Project, service string) (*Postgres, error) {
	name := service
	if name == "" {
		var marked, byImage []string
		for _, sn := range p.ServiceNames() {
			s := p.Services[sn]
			if _, ok, _ := continuousOf(s); ok {
				marked = append(marked, sn)
			}
			if isPostgresImage(s.Image) {
				byImage = append(byImage, sn)
			}
		}
		switch {
		case len(marked) == 1:
			name = marked[0]
		case len(marked) > 1:
			return nil, fmt.Errorf("services %s all have x-invdeploy backup: name one with --service", strings.Join(marked, ", "))
		case len(byImage) == 1:
			name = byImage[0]
		case len(byImage) == 0:
			return nil, fmt.Errorf("project %s has no PostgreSQL service (an image named postgres): name it with --service", p.Name)
		default:
			sort.Strings(byImage)
			return nil, fmt.Errorf("project %s has several PostgreSQL services (%s): name one with --service", p.Name, strings.Join(byImage, ", "))
		}
	}
	s, ok := p.Services[name]
	if !ok {
		return nil, fmt.Errorf("project %s has no service %s", p.Name, name)
	}
	pg := &Postgres{Project: p.Name, Service: name, Image: s.Image, User: s.User, Role: "postgres", DataDir: defaultPGDATA}
	if v := s.Environment["POSTGRES_USER"]; v != nil && *v != "" {
		pg.Role = *v
	}
	if v := s.Environment["PGDATA"]; v != nil && *v != "" {
		pg.DataDir = path.Clean(*v)
	}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeVolume || v.Source == "" {
			continue
		}
		t := path.Clean(v.Target)
		if t == pg.DataDir || strings.HasPrefix(pg.DataDir, t+"/") {
			vc, ok := p.Volumes[v.Source]
			if !ok {
				return nil, fmt.Errorf("services.%s.volumes: volume %s is not defined", name, v.Source)
			}
			if vc.External {
				return nil, fmt.Errorf("services.%s: the data volume %s is external: invdeploy restores only volumes it manages", name, vc.Name)
			}
			pg.Mount, pg.VolumeKey, pg.Volume = t, v.Source, vc.Name
		}
	}
	if pg.Volume == "" {
		return nil, fmt.Errorf("services.%s keeps its data (%s) in no named volume: nothing to back up or restore into", name, pg.DataDir)
	}
	c, on, err := continuousOf(s)
	if err != nil {
		return nil, err
	}
	if on {
		pg.Continuous = &c
	}
	return pg, nil
}

// isPostgresImage reports whether ref names a postgres image (postgres:15,
// docker.io/library/postgres, registry/x/postgres@sha256:...).
func isPostgresImage(ref string) bool {
	name := ref
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	return name == "postgres"
}
