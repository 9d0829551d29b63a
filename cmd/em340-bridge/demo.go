package main

import (
	"context"
	"fmt"
	"io"
)

// demo is filled in by the demo work (issue 7).
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "em340-bridge demo: not available in this build")
	return 2
}
