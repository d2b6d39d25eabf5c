// Package httpguard bounds what clients can hold of the HTTP servers
// invdeploy puts in front of a service (the rollout proxy and the Swarm
// edge), so that no client behaviour can grow their memory without bound:
// a cap on open connections (an idle one is closed to make room for a new
// one, else the newcomer gets an immediate 503), deadlines for reading a
// request's header and body, for idle keep-alive connections and for a
// response write that makes no progress, a header size limit, and RFC 9457
// problem answers with Retry-After for the servers' own errors.
package httpguard

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Limits are the bounds of one server. Defaults() gives the values
// invdeploy ships; FromEnv and Bind let the operator change them.
type Limits struct {
	// MaxConns is the most client connections open at once. A new one
	// beyond it closes the connection idle the longest (a keep-alive
	// connection idle for 250 ms, or one silent since it was accepted for
	// 2 s) or, when every connection is busy, is answered 503 at once.
	MaxConns int
	// ReadHeaderTimeout bounds reading a request's header.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included: a client
	// that sends its body slower is cut (408).
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request for this
	// long.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose client has not taken a
	// response write for this long (each write gets its own deadline, so a
	// long download or event stream that makes progress is not cut).
	WriteTimeout time.Duration
	// UpstreamTimeout bounds the wait for the upstream's response header
	// once the request is sent (504 after it).
	UpstreamTimeout time.Duration
	// MaxHeaderBytes bounds a request's header.
	MaxHeaderBytes int
}

// Defaults are the limits invdeploy ships: sized so that MaxConns
// connections that each hold a request to the upstream (about 60 KB each,
// measured) fit in the 128 MiB its proxy containers get, with the read
// timeout of the invoicing API itself (30 s).
func Defaults() Limits {
	return Limits{
		MaxConns:          1024,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		WriteTimeout:      30 * time.Second,
		UpstreamTimeout:   30 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
}

// setting is one limit's names (flag, environment suffix) and field.
type setting struct {
	flag, env, usage string
	conns            *int
	dur              *time.Duration
}

func (l *Limits) settings() []setting {
	return []setting{
		{flag: "max-conns", env: "MAX_CONNS", usage: "most client connections open at once (beyond: the longest-idle one is closed, else 503)", conns: &l.MaxConns},
		{flag: "read-header-timeout", env: "READ_HEADER_TIMEOUT", usage: "time a client has to send a request's header", dur: &l.ReadHeaderTimeout},
		{flag: "read-timeout", env: "READ_TIMEOUT", usage: "time a client has to send a whole request, body included (slower: 408)", dur: &l.ReadTimeout},
		{flag: "idle-timeout", env: "IDLE_TIMEOUT", usage: "keep-alive connections with no request for this long are closed", dur: &l.IdleTimeout},
		{flag: "write-timeout", env: "WRITE_TIMEOUT", usage: "a client that takes no response bytes for this long is cut", dur: &l.WriteTimeout},
		{flag: "upstream-timeout", env: "UPSTREAM_TIMEOUT", usage: "wait for the upstream's response header (then 504)", dur: &l.UpstreamTimeout},
	}
}

// FlagSet is the part of flag.FlagSet and pflag.FlagSet that Bind uses.
type FlagSet interface {
	IntVar(p *int, name string, value int, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
}

// Bind adds a flag for each limit, its default the current value (so call
// FromEnv first: a flag beats the environment, which beats the default).
func (l *Limits) Bind(fs FlagSet, envPrefix string) {
	for _, s := range l.settings() {
		usage := s.usage + " (env " + envPrefix + s.env + ")"
		if s.conns != nil {
			fs.IntVar(s.conns, s.flag, *s.conns, usage)
		} else {
			fs.DurationVar(s.dur, s.flag, *s.dur, usage)
		}
	}
}

// FromEnv reads envPrefix+NAME for each limit (INVDEPLOY_PROXY_MAX_CONNS,
// INVDEPLOY_PROXY_READ_TIMEOUT, ...); an empty or unset variable keeps the
// current value.
func (l *Limits) FromEnv(envPrefix string, getenv func(string) string) error {
	for _, s := range l.settings() {
		name := envPrefix + s.env
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		if s.conns != nil {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s=%q: want a number of connections such as 1024", name, v)
			}
			*s.conns = n
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s=%q: want a duration such as 30s", name, v)
		}
		*s.dur = d
	}
	return nil
}

// Validate refuses limits that would not bound anything.
func (l Limits) Validate() error {
	if l.MaxConns < 1 || l.MaxConns > 1<<20 {
		return fmt.Errorf("max-conns %d: want 1..%d", l.MaxConns, 1<<20)
	}
	for _, s := range l.settings() {
		if s.dur != nil && (*s.dur < 100*time.Millisecond || *s.dur > 24*time.Hour) {
			return fmt.Errorf("%s %s: want a duration from 100ms to 24h", s.flag, *s.dur)
		}
	}
	if l.MaxHeaderBytes < 1<<10 {
		return fmt.Errorf("max header bytes %d: want at least 1 KiB", l.MaxHeaderBytes)
	}
	return nil
}

// Args are the flags that give a server these limits, for a command line
// (the flags Bind adds; only those that differ from Defaults).
func (l Limits) Args() []string {
	def := Defaults()
	ds := def.settings()
	var args []string
	for i, s := range l.settings() {
		switch {
		case s.conns != nil && *s.conns != *ds[i].conns:
			args = append(args, "--"+s.flag, strconv.Itoa(*s.conns))
		case s.dur != nil && *s.dur != *ds[i].dur:
			args = append(args, "--"+s.flag, s.dur.String())
		}
	}
	return args
}

// Server returns a server of h within l, and ln wrapped in the
// connection cap (serve the server on the returned listener). h gets each
// response write its own deadline (WriteTimeout) and the request body's
// read error remembered (see BodyReadError).
func (l Limits) Server(h http.Handler, ln net.Listener) (*http.Server, *Listener) {
	cl := NewListener(ln, l.MaxConns)
	srv := &http.Server{
		Handler:           writeDeadlines(h, l.WriteTimeout),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ConnState:         cl.ConnState,
	}
	return srv, cl
}
