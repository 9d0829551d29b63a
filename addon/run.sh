#!/bin/sh
# Start script of the add-on. The bridge does the work itself: its "addon"
# subcommand reads /data/options.json, asks the Supervisor for the MQTT
# broker when mqtt_url is unset, and runs the bridge with the resulting
# EM340_* environment. exec keeps it the process that receives SIGTERM.
set -eu
exec /usr/bin/em340-bridge addon
