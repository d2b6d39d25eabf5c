package main

import (
	"fmt"
	"strings"

	"github.com/invdeploy/invdeploy/deployer"
)

// plural is "1 container", "2 containers": n and noun, plural when n != 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// containerSummary is the state part of up's summary line: how many
// containers run, split so that the parts add up to that number (healthy,
// starting, unhealthy, without a healthcheck), then the one-shots that
// completed and any in another state; a note when the engine's view lags
// up's own probes. sts are as WithReadiness gives them.
func containerSummary(sts []deployer.ContainerStatus) string {
	var running, healthy, starting, unhealthy, noCheck, completed, lagging int
	other := map[string]int{}
	var otherStates []string
	for _, c := range sts {
		switch c.State {
		case "running":
			running++
			switch c.Health {
			case "healthy":
				healthy++
			case "":
				noCheck++
			case "unhealthy":
				unhealthy++
			default:
				starting++
			}
			if c.EngineHealth != "" {
				lagging++
			}
		case "completed":
			completed++
		default:
			if other[c.State] == 0 {
				otherStates = append(otherStates, c.State)
			}
			other[c.State]++
		}
	}
	var s string
	if len(sts) == 0 {
		return "no containers"
	}
	if running == len(sts) && healthy == running {
		s = plural(running, "container") + ", all healthy"
		if running == 1 {
			s = "1 container, healthy"
		}
	} else {
		parts := []string{plural(running, "container") + " running"}
		for _, p := range []struct {
			n    int
			what string
		}{{healthy, "healthy"}, {starting, "starting"}, {unhealthy, "unhealthy"}, {noCheck, "without a healthcheck"}} {
			if p.n > 0 && p.n != running {
				parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
			} else if p.n > 1 {
				parts = append(parts, "all "+p.what)
			} else if p.n == 1 {
				parts = append(parts, p.what)
			}
		}
		if completed > 0 {
			parts = append(parts, fmt.Sprintf("%d completed", completed))
		}
		for _, st := range otherStates {
			parts = append(parts, fmt.Sprintf("%d %s", other[st], st))
		}
		s = strings.Join(parts, ", ")
	}
	if lagging > 0 {
		s += fmt.Sprintf(" (the engine still reports %d as starting: up ran the healthcheck itself before the engine's interval came round)", lagging)
	}
	return s
}

// removedSummary is what down removed: "removed 1 container, 1 network,
// 0 volumes".
func removedSummary(res *deployer.DownResult) string {
	return fmt.Sprintf("removed %s, %s, %s", plural(res.Containers, "container"), plural(res.Networks, "network"), plural(res.Volumes, "volume"))
}
