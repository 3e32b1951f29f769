// Package mesh is shoal's routing mesh: an in-process proxy on every node
// that accepts a service's published port and balances connections over the
// service's ready tasks on any node, keeping the client's address.
package mesh
