#!/bin/bash
# The payload's entry point when a test gives vm.Options.Script: exports the
# test's parameters (the file params.env, one NAME=VALUE a line, as vm.Options.Env
# holds them; no quoting needed, none is interpreted) and runs the test's
# script, main.sh, in /payload, where lib.sh is too.
set -u
while IFS= read -r line; do
	[ -n "$line" ] || continue
	export "${line%%=*}=${line#*=}"
done <params.env
exec bash ./main.sh
