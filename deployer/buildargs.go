package deployer

import "regexp"

// urlUserinfo matches the user[:password]@ part of a URL anywhere in a value:
// up to the last @ of the authority, as net/url reads it, and never past a
// comma or pipe (GOPROXY is a comma- or pipe-separated list of URLs).
var urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s,|]*@`)

// stripUserinfo removes the userinfo of every URL in v, and reports whether
// there was any.
func stripUserinfo(v string) (string, bool) {
	out := urlUserinfo.ReplaceAllString(v, "$1")
	return out, out != v
}

// safeBuildArgs strips credentials from URLs in build args before they reach
// the engine: the classic builder records every build arg in the image
// history (docker history shows them), so a GOPROXY=https://user:token@host
// would ship with the image. Each stripped arg is named in a warning, never
// its value.
func (d *Deployer) safeBuildArgs(service string, args map[string]*string) {
	for _, k := range sortedKeys(args) {
		if args[k] == nil {
			continue
		}
		if v, stripped := stripUserinfo(*args[k]); stripped {
			args[k] = &v
			d.out.Event("warning: build %s: build arg %s held credentials in a URL (user:password@); they were removed because build args are recorded in the image history. Use a proxy or mirror the build reaches without credentials", service, k)
		}
	}
}
