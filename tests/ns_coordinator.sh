#!/usr/bin/env bash
# The exchange checks in coordinator mode (patent Fig. 2b).
SS_MODE=coordinator SS_TEST_NAME=ns_coordinator exec bash "$(dirname "$0")/ns_exchange.sh"
