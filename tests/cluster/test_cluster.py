"""Past one machine: the store on PostgreSQL, two API servers, three runner hosts, one Temporal.

The hosts are network namespaces on one bridge (:mod:`tests.hosts`):

* ``db``: PostgreSQL (a cluster of the test's own, on the host's address) and
  the managed Temporal (``server start --only temporal``, on every address of
  the host with ``--insecure-bind``: the dev server has no TLS);
* ``api1``, ``api2``: ``--only stigmer-server`` on the host's address, with TLS
  from the test's CA, both on the one database;
* ``run1``, ``run2``: ``--only agent-runner`` in local mode, with a runner
  token made by ``stigmer token create``;
* the root namespace: a third runner host, in docker mode (a container), and
  nginx in front of both API servers: plain on loopback for the test's CLI, and
  with TLS on the bridge for the three runner hosts (so no runner depends on
  one API server).

Every host has the stack's key (``stack_key_path``), as a deployment copies it.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, free_ports
from tests.fixtures_pg import PgCluster, create_cluster, drop_cluster
from tests.hosts import Cluster, Host, wait_until
from tests.tls_front import Pki, nginx_binary

API_PORT = 7234
#: The name both API servers' certificates also carry: the one nginx checks upstream.
LB_NAME = "api.stigmer.test"
TEMPORAL_PORT = 7233


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, runner_image: str
) -> Iterator[dict[str, Any]]:
    import os
    import shutil

    if os.getuid() != 0 or not shutil.which("nsenter"):
        why = "the test hosts are network namespaces: root and nsenter are needed"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    base = tmp_path_factory.mktemp("cluster")
    net = Cluster(base / "hosts")
    pg: PgCluster | None = None
    lb: subprocess.Popen[bytes] | None = None
    try:
        db, api1, api2 = net.add("db"), net.add("api1"), net.add("api2")
        run1, run2 = net.add("run1"), net.add("run2")
        root = net.root
        subnet = f"{root.address.rsplit('.', 1)[0]}.0/24"

        # PostgreSQL on the db host, reached over the bridge with a password
        pg = create_cluster(
            free_port(), listen=db.address, hba=f"host all all {subnet} scram-sha-256"
        )
        started = pg.ctl("start", "nsenter", f"--net=/run/netns/{db.netns}")
        assert started.returncode == 0, started.stderr
        database = pg.database()

        pki = Pki(base / "pki")
        key_file = base / "stack-key.json"  # made once, and given to every host
        made_key = root.cli(
            "config", "rotate-key", env=root.env | {"STIGMER_STACK_KEY_PATH": str(key_file)}
        )
        assert made_key.returncode == 0 and key_file.exists(), made_key.stderr
        temporal = f"{db.address}:{TEMPORAL_PORT}"
        common = {
            "STIGMER_TEMPORAL_ADDRESS": temporal,
            "STIGMER_STACK_KEY_PATH": str(key_file),
            "STIGMER_API_TLS_CA_PATH": str(pki.ca),
            "STIGMER_START_TIMEOUT": "120",
        }
        db.env |= {
            "STIGMER_TEMPORAL_BIND": "0.0.0.0",  # every address of the db host
            "STIGMER_TEMPORAL_PORT": str(TEMPORAL_PORT),
            "STIGMER_TEMPORAL_UI_PORT": "8233",
            "STIGMER_STACK_KEY_PATH": str(key_file),
        }
        db.start("--only", "temporal", "--insecure-bind")
        for api in (api1, api2):
            cert = pki.issue(api.name, server=True, ips=(api.address,), dns=(LB_NAME,))
            api.env |= common | {
                "STIGMER_SERVER_BIND": api.address,
                "STIGMER_SERVER_PORT": str(API_PORT),
                "STIGMER_SERVER_TLS_CERT_PATH": str(cert.cert),
                "STIGMER_SERVER_TLS_KEY_PATH": str(cert.key),
                "STIGMER_DATABASE_URL": database.url,
            }
        for api in (api1, api2):  # both migrate the one database (one after the other)
            api.start("--only", "stigmer-server")
        admin = (api1.home / "credentials" / "api-token").read_text().strip()

        # the test's CLI, in the root namespace, through nginx in front of both APIs
        # and, with TLS on the bridge, for the runner hosts: no runner depends on one API
        lb_port, lb_tls_port = free_ports(2)
        lb_cert = pki.issue("lb", server=True, ips=(root.address,), dns=(LB_NAME,))
        lb = start_lb(
            base / "nginx", lb_port, [api1, api2], pki.ca, tls=(root.address, lb_tls_port, lb_cert)
        )
        lb_url = f"https://{root.address}:{lb_tls_port}"
        client = {
            "STIGMER_API_URL": f"http://127.0.0.1:{lb_port}",
            "STIGMER_API_TOKEN": admin,
        }
        made = root.cli("token", "create", "--role", "runner", "--label", "run hosts", env=client)
        assert made.returncode == 0, made.stderr
        runner_token = made.stdout.strip()
        for run in (run1, run2):
            run.env |= common | {
                "STIGMER_API_URL": lb_url,
                "STIGMER_API_TOKEN": runner_token,
                "STIGMER_RUNNER_MODE": "local",
            }
            run.start("--only", "agent-runner")
        root.env |= common | {
            "STIGMER_API_URL": lb_url,
            "STIGMER_API_TOKEN": runner_token,
            "STIGMER_RUNNER_MODE": "docker",
            "STIGMER_RUNNER_IMAGE": runner_image,
            "STIGMER_RUNNER_CONTAINER": f"stigmer-agent-runner-cluster-{net.id}",
            "STIGMER_OFFLINE": "1",
        }
        root.start("--only", "agent-runner")
        agent = base / "where.yaml"
        agent.write_text(WHERE.format(db=db.address))
        applied = root.cli("apply", "-f", str(agent), env=client)
        assert applied.returncode == 0, applied.stderr
        yield {
            "net": net,
            "client": client,
            "pg": pg,
            "db": db,
            "apis": (api1, api2),
            "runners": (run1, run2, root),
            "ca": pki.ca,
            "base": base,
        }
    except BaseException:
        print(net.logs())  # the hosts' logs go with them: show them before they do
        raise
    finally:
        if lb is not None:
            lb.terminate()
            lb.wait(10)
        net.close()
        if pg is not None:
            drop_cluster(pg)
        subprocess.run(
            ["docker", "rm", "-f", f"stigmer-agent-runner-cluster-{net.id}"], capture_output=True
        )


#: An agent whose shell step says which host it ran on (its address toward the db host).
WHERE = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata: {{name: where}}
spec:
  instructions: Say where you run.
  model: test
  tools: [shell]
  local_shell: true
  test_script:
    - tool: shell
      args:
        command: >-
          sleep {{{{ message }}}}; python3 -c "import socket; s = socket.socket(socket.AF_INET,
          socket.SOCK_DGRAM); s.connect(('{db}', 9)); print('on', s.getsockname()[0])"
    - answer: "{{{{ last }}}}"
"""


