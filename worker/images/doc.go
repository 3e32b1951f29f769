// Package images serves a node's image store over gRPC (the Images service of
// proto/image.proto) and moves images between nodes without a registry.
//
// Distribution flow, for a task whose image its node lacks:
//
//  1. The executor calls the runtime's Prepare; the containerd runtime looks
//     for the image locally, then tries to pull it from its registry.
//  2. When the registry has no such image (or none is reachable), the runtime
//     calls its runtime.ImageSource, which is Source here.
//  3. Source asks a manager for Export(name, search_cluster=true).
//  4. The manager streams the image from its own store if it has it;
//     otherwise it asks every ready node in turn for Export(name) (without
//     search_cluster, so a request never travels further) and relays the
//     first node's stream that has the image. No node having it is NotFound.
//  5. The runtime Imports the relayed tar into its store and carries on as if
//     the pull had worked.
//
// Images travel as tars in 1 MiB chunks and are never held whole in memory:
// Load pipes the chunks straight into Store.Import and Export writes the
// store's tar straight into the stream.
//
// Errors are this package's or the Store's own; they become gRPC status codes
// only in Server's methods, and Source turns them back into errors wrapping
// runtime.ErrImageNotFound.
package images
