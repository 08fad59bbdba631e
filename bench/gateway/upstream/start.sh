#!/bin/sh
# Started by Tideway with $PORT set: renders nginx.conf.tpl into a directory of this
# instance's own and execs nginx in the foreground, so the instance's process is nginx's
# master (SIGTERM from Tideway stops it). Debian installs nginx in /usr/sbin, which is not on
# every user's PATH.
set -eu
PATH="$PATH:/usr/sbin:/sbin"
run_dir="$(pwd)/run/${TIDEWAY_INSTANCE:-local}"
mkdir -p "$run_dir/logs" "$run_dir/tmp"
sed -e "s|__PORT__|$PORT|g" \
    -e "s|__WORKERS__|${NGINX_WORKERS:-1}|g" \
    nginx.conf.tpl >"$run_dir/nginx.conf"
exec nginx -p "$run_dir/" -c "$run_dir/nginx.conf" -e stderr -g 'daemon off;'