def start_lb(
    folder: Path,
    port: int,
    apis: tuple[Host, ...] | list[Host],
    ca: Path,
    tls: tuple[str, int, Any] | None = None,
) -> Any:
    """nginx on 127.0.0.1:``port``, balancing over the API servers (https upstreams).

    With ``tls=(address, port, issued)`` it also listens there with that certificate.
    Events are posted with ids the store deduplicates, so a POST of events cut off
    by a dying API server is safely sent again to the other (``non_idempotent``);
    other POSTs are not.
    """
    folder.mkdir(parents=True, exist_ok=True)
    temp = "\n    ".join(
        f"{k}_temp_path {folder / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    upstreams = "\n        ".join(
        f"server {a.address}:{API_PORT} max_fails=1 fail_timeout=5s;" for a in apis
    )
    tls_listen = ""
    if tls:
        address, tls_port, issued = tls
        tls_listen = (
            f"listen {address}:{tls_port} ssl; "
            f"ssl_certificate {issued.cert}; ssl_certificate_key {issued.key};"
        )
    (folder / "nginx.conf").write_text(
        f"""
daemon off;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    {temp}
    upstream api {{
        {upstreams}
    }}
    server {{
        listen 127.0.0.1:{port};
        {tls_listen}
        proxy_ssl_trusted_certificate {ca};
        proxy_ssl_verify on;
        proxy_ssl_name {LB_NAME};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_read_timeout 300s;
        proxy_connect_timeout 2s;
        location / {{
            proxy_pass https://api;
            proxy_next_upstream error timeout http_502 http_503;
        }}
        location ~ ^/v1/executions/[^/]+/events$ {{
            proxy_pass https://api;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
        }}
    }}
}}
"""
    )
    proc = subprocess.Popen(
        [nginx_binary(), "-c", str(folder / "nginx.conf"), "-p", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from tests.conftest import port_listening

    wait_until(lambda: port_listening(port), 10, "nginx")
    return proc


def api_client(cluster: dict[str, Any], api: Host | None = None) -> dict[str, str]:
    """The CLI's env for one API server (https, the CA), or the load balancer."""
    if api is None:
        return dict(cluster["client"])
    return {
        "STIGMER_API_URL": f"https://{api.address}:{API_PORT}",
        "STIGMER_API_TOKEN": cluster["client"]["STIGMER_API_TOKEN"],
        "STIGMER_API_TLS_CA_PATH": str(cluster["ca"]),
    }


def cli(cluster: dict[str, Any], *args: str, api: Host | None = None, timeout: float = 240) -> Any:
    root: Host = cluster["net"].root
    return root.cli(*args, env=api_client(cluster, api), timeout=timeout)


def events(
    cluster: dict[str, Any], execution_id: str, api: Host | None = None
) -> list[dict[str, Any]]:
    out = cli(cluster, "execution", "logs", execution_id, "--output", "json", api=api)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def assert_clean(evs: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), [e["seq"] for e in evs]
    assert len({e["event_id"] for e in evs}) == len(evs), "an event is repeated"


def submit(cluster: dict[str, Any], message: str, api: Host | None) -> str:
    proc = cli(cluster, "run", "where", message, "--detach", api=api)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(proc.stdout.strip())


def finished(cluster: dict[str, Any], execution_id: str) -> dict[str, Any]:
    follow = cli(cluster, "execution", "logs", "-f", execution_id, timeout=300)
    got = cli(cluster, "execution", "get", execution_id, "-o", "json")
    assert got.returncode == 0, got.stderr
    ex: dict[str, Any] = json.loads(got.stdout)
    assert follow.returncode == 0, (ex, follow.stdout[-2000:], follow.stderr[-2000:])
    return ex


def test_hundred_executions_through_two_api_servers_run_on_every_runner_host(
    cluster: dict[str, Any],
) -> None:
    api1, api2 = cluster["apis"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(lambda i: submit(cluster, "0.5", api1 if i % 2 else api2), range(100)))
    with ThreadPoolExecutor(max_workers=20) as pool:
        done = list(pool.map(lambda i: finished(cluster, i), ids))
    assert [d["phase"] for d in done] == ["COMPLETED"] * 100, [d["phase"] for d in done]
    where = {d["output"].split()[-1] for d in done}
    hosts = {h.address for h in cluster["runners"]}
    assert where == hosts, f"ran on {sorted(where)}, runner hosts are {sorted(hosts)}"
    for i in ids[:100:7]:
        assert_clean(events(cluster, i))


def test_a_run_started_through_one_api_server_is_followed_through_the_other(
    cluster: dict[str, Any],
) -> None:
    api1, api2 = cluster["apis"]
    ex_id = submit(cluster, "2", api1)
    follow = cli(cluster, "execution", "logs", "-f", ex_id, "--output", "json", api=api2)
    assert follow.returncode == 0, follow.stderr
    seen = [json.loads(line) for line in follow.stdout.splitlines() if line.strip()]
    assert_clean(seen)
    assert seen == events(cluster, ex_id, api=api1)
    assert seen[-1]["payload"]["phase"] == "COMPLETED"


def test_the_runner_host_of_a_running_tool_is_killed_and_another_finishes(
    cluster: dict[str, Any],
) -> None:
    run1, run2, root = cluster["runners"]
    netns_runners = (run1, run2)
    root.cli("server", "stop", check=True)  # the tool runs on a namespace host, to kill it whole
    try:
        ex_id = submit(cluster, "10", None)
        started = wait_until(
            lambda: any(
                e["type"] == "tool_call" and e["payload"]["status"] == "started"
                for e in events(cluster, ex_id)
            ),
            60,
            "the tool to start",
        )
        assert started
        time.sleep(1)
        busy = [h for h in netns_runners if _runs_tool(h)]
        assert len(busy) == 1, "the tool runs on no host, or on two"
        busy[0].kill_all()
        ex = finished(cluster, ex_id)
        assert ex["phase"] == "COMPLETED"
        other = next(h for h in netns_runners if h is not busy[0])
        assert ex["output"].strip() == f"on {other.address}"
        evs = events(cluster, ex_id)
        assert_clean(evs)
        done = [
            e for e in evs if e["type"] == "tool_call" and e["payload"]["status"] == "completed"
        ]
        assert len(done) == 1, evs
        busy[0].start("--only", "agent-runner")
    finally:
        root.start("--only", "agent-runner")


def _runs_tool(host: Host) -> bool:
    """Whether a `sleep` of the shell tool runs among this host's processes."""
    for p in host.processes():
        try:
            for child in p.children(recursive=True):
                if child.name() == "sleep":
                    return True
        except Exception:
            continue
    return False


def test_an_api_server_killed_while_runs_stream_loses_no_event(cluster: dict[str, Any]) -> None:
    api1, _ = cluster["apis"]
    ids = [submit(cluster, "4", None) for _ in range(6)]
    results: dict[str, Any] = {}

    def follow(ex_id: str) -> None:
        results[ex_id] = cli(cluster, "execution", "logs", "-f", ex_id, "--output", "json")

    threads = [threading.Thread(target=follow, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    time.sleep(2)
    api1.kill_all()  # the followers going through it are cut off, and reconnect
    for t in threads:
        t.join(300)
    try:
        for ex_id in ids:
            proc = results[ex_id]
            assert proc.returncode == 0, proc.stderr[-2000:]
            seen = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
            assert_clean(seen)
            assert seen == events(cluster, ex_id), "the follower missed or repeated events"
            assert seen[-1]["payload"]["phase"] == "COMPLETED"
    finally:
        api1.start("--only", "stigmer-server")


def test_postgres_restarts_while_fifty_run(cluster: dict[str, Any]) -> None:
    pg: PgCluster = cluster["pg"]
    db: Host = cluster["db"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(lambda _: submit(cluster, "2", None), range(50)))
    restart = pg.ctl("restart", "nsenter", f"--net=/run/netns/{db.netns}")
    assert restart.returncode == 0, restart.stderr
    with ThreadPoolExecutor(max_workers=20) as pool:
        done = list(pool.map(lambda i: finished(cluster, i), ids))
    assert [d["phase"] for d in done] == ["COMPLETED"] * 50
    for i in ids:
        evs = events(cluster, i)
        assert_clean(evs)
        assert (
            len(
                [
                    e
                    for e in evs
                    if e["type"] == "tool_call" and e["payload"]["status"] == "completed"
                ]
            )
            == 1
        )


def test_an_api_server_beyond_loopback_needs_tls(cluster: dict[str, Any]) -> None:
    net: Cluster = cluster["net"]
    host = net.add("bare")
    host.env |= {
        "STIGMER_SERVER_BIND": host.address,
        "STIGMER_TEMPORAL_ADDRESS": f"{cluster['db'].address}:{TEMPORAL_PORT}",
        "STIGMER_STACK_KEY_PATH": str(cluster["base"] / "stack-key.json"),
    }
    refused = host.cli("server", "start", "--only", "stigmer-server")
    assert refused.returncode == 2, refused.stderr
    assert "server_tls_cert_path" in refused.stderr and "--insecure-bind" in refused.stderr
    assert host.processes() == []


def test_a_host_without_the_stack_key_is_refused(cluster: dict[str, Any], tmp_path: Path) -> None:
    net: Cluster = cluster["net"]
    host = net.add("nokey")
    host.env |= {
        "STIGMER_TEMPORAL_ADDRESS": f"{cluster['db'].address}:{TEMPORAL_PORT}",
        "STIGMER_API_URL": f"https://{cluster['apis'][0].address}:{API_PORT}",
        "STIGMER_API_TOKEN": "not-used",
        "STIGMER_STACK_KEY_PATH": str(tmp_path / "missing" / "stack-key.json"),
    }
    refused = host.cli("server", "start", "--only", "agent-runner")
    assert refused.returncode == 2, refused.stderr
    assert "stack_key_path" in refused.stderr and "rotate-key" in refused.stderr
    assert not (tmp_path / "missing" / "stack-key.json").exists(), "no key of its own is made"
    assert host.processes() == []


def test_a_runner_host_without_a_token_is_refused(cluster: dict[str, Any]) -> None:
    host = cluster["net"].add("notoken")
    host.env |= {
        "STIGMER_TEMPORAL_ADDRESS": f"{cluster['db'].address}:{TEMPORAL_PORT}",
        "STIGMER_API_URL": f"https://{cluster['apis'][0].address}:{API_PORT}",
        "STIGMER_STACK_KEY_PATH": str(cluster["base"] / "stack-key.json"),
    }
    refused = host.cli("server", "start", "--only", "agent-runner")
    assert refused.returncode == 2, refused.stderr
    assert "api_token_file" in refused.stderr and "token create" in refused.stderr
    assert host.processes() == []


def test_restart_keeps_the_role_the_host_was_started_with(cluster: dict[str, Any]) -> None:
    run1: Host = cluster["runners"][0]
    restarted = run1.cli("server", "restart", timeout=240)
    assert restarted.returncode == 0, restarted.stderr
    assert "keeping the last start's flags: only=agent-runner" in restarted.stderr
    status = json.loads(run1.cli("server", "status", "--json").stdout)
    here = {c["name"]: c for c in status["components"]}
    assert set(here) == {"temporal", "agent-runner"}, here  # the external Temporal, watched
    assert here["agent-runner"]["state"] == "running"
