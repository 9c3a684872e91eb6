#!/usr/bin/env bash
# The exchange checks in coordinator mode (patent Fig. 2b).
SS_MODE=coordinator exec bash "$(dirname "$0")/ns_exchange.sh"
