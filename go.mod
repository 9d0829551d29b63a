module github.com/em340-bridge/em340-bridge

go 1.26.8

require (
	github.com/avast/retry-go/v4 v4.7.0 // indirect
	github.com/caarlos0/env/v11 v11.4.2 // indirect
	github.com/creack/pty v1.1.24 // indirect
	github.com/eclipse/paho.golang v0.23.0 // indirect
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	github.com/goburrow/serial v0.1.0 // indirect
	github.com/simonvetter/modbus v1.6.4 // indirect
	go.bug.st/serial v1.8.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
