"""nginx config templates: the origin backend, and nginx as the reference reverse proxy.

Everything nginx writes (pid, error log, temp files, the canary access log) goes under
the run's directory, so nothing outside it is touched and several runs never collide.
``keepalive_requests`` is raised everywhere: nginx's default of 1000 would close the
benchmark's connections every 1000 requests, which graylane never does.
"""

from __future__ import annotations

from pathlib import Path

# ~100 bytes, the body of the small-response scenarios.
SMALL_BODY = (
    "graylane benchmark: a small response body of about one hundred bytes, served by nginx with return.\n"
)
STATIC_NAME = "16k.bin"
STATIC_SIZE = 16 * 1024
POST_ANSWER = "posted\n"
KEEPALIVE_REQUESTS = 10_000_000
VERSION_HEADER = "X-Graylane-Version"


def _preamble(run_dir: Path, name: str, workers: int) -> str:
    temp = run_dir / f"{name}-temp"
    return f"""\
worker_processes {workers};
daemon off;
master_process on;
pid {run_dir}/{name}.pid;
error_log {run_dir}/{name}-error.log warn;
events {{
    worker_connections 4096;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 75s;
    server_tokens off;
"""


def write_static(root: Path) -> Path:
    """The 16 KiB file the backend serves (world-readable: nginx workers drop root)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    path = root / STATIC_NAME
    path.write_bytes(bytes(i % 251 for i in range(STATIC_SIZE)))
    path.chmod(0o644)
    return path


def backend_conf(run_dir: Path, ports: dict[str, int], static_root: Path) -> str:
    """The origin: one server block per version port (``{"v1": 9101, "v2": 9102}``), each with
    ``/small`` (return 200, ~100 bytes), ``/16k`` (a static file) and ``/post`` (reads a body,
    answers small). One worker; the caller pins it to its CPU."""
    servers = []
    for version, port in ports.items():
        servers.append(f"""\
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type text/plain;
        add_header X-Backend-Version {version};
        location = /small {{ return 200 "{SMALL_BODY.rstrip()}\\n"; }}
        location = /16k {{ root {static_root}; try_files /{STATIC_NAME} =404; }}
        location = /post {{
            client_body_buffer_size 16k;
            client_max_body_size 1m;
            return 200 "{POST_ANSWER.rstrip()}\\n";
        }}
        location / {{ return 200 "{SMALL_BODY.rstrip()}\\n"; }}
    }}
""")
    return _preamble(run_dir, "backend", 1) + "".join(servers) + "}\n"


def proxy_conf(
    run_dir: Path, name: str, port: int, upstreams: dict[str, int], *, workers: int = 1, canary: bool = False
) -> str:
    """nginx as the reference reverse proxy: an ``upstream`` block with ``keepalive 64`` per
    version, HTTP/1.1 to the upstream with an empty Connection header.

    ``canary`` is nginx's equivalent of graylane's realistic canary route: gray users by an
    X-User-ID regex, otherwise a 90/10 ``split_clients`` on a hash of X-User-ID (sticky), the
    chosen version in a response header, and a buffered access log to a file.
    """
    blocks = []
    for version, upstream_port in upstreams.items():
        blocks.append(f"""\
    upstream {version} {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests {KEEPALIVE_REQUESTS};
    }}
""")
    if canary:
        first, *rest = upstreams
        second = rest[0] if rest else first
        blocks.append(f"""\
    split_clients "release-${{http_x_user_id}}" $split_version {{
        90% {first};
        * {second};
    }}
    map $http_x_user_id $chosen_version {{
        "~^user_gray_[0-9]+$" {second};
        default $split_version;
    }}
    log_format graylane_like '$time_iso8601 $request_id $remote_addr "$request" $status '
                             '$request_length $bytes_sent $request_time $upstream_response_time '
                             '$chosen_version $upstream_addr';
""")
        target = "$chosen_version"
        extra = (
            f"        access_log {run_dir}/{name}-access.log graylane_like buffer=64k flush=1s;\n"
            f"        add_header {VERSION_HEADER} $chosen_version always;\n"
        )
    else:
        target = next(iter(upstreams))
        extra = ""
    server = f"""\
    server {{
        listen 127.0.0.1:{port} backlog=4096{" reuseport" if workers > 1 else ""};
        location / {{
            proxy_pass http://{target};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{extra}        }}
    }}
"""
    return _preamble(run_dir, name, workers) + "".join(blocks) + server + "}\n"
