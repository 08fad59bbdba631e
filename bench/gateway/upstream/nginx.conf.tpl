# The upstream of the gateway bench, rendered by start.sh: __PORT__ and __WORKERS__ are
# replaced. Every path is relative to the prefix (-p), a directory of the instance's own.
worker_processes __WORKERS__;
pid nginx.pid;
error_log stderr warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    # Keep client connections (wrk's and the proxies' pooled ones) open for the whole run:
    # the default of 1000 requests per connection would make every target reconnect.
    keepalive_requests 1000000;
    keepalive_timeout 75s;

    server {
        listen 127.0.0.1:__PORT__;
        server_name _;
        default_type text/plain;
        location / {
            return 200 "hello, world\n";
        }
    }
}
