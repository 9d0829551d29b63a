// Package compose holds the docker compose deployment; its test loads it offline.
package compose
