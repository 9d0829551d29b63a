#!/bin/sh
# mosquitto-init (docker-compose.yml): on the first run, make the broker's
# logins with random passwords. Runs as root in the Mosquitto image, with
# the compose folder's ./secrets at /secrets:
#   mosquitto/passwd                 the broker's password file (hashes), uid 1883
#   mosquitto/healthcheck.password   for the broker's health check probe
#   em340-bridge/em340-bridge.password  the bridge's, readable by uid 65532 only
#   homeassistant.password           for Home Assistant's MQTT integration
set -eu
umask 077
dir=/secrets
if [ -s "$dir/mosquitto/passwd" ]; then
  echo "mosquitto-init: $dir/mosquitto/passwd exists, keeping the logins"
  exit 0
fi
mkdir -p "$dir/mosquitto" "$dir/em340-bridge"
# 32 hex digits: 128 random bits, and nothing a shell or URL would mangle.
random() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
create=-c # the first user creates the file
for user in em340-bridge homeassistant healthcheck; do
  password=$(random)
  mosquitto_passwd $create -b "$dir/mosquitto/passwd.new" "$user" "$password"
  create=
  case $user in
    em340-bridge) file=$dir/em340-bridge/em340-bridge.password ;;
    homeassistant) file=$dir/homeassistant.password ;;
    healthcheck) file=$dir/mosquitto/healthcheck.password ;;
  esac
  printf '%s\n' "$password" > "$file"
done
chown 65532:65532 "$dir/em340-bridge/em340-bridge.password"
chmod 0755 "$dir/mosquitto" "$dir/em340-bridge"
chown -R 1883:1883 "$dir/mosquitto"
# Last, so that a run cut short starts over.
mv "$dir/mosquitto/passwd.new" "$dir/mosquitto/passwd"
echo "mosquitto-init: made the logins em340-bridge, homeassistant and healthcheck;"
echo "mosquitto-init: Home Assistant's password is in secrets/homeassistant.password"
