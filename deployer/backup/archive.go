package backup

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ArchiveBase is a base backup continuous protection took.
type ArchiveBase struct {
	// Generation is the archive directory: <system id>-<timeline>.
	Generation string `json:"generation"`
	// Stamp names the backup (its start, UTC, 20061225T150405Z).
	Stamp    string    `json:"stamp"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Size     int64     `json:"size"`
	StartLSN string    `json:"start_lsn"`
	EndLSN   string    `json:"end_lsn"`
}

// ArchiveWAL is the WAL continuous protection holds for one generation.
type ArchiveWAL struct {
	Generation string `json:"generation"`
	// First and Last are the oldest and newest segment files (Last may be
	// the .partial one being written).
	First string `json:"first"`
	Last  string `json:"last"`
	// Written is when Last was last written.
	Written time.Time `json:"written"`
	Size    int64     `json:"size"`
}

// Archive is the content of continuous protection's volume.
type Archive struct {
	Volume string        `json:"volume"`
	Bases  []ArchiveBase `json:"base_backups"`
	WAL    []ArchiveWAL  `json:"wal"`
}

// listScript prints one line per base backup and per generation's WAL:
//
//	base <generation> <stamp> <finished> <size> <start lsn> <end lsn>
//	wal <generation> <first> <last> <mtime of last> <size>
const listScript = `cd /backup || exit 0
for g in */; do
	g=${g%/}
	[ -d "$g/base" ] || continue
	for b in $(ls -1 "$g/base" | grep -v '\.partial$' | sort); do
		d=$g/base/$b
		s=$(sed -n 's/.*"Start-LSN": "\([^"]*\)".*/\1/p' "$d/backup_manifest" | head -n 1)
		e=$(sed -n 's/.*"End-LSN": "\([^"]*\)".*/\1/p' "$d/backup_manifest" | tail -n 1)
		echo "base $g $b $(cat "$d/finished" 2>/dev/null || echo -) $(du -sb "$d" | cut -f1) ${s:--} ${e:--}"
	done
	w=$(ls -1 "$g/wal" 2>/dev/null | grep -E '^[0-9A-F]{24}(\.partial)?$' | sort)
	[ -n "$w" ] || continue
	first=$(head -n 1 <<<"$w"); last=$(tail -n 1 <<<"$w")
	echo "wal $g $first $last $(stat -c %Y "$g/wal/$last") $(du -sb "$g/wal" | cut -f1)"
done
`

// parseArchiveList reads listScript's output.
func parseArchiveList(out string) (*Archive, error) {
	a := &Archive{}
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		bad := func(why string) error { return fmt.Errorf("archive listing line %d %q: %s", i+1, line, why) }
		switch {
		case f[0] == "base" && len(f) == 7:
			b := ArchiveBase{Generation: f[1], Stamp: f[2], StartLSN: f[5], EndLSN: f[6]}
			if !genPattern.MatchString(b.Generation) {
				return nil, bad("generation")
			}
			t, err := time.Parse(idLayout, b.Stamp)
			if err != nil {
				return nil, bad("stamp")
			}
			b.Started = t
			if f[3] != "-" {
				if b.Finished, err = time.Parse(time.RFC3339, f[3]); err != nil {
					return nil, bad("finished")
				}
			}
			if b.Size, err = strconv.ParseInt(f[4], 10, 64); err != nil || b.Size < 0 {
				return nil, bad("size")
			}
			if !lsnPattern.MatchString(b.StartLSN) || !lsnPattern.MatchString(b.EndLSN) {
				return nil, bad("WAL range")
			}
			a.Bases = append(a.Bases, b)
		case f[0] == "wal" && len(f) == 6:
			w := ArchiveWAL{Generation: f[1], First: f[2], Last: f[3]}
			if !genPattern.MatchString(w.Generation) || !segPattern.MatchString(w.First) || !segPattern.MatchString(w.Last) {
				return nil, bad("segment names")
			}
			sec, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil || sec < 0 {
				return nil, bad("mtime")
			}
			w.Written = time.Unix(sec, 0).UTC()
			if w.Size, err = strconv.ParseInt(f[5], 10, 64); err != nil || w.Size < 0 {
				return nil, bad("size")
			}
			a.WAL = append(a.WAL, w)
		default:
			return nil, bad("unknown line")
		}
	}
	sort.SliceStable(a.Bases, func(i, j int) bool { return a.Bases[i].Stamp < a.Bases[j].Stamp })
	return a, nil
}

// ListArchive reads continuous protection's volume of pg (nil when the
// volume does not exist).
func (b *Backups) ListArchive(ctx context.Context, pg *Postgres) (*Archive, error) {
	vol := pg.ArchiveVolume()
	ok, err := b.volumeExists(ctx, vol)
	if err != nil || !ok {
		return nil, err
	}
	out, code, err := b.run(ctx, pg.Project, helper{
		Name: fmt.Sprintf("%s-backup-list-%d", pg.Project, b.now().UnixNano()), Image: pg.Image, User: pg.User,
		Cmd:    []string{"bash", "-c", listScript},
		Mounts: mountSpecs{{vol, archiveMount, true}}.mounts(),
	})
	if err != nil {
		return nil, fmt.Errorf("list the archive %s: %w", vol, err)
	}
	if code != 0 {
		return nil, fmt.Errorf("list the archive %s: exit %d: %s", vol, code, strings.TrimSpace(out))
	}
	a, err := parseArchiveList(out)
	if err != nil {
		return nil, err
	}
	a.Volume = vol
	return a, nil
}

// walOf is the WAL entry of generation gen.
func (a *Archive) walOf(gen string) *ArchiveWAL {
	for i := range a.WAL {
		if a.WAL[i].Generation == gen {
			return &a.WAL[i]
		}
	}
	return nil
}

// pick is the base backup a restore to t starts from: the newest one that
// finished before t (latest: the newest of all).
func (a *Archive) pick(t Target) *ArchiveBase {
	for i := len(a.Bases) - 1; i >= 0; i-- {
		b := a.Bases[i]
		if b.Finished.IsZero() {
			continue
		}
		if t.Latest || b.Finished.Before(t.Time) {
			return &a.Bases[i]
		}
	}
	return nil
}
