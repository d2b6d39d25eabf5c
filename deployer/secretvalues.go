package deployer

// SecretValues reads every secret a service of st uses, keyed by its name
// under top-level secrets, generating one marked x-invdeploy-generate on
// first use (configDir "" means ConfigDir). It is for engines that keep
// secrets themselves (Swarm). Values are never printed; errors never hold one.
func SecretValues(st *Stack, configDir string) (map[string][]byte, error) {
	return readSecrets(st.Project, configDir, true)
}

// PeekSecretValues is SecretValues without generating: a generated secret
// not made yet is left out (a dry run shows it as new).
func PeekSecretValues(st *Stack, configDir string) (map[string][]byte, error) {
	return readSecrets(st.Project, configDir, false)
}
