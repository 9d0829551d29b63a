// Package containertest proves the container files on a real Docker engine:
// the image, its health check, the compose file's serial access and its
// broker login. It has only tests; see engine_test.go for what they need.
package containertest
