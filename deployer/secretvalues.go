package deployer

// SecretValues reads every secret a service of st uses, keyed by its name
// under top-level secrets, generating one marked x-invdeploy-generate on
// first use (configDir "" means ConfigDir). It is for engines that keep
// secrets themselves (Swarm). Values are never printed; errors never hold one.
func SecretValues(st *Stack, configDir string) (map[string][]byte, error) {
	p := st.Project
	srcs, err := secretSources(p, configDir)
	if err != nil {
		return nil, err
	}
	values := map[string][]byte{}
	for _, name := range usedSecrets(p) {
		v, err := readSecret(p, srcs[name], true)
		if err != nil {
			return nil, err
		}
		values[name] = v
	}
	return values, nil
}
