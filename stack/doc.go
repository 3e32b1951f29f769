// Package stack turns compose files into a DeployStackRequest: it loads
// them with compose-go (interpolation, .env, merging of several files) and
// maps every supported key onto service and network specs, naming each key
// it cannot honour. It is pure: no cluster, no network.
package stack
