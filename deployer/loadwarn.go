package deployer

import (
	"io"
	"sync"

	"github.com/sirupsen/logrus"
)

// loaderLog serialises loads: compose-go logs through logrus's global
// logger, so capturing its output is process-wide.
var loaderLog sync.Mutex

// warningHook collects the messages of logrus entries at warning level or
// above.
type warningHook struct{ msgs *[]string }

func (h warningHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h warningHook) Fire(e *logrus.Entry) error {
	*h.msgs = append(*h.msgs, e.Message)
	return nil
}

// captureLoaderWarnings runs load with logrus's output silenced and its
// warnings appended to warns: compose-go's own warnings (e.g. "the
// attribute `version` is obsolete") then reach the user as invdeploy
// warning: lines instead of logrus lines on stderr.
func captureLoaderWarnings[T any](warns *[]string, load func() (T, error)) (T, error) {
	loaderLog.Lock()
	defer loaderLog.Unlock()
	std := logrus.StandardLogger()
	out, hooks := std.Out, std.ReplaceHooks(logrus.LevelHooks{})
	std.SetOutput(io.Discard)
	std.AddHook(warningHook{msgs: warns})
	defer func() {
		std.SetOutput(out)
		std.ReplaceHooks(hooks)
	}()
	return load()
}

// addLoaderWarnings records compose-go's warnings, first among the
// warnings, each once.
func (s *Stack) addLoaderWarnings(warns []string) {
	s.LoaderWarnings = unique(append([]string{}, warns...))
	// Unique: Up prints the stack's warnings, then those preflight adds
	// after them (Check keeps the stack's as its prefix).
	s.Warnings = unique(append(append([]string{}, s.LoaderWarnings...), s.Warnings...))
}
