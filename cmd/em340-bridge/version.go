package main

import "runtime/debug"

// version is set at build time with -ldflags "-X main.version=…" (the
// release workflow and the Dockerfile do); empty means "ask the build".
var version string

// buildVersion is the version to report: the stamped one, else what the Go
// toolchain recorded: the module version for `go install …@v1.2.3`, else
// the VCS revision of a build from a checkout (with -dirty when it had
// uncommitted changes), else "dev".
func buildVersion(stamped string, info *debug.BuildInfo, ok bool) string {
	if stamped != "" {
		return stamped
	}
	if !ok || info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision == "" {
		return "dev"
	}
	if modified == "true" {
		revision += "-dirty"
	}
	return revision
}

// currentVersion is buildVersion for this binary.
func currentVersion() string {
	info, ok := debug.ReadBuildInfo()
	return buildVersion(version, info, ok)
}
