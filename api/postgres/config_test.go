package postgres

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"
)

func fakeEnv(vars map[string]string, files map[string]string) Env {
	return Env{
		Getenv: func(k string) string { return vars[k] },
		ReadFile: func(name string) ([]byte, error) {
			if c, ok := files[name]; ok {
				return []byte(c), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
	}
}

const canary = "canary-Pw-7f3a9"

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig(fakeEnv(map[string]string{
		"DATABASE_URL":           "postgres://invoicing@db:5432/invoicing?sslmode=disable",
		"DATABASE_PASSWORD_FILE": "/run/secrets/db_password",
	}, map[string]string{"/run/secrets/db_password": canary + "\n"}))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Pool.ConnConfig
	if c.Host != "db" || c.Port != 5432 || c.User != "invoicing" || c.Database != "invoicing" || c.Password != canary {
		t.Fatalf("config %s@%s:%d/%s password %q", c.User, c.Host, c.Port, c.Database, c.Password)
	}
	if c.RuntimeParams["application_name"] != "invoicing-api" {
		t.Fatal("application_name not set")
	}
	if got := Redact(cfg.Pool, "x "+canary+" y"); strings.Contains(got, canary) {
		t.Fatalf("Redact left the password: %s", got)
	}
	// The URL from a file; the password in the URL is overridden.
	cfg, err = ParseConfig(fakeEnv(map[string]string{"DATABASE_URL_FILE": "/u", "DATABASE_PASSWORD": "second"},
		map[string]string{"/u": "postgres://u:first@h:1/d\n"}))
	if err != nil || cfg.Pool.ConnConfig.Password != "second" || cfg.Pool.ConnConfig.Host != "h" {
		t.Fatalf("URL file: %v %+v", err, cfg)
	}
}

func TestParseConfigErrorsHideSecrets(t *testing.T) {
	for name, env := range map[string]Env{
		"bad URL":        fakeEnv(map[string]string{"DATABASE_URL": "postgres://u:" + canary + "@h:notaport/d"}, nil),
		"bad URL scheme": fakeEnv(map[string]string{"DATABASE_URL": "host=h password=" + canary + " port=x"}, nil),
		"both set":       fakeEnv(map[string]string{"DATABASE_PASSWORD": canary, "DATABASE_PASSWORD_FILE": "/p"}, nil),
		"missing file":   fakeEnv(map[string]string{"DATABASE_PASSWORD_FILE": "/run/secrets/nope"}, nil),
	} {
		_, err := ParseConfig(env)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), canary) {
			t.Errorf("%s: error leaks the secret: %v", name, err)
		}
	}
	_, err := ParseConfig(fakeEnv(map[string]string{"DATABASE_PASSWORD_FILE": "/run/secrets/nope"}, nil))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "DATABASE_PASSWORD_FILE") {
		t.Errorf("missing file error should name the variable and cause: %v", err)
	}
}

func TestParseConfigPoolSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		want    int32
		wantErr string
	}{
		{"default", map[string]string{"DATABASE_URL": "postgres://u@h/d"}, DefaultPoolMaxConns(), ""},
		{"default with PG vars", map[string]string{}, DefaultPoolMaxConns(), ""},
		{"env", map[string]string{"DATABASE_URL": "postgres://u@h/d", "DATABASE_POOL_MAX_CONNS": "7"}, 7, ""},
		{"url", map[string]string{"DATABASE_URL": "postgres://u@h/d?sslmode=disable&pool_max_conns=5"}, 5, ""},
		{"keyword/value", map[string]string{"DATABASE_URL": "host=h user=u pool_max_conns=3"}, 3, ""},
		{"min above the default", map[string]string{"DATABASE_URL": "postgres://u@h/d?pool_min_conns=40"}, max(40, DefaultPoolMaxConns()), ""},
		{"password naming the key", map[string]string{"DATABASE_URL": "postgres://u:pool_max_conns=1@h/d"}, DefaultPoolMaxConns(), ""},
		{"both", map[string]string{"DATABASE_URL": "postgres://u@h/d?pool_max_conns=5", "DATABASE_POOL_MAX_CONNS": "7"}, 0, "not both"},
		{"zero", map[string]string{"DATABASE_POOL_MAX_CONNS": "0"}, 0, "positive integer"},
		{"not a number", map[string]string{"DATABASE_POOL_MAX_CONNS": "lots"}, 0, "positive integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig(fakeEnv(tc.vars, nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Pool.MaxConns != tc.want {
				t.Fatalf("MaxConns = %d, want %d", cfg.Pool.MaxConns, tc.want)
			}
		})
	}
	if d := DefaultPoolMaxConns(); d < 16 {
		t.Fatalf("default pool size %d is below 16", d)
	}
}

// DATABASE_TIMEOUT is the Store's budget, the pool's connect timeout and
// the server's statement and idle-in-transaction timeouts; what the URL
// sets itself is kept.
func TestParseConfigTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name              string
		vars              map[string]string
		timeout, connect  time.Duration
		statement, idleTx string
		wantErr           string
	}{
		{"default", map[string]string{"DATABASE_URL": "postgres://u@h/d"}, DefaultTimeout, DefaultTimeout, "5000", "5000", ""},
		{"env", map[string]string{"DATABASE_URL": "postgres://u@h/d", "DATABASE_TIMEOUT": "1500ms"}, 1500 * time.Millisecond, 1500 * time.Millisecond, "1500", "1500", ""},
		{"connect_timeout in the URL", map[string]string{"DATABASE_URL": "postgres://u@h/d?connect_timeout=2", "DATABASE_TIMEOUT": "9s"}, 9 * time.Second, 2 * time.Second, "9000", "9000", ""},
		{"statement_timeout in the URL", map[string]string{"DATABASE_URL": "postgres://u@h/d?statement_timeout=60000"}, DefaultTimeout, DefaultTimeout, "60000", "5000", ""},
		{"in options", map[string]string{"DATABASE_URL": "postgres://u@h/d?options=-c%20idle_in_transaction_session_timeout%3D0"}, DefaultTimeout, DefaultTimeout, "5000", "", ""},
		{"not a duration", map[string]string{"DATABASE_TIMEOUT": "5"}, 0, 0, "", "", "DATABASE_TIMEOUT"},
		{"too short", map[string]string{"DATABASE_TIMEOUT": "1ms"}, 0, 0, "", "", "at least 100ms"},
		{"negative", map[string]string{"DATABASE_TIMEOUT": "-5s"}, 0, 0, "", "", "DATABASE_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig(fakeEnv(tc.vars, nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := cfg.Pool.ConnConfig
			if cfg.Timeout != tc.timeout || c.ConnectTimeout != tc.connect ||
				c.RuntimeParams["statement_timeout"] != tc.statement || c.RuntimeParams["idle_in_transaction_session_timeout"] != tc.idleTx {
				t.Fatalf("timeout %s, connect %s, params %v; want %s, %s, statement %q, idle %q",
					cfg.Timeout, c.ConnectTimeout, c.RuntimeParams, tc.timeout, tc.connect, tc.statement, tc.idleTx)
			}
		})
	}
}
