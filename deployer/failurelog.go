package deployer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/docker/docker/api/types/container"
)

// A failing container's log is read for its cause, which is rarely in the
// last lines: a service whose database refuses it logs the refusal once or
// twice, then a readiness probe's access-log line every few seconds. So the
// exit-4 error shows the lines that look like errors first, then the tail
// with the probe lines left out (and counted).

const (
	// failureScan is how many log lines are read from the end to find
	// error lines.
	failureScan = 200
	// failureTail is how many lines of the tail are shown.
	failureTail = 20
	// failureErrors is how many error lines (the last ones) are shown.
	failureErrors = 10
)

// FailureLog is a failing container's log, ordered for a person.
type FailureLog struct {
	// Errors are the lines that look like errors (an error, fatal or panic
	// word, "failed", a JSON level of error or warn), oldest first, the
	// last failureErrors of them; a line repeated with only its time
	// changed is shown once with its count.
	Errors []string
	// Tail are the last lines, without probe access-log lines.
	Tail []string
	// Probes counts the probe access-log lines (/readyz, /healthz, /livez)
	// left out of Tail.
	Probes int
	// Scanned is how many lines Errors were looked for in.
	Scanned int
	// Unavailable says why there is no log, when there is none.
	Unavailable string
}

var (
	// probeLine matches an access-log line of a health or readiness probe.
	probeLine = regexp.MustCompile(`(^|[\s"'=])/(readyz|healthz|livez|health|ping)([\s"'?]|$)`)
	// errorWord matches a text line that reports an error.
	errorWord = regexp.MustCompile(`(?i)\b(errors?|fatal|panic|failed|failure|refused|denied|exception)\b|^\s*[EF]\d{4} `)
	// logfmtLevel finds the level of a logfmt line (level=error).
	logfmtTime  = regexp.MustCompile(`(^|\s)(time|ts)=("[^"]*"|\S+)`)
	logfmtLevel = regexp.MustCompile(`(^|\s)(level|lvl)=("?)(\w+)`)
	// leadingTime matches the timestamp many log lines start with, and a
	// process id after it (PostgreSQL's "[35]").
	leadingTime = regexp.MustCompile(`^\s*\[?\d{4}-\d\d-\d\d[T ][0-9:.,]+(Z|[+-]\d\d:?\d\d| ?[A-Z]{3,4})?\]?\s*(\[\d+\]\s*)?`)
)

// readFailureLog orders lines, a container's last lines oldest first.
func readFailureLog(lines []string) FailureLog {
	fl := FailureLog{Scanned: len(lines)}
	type seen struct {
		index, count int
	}
	byKey := map[string]*seen{}
	var errs []string
	var counts []*seen
	var rest []string
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if probeLine.MatchString(l) {
			fl.Probes++
			continue
		}
		rest = append(rest, l)
		key, isErr := classify(l)
		if !isErr {
			continue
		}
		if s, ok := byKey[key]; ok {
			s.count++
			errs[s.index] = l // keep the newest occurrence's text
			continue
		}
		s := &seen{index: len(errs), count: 1}
		byKey[key] = s
		errs = append(errs, l)
		counts = append(counts, s)
	}
	if len(errs) > failureErrors {
		errs, counts = errs[len(errs)-failureErrors:], counts[len(counts)-failureErrors:]
	}
	for i, l := range errs {
		if counts[i].count > 1 {
			l += fmt.Sprintf("  (%d times)", counts[i].count)
		}
		fl.Errors = append(fl.Errors, l)
	}
	if len(rest) > failureTail {
		rest = rest[len(rest)-failureTail:]
	}
	fl.Tail = rest
	if len(rest) == 0 && fl.Probes > 0 {
		// Only probe lines: the last few say more than nothing.
		all := nonEmpty(lines)
		fl.Tail = lastN(all, 5)
		fl.Probes = len(all) - len(fl.Tail)
	}
	return fl
}

// healthResults are the engine's healthcheck log as lines, oldest first:
// "exit N: output" (output on one line, shortened).
func healthResults(log []*container.HealthcheckResult) []string {
	var out []string
	for _, r := range log {
		if r == nil {
			continue
		}
		o := strings.Join(strings.Fields(r.Output), " ")
		if len(o) > 300 {
			o = o[:300] + "..."
		}
		if o == "" {
			o = "(no output)"
		}
		out = append(out, fmt.Sprintf("exit %d: %s", r.ExitCode, o))
	}
	return out
}

// classify says whether line reports an error and gives the key a repeat
// of it has: the line without its time. A JSON line is judged by its level
// alone (its fields may well hold the word "error" on a success).
func classify(line string) (key string, isErr bool) {
	t := strings.TrimSpace(line)
	if strings.HasPrefix(t, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(t), &m) == nil {
			level := ""
			for _, k := range []string{"level", "lvl", "severity", "log.level"} {
				if v, ok := m[k].(string); ok {
					level = strings.ToLower(v)
					break
				}
			}
			for _, k := range []string{"time", "ts", "timestamp", "@timestamp", "t"} {
				delete(m, k)
			}
			b, _ := json.Marshal(m)
			return string(b), errorLevel(level)
		}
	}
	key = leadingTime.ReplaceAllString(t, "")
	if m := logfmtLevel.FindStringSubmatch(t); m != nil {
		key = logfmtTime.ReplaceAllString(key, "")
		return key, errorLevel(strings.ToLower(m[4]))
	}
	return key, errorWord.MatchString(key)
}

// errorLevel reports whether a log level is a warning or worse.
func errorLevel(level string) bool {
	switch level {
	case "error", "err", "fatal", "panic", "critical", "crit", "alert", "emergency", "warn", "warning":
		return true
	}
	return false
}

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func lastN(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// render writes the log for the exit-4 error: the error lines first, then
// the tail, each line indented; name is the container's.
func (fl FailureLog) render(b *strings.Builder, name string) {
	if fl.Unavailable != "" {
		fmt.Fprintf(b, "\nlast %d log lines of %s: %s", failureTail, name, fl.Unavailable)
		return
	}
	if len(fl.Errors) > 0 {
		fmt.Fprintf(b, "\nlog lines of %s that look like errors (of its last %s):", name, countOf(fl.Scanned, "line"))
		for _, l := range fl.Errors {
			b.WriteString("\n  " + l)
		}
	}
	probes := ""
	if fl.Probes > 0 {
		probes = fmt.Sprintf(" (%s left out)", countOf(fl.Probes, "probe access-log line"))
	}
	fmt.Fprintf(b, "\nlast %d log lines of %s%s:", failureTail, name, probes)
	if len(fl.Tail) == 0 {
		b.WriteString("\n  (no output)")
	}
	for _, l := range fl.Tail {
		b.WriteString("\n  " + l)
	}
}
