package deployer

// Labels on every object invdeploy creates. The com.docker.compose.* keys
// keep `docker compose ps` and docker-compose able to see our containers.
const (
	LabelProject         = "com.docker.compose.project"
	LabelService         = "com.docker.compose.service"
	LabelContainerNumber = "com.docker.compose.container-number"
	LabelOneOff          = "com.docker.compose.oneoff"
	LabelConfigHash      = "com.docker.compose.config-hash"
	LabelDependsOn       = "com.docker.compose.depends_on" // service:condition:restart,...
	LabelNetwork         = "com.docker.compose.network"
	LabelVolume          = "com.docker.compose.volume"
	LabelManagedBy       = "io.invdeploy.managed-by"
	LabelVersion         = "io.invdeploy.version"
)
