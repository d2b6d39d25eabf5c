package deployer

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// GeneratedSecret returns the value invdeploy generated and keeps for a
// secret of the stack (one marked x-invdeploy-generate, such as the bundled
// stack's db_password and grafana_admin), for `invdeploy secret show`. It
// never generates: a value not generated yet, or one the user supplies (a
// file, or the environment variable set), is an error that says where it
// comes from instead. Errors never hold the value.
func GeneratedSecret(st *Stack, name string) ([]byte, error) {
	p := st.Project
	srcs, err := secretSources(p, "")
	if err != nil {
		return nil, err
	}
	src, ok := srcs[name]
	if !ok {
		names := make([]string, 0, len(srcs))
		for n, s := range srcs {
			if s.Generate {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		// A name the stack does not have, or a secret invdeploy does not
		// generate, is a wrong argument (exit 2).
		return nil, Invalidf("%s has no secret %q; generated secrets: %s", st.Describe(), name, strings.Join(names, ", "))
	}
	switch {
	case !src.Generate && src.File != "":
		return nil, Invalidf("secret %s is read from %s, which you keep: invdeploy shows only values it generated", name, src.File)
	case !src.Generate:
		return nil, Invalidf("secret %s comes from the environment variable %s, which you set: invdeploy shows only values it generated", name, src.Env)
	}
	if v, set := p.Environment[src.Env]; set && v != "" {
		return nil, fmt.Errorf("secret %s comes from the environment variable %s, which is set (so nothing was generated): invdeploy shows only values it generated", name, src.Env)
	}
	if _, err := os.Stat(src.Stored); os.IsNotExist(err) {
		return nil, fmt.Errorf("secret %s of project %s is not generated yet: the first up that starts a service using it generates it", name, p.Name)
	}
	return readSecret(p, src, false)
}

// IsGenerated reports whether secret name of st is one invdeploy generates
// (x-invdeploy-generate), whose value secret show prints.
func IsGenerated(st *Stack, name string) bool {
	srcs, err := secretSources(st.Project, "")
	if err != nil {
		return false
	}
	return srcs[name].Generate
}
