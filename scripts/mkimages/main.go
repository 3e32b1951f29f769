// Command mkimages builds shoal's demo apps (testdata/apps) for each version
// and packs each into a docker-archive image tar that `shoal image load -i`
// (or `ctr import`) takes, so demos and tests need no registry:
//
//	go run ./scripts/mkimages -out bin/images [-version v1,v2]
//
// writes OUT/<app>-<version>.tar named <app>:<version>. The output is
// reproducible: the same sources and Go toolchain give byte-identical tars,
// and a tar whose bytes would not change is left alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
)

func main() {
	out := flag.String("out", "", "directory to write the image tars to (required)")
	versions := flag.String("version", "v1,v2", "comma-separated versions to build; each app reports its version and v2 looks different")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimages -out DIR [-version v1,v2] [-q]")
		os.Exit(2)
	}
	var vs []string
	for _, v := range strings.Split(*versions, ",") {
		if v = strings.TrimSpace(v); v != "" {
			vs = append(vs, v)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	results, err := Build(ctx, *out, vs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimages:", err)
		os.Exit(1)
	}
	if !*quiet {
		for _, r := range results {
			state := "unchanged"
			if r.Written {
				state = "written"
			}
			fmt.Printf("%s\t%s\t%s\n", r.Name, r.Path, state)
		}
	}
}
