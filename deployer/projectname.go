package deployer

import "github.com/compose-spec/compose-go/v2/loader"

// CheckProjectName applies compose's one rule for project names to a name a
// user gave (-p, COMPOSE_PROJECT_NAME): lowercase letters, digits, '-' and
// '_', starting with a letter or digit. A name outside it is an invalid
// request (exit 2), never silently rewritten: "../H1SEC" and "h1sec" are not
// the same project. Names compose-go derives itself (a directory's) are
// normalised by compose-go as docker compose does.
func CheckProjectName(name string) error {
	if name == "" || loader.NormalizeProjectName(name) != name {
		return &InvalidError{Err: loader.InvalidProjectNameErr(name)}
	}
	return nil
}
