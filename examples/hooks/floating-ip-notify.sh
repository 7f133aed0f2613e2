#!/bin/sh
# keepalived notify hook for clouds without VRRP between instances: when this LB becomes MASTER, move the
# provider's floating IP to this instance through the provider's API. keepalived calls it as
#   floating-ip-notify.sh <GROUP|INSTANCE> <name> <MASTER|BACKUP|FAULT> <priority>
# Configure (on each LB, e.g. in /etc/default/webinfra-floating-ip, mode 0600):
#   FIP_API=https://api.example-cloud.test/v1   FIP_ID=...   FIP_TOKEN=...   INSTANCE_ID=...
# The request below is a generic REST call: adapt the path and body to your provider's floating-IP API.
set -eu
state="${3:-}"
[ "$state" = "MASTER" ] || exit 0
. /etc/default/webinfra-floating-ip
curl --fail --silent --show-error --max-time 10 \
  -X POST "$FIP_API/floating_ips/$FIP_ID/actions/assign" \
  -H "Authorization: Bearer $FIP_TOKEN" -H "Content-Type: application/json" \
  -d "{\"server\": \"$INSTANCE_ID\"}" \
  | logger -t webinfra-floating-ip
