package backup

import (
	"fmt"
	"strings"
	"time"
)

// Target is the point a restore goes back to: the latest state the
// backups hold, or a moment in time.
type Target struct {
	// Latest restores everything the backups hold.
	Latest bool
	// Time is the moment (Latest false): transactions committed after it
	// are not restored.
	Time time.Time
}

func (t Target) String() string {
	if t.Latest {
		return "latest"
	}
	return t.Time.UTC().Format(time.RFC3339Nano)
}

// localLayouts are the --to forms without a zone, read in the local zone.
var localLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04", "2006-01-02 15:04"}

// ParseTarget reads restore's --to: "latest"; an RFC 3339 time
// (2026-12-07T10:42:00Z, fractions and offsets allowed); a date and time
// without a zone (2026-12-07 10:42[:05], the local zone of loc); or a
// duration before now ("-15m", "-1h30m"). A time after now is refused:
// nothing can be restored from the future.
func ParseTarget(s string, now time.Time, loc *time.Location) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, fmt.Errorf("--to: empty; want latest, a time such as 2026-12-07T10:42:00Z, or -15m")
	}
	if s == "latest" {
		return Target{Latest: true}, nil
	}
	var t time.Time
	var err error
	switch {
	case strings.HasPrefix(s, "-"):
		d, derr := time.ParseDuration(s[1:])
		if derr != nil || d <= 0 || strings.HasPrefix(s[1:], "-") || strings.HasPrefix(s[1:], "+") {
			return Target{}, fmt.Errorf("--to %q: want a duration before now such as -15m", s)
		}
		t = now.Add(-d)
	default:
		t, err = time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t, err = parseLocal(s, loc)
		}
		if err != nil {
			return Target{}, fmt.Errorf("--to %q: want latest, an RFC 3339 time such as 2026-12-07T10:42:00Z, a local time such as \"2026-12-07 10:42\", or -15m", s)
		}
	}
	if t.After(now) {
		return Target{}, fmt.Errorf("--to %s is in the future", t.UTC().Format(time.RFC3339))
	}
	if t.Year() < 2000 {
		return Target{}, fmt.Errorf("--to %s: before the year 2000", t.UTC().Format(time.RFC3339))
	}
	return Target{Time: t.UTC()}, nil
}

func parseLocal(s string, loc *time.Location) (time.Time, error) {
	var err error
	for _, l := range localLayouts {
		var t time.Time
		if t, err = time.ParseInLocation(l, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

// pgTime is t as PostgreSQL's recovery_target_time reads it (microseconds,
// UTC offset).
func pgTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.999999+00")
}
