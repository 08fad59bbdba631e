# nginx as the reference reverse proxy of the gateway bench, rendered by bench/gateway.sh:
# __LISTEN__, __UPSTREAM__ and __WORKERS__ are replaced. Every path is relative to the
# prefix (-p), a temp directory of the bench's own.
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

    keepalive_requests 1000000;
    keepalive_timeout 75s;

    upstream bench {
        server __UPSTREAM__;
        # Pooled keep-alive connections to the upstream, as a gateway keeps them.
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen __LISTEN__;
        server_name _;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
