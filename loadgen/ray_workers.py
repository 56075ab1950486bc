"""Load workers on a Ray cluster: the same worker code as local worker processes, run by Ray actors
spread over the cluster's nodes (`loadgen run --ray auto|local|HOST:PORT`).

Each actor connects back to the driver over TCP (a listening socket on the driver's node address,
with a one-run token) and then speaks the worker protocol of workers.py, so the driver merges
records, journal, live metrics and read lag exactly as for local workers. The prompts each worker
needs travel with its setup (other nodes have no workload cache). Every worker stamps with its
own monotonic clock; the driver measures each clock's offset at start (workers.Worker.
measure_clock) and moves records onto its own clock, and the report gives each offset's error
bound. Ray is an optional dependency: `pip install 'loadgen[ray]'`, on every node.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from typing import Any

from . import __version__
from .errors import LoadgenError, UsageError
from .worker_messages import Hello, WorkerSetup
from .workers import STREAMS_PER_WORKER, Worker, run_worker, send_setup

__all__ = ["RayLauncher", "NAMESPACE"]

#: Ray namespace of loadgen's actors (named loadgen-RUNID-wN, so a test or an operator can find them)
NAMESPACE = "loadgen"
#: seconds for every actor to be placed, start and connect back
CONNECT_TIMEOUT_S = 120.0
#: seconds from an actor's end to cutting its connection if that is still open (a worker that ends
#: normally has closed it by then)
SILENT_LOSS_GRACE_S = 2.0
#: TCP keepalive on the driver-actor connections (idle s, interval s, probes): a peer whose machine
#: vanished answers nothing, so each side notices within about 11 s
KEEPALIVE = (5, 2, 3)


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'loadgen[ray]' (on every node of the cluster)") from None
    return ray


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's keepalive times hold
        for option, value in zip((socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT), KEEPALIVE):
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _check_reachable(address: str) -> None:
    """A HOST:PORT that refuses connections is one error line now, not minutes of Ray's retries."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UsageError(f"cannot reach the Ray cluster at {address} ({reason}): give its head's HOST:PORT "
                         "(`ray start --head` prints it), auto, or local") from None


class _LoadWorker:
    """The actor: connect back to the driver and serve it as a local worker process would."""

    def run(self, host: str, port: int, token: str, index: int) -> str:
        import ray

        sock = socket.create_connection((host, port), timeout=30)
        sock.settimeout(None)
        _keepalive(sock)  # a driver that vanished: the reads fail, the worker cancels and ends
        node = ray.get_runtime_context().get_node_id()[:8]
        sock.sendall(Hello(token, index, __version__, node, f"Ray actor w{index} on node {node} "
                                                           f"({ray.util.get_node_ip_address()}, pid {os.getpid()})")
                     .encode())
        run_worker(sock)
        return "finished"


class RayLauncher:
    """Connects to (or starts) a Ray cluster and starts one actor per share, spread over nodes."""

    def __init__(self, address: str, run_id: str) -> None:
        self.ray = _ray()
        self.run_id = run_id
        if not self.ray.is_initialized():
            _check_reachable(address)
            try:
                self.ray.init(address=None if address == "local" else address, namespace=NAMESPACE,
                              log_to_driver=False, configure_logging=False, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UsageError(f"cannot reach the Ray cluster at {address} ({str(exc).splitlines()[0]}): start "
                                 "one with `ray start --head`, or pass --ray local for a one-machine cluster") \
                    from None
        self._actors: list[Any] = []

    def cluster(self) -> dict:
        """Alive nodes and their CPUs: what --workers defaults from."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"nodes": len(nodes), "cpus": int(sum(n.get("Resources", {}).get("CPU", 0) for n in nodes))}

    def default_workers(self, streams: int) -> int:
        """One per node, more where the streams need them (512 a worker), at most one per CPU."""
        info = self.cluster()
        return max(1, min(max(info["cpus"], 1), max(info["nodes"], -(-streams // STREAMS_PER_WORKER))))

    async def start(self, setups: list[WorkerSetup]) -> list[Worker]:
        ray = self.ray
        host = ray.util.get_node_ip_address()
        token = secrets.token_hex(16)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((host, 0))
        listener.listen(len(setups))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(_LoadWorker)
        refs = []
        for index in range(len(setups)):
            actor = actor_class.options(name=f"loadgen-{self.run_id}-w{index}", scheduling_strategy="SPREAD",
                                        lifetime=None).remote()
            self._actors.append(actor)
            refs.append(actor.run.remote(host, port, token, index))
        workers: dict[int, Worker] = {}
        watches: list[asyncio.Future] = []
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                while len(workers) < len(setups):
                    conn, _ = await loop.sock_accept(listener)
                    _keepalive(conn)
                    reader, writer = await asyncio.open_connection(sock=conn, limit=1 << 28)
                    hello = Hello.decode(await reader.readline())
                    if hello.token != token:
                        writer.close()  # not one of ours
                        continue
                    if hello.version != __version__:
                        raise LoadgenError(f"loadgen {hello.version} runs on a Ray node, {__version__} here: "
                                           "install the same version on every node")
                    index = hello.index
                    watches.append(asyncio.ensure_future(self._watch(writer, refs[index])))
                    workers[index] = Worker(reader, writer, where=hello.where, node=hello.node,
                                            exit_status=self._exit_status(refs[index]),
                                            reap=self._reaper(self._actors[index], refs[index], watches[-1]))
                    send_setup(workers[index], setups[index])
        except TimeoutError:
            raise LoadgenError(f"only {len(workers)} of {len(setups)} Ray workers connected back within "
                               f"{CONNECT_TIMEOUT_S:g} s: the cluster may lack free CPUs, or its nodes cannot reach "
                               f"{host}:{port}") from None
        finally:
            listener.close()
            if len(workers) < len(setups):  # no run will reap these workers
                for watch in watches:
                    watch.cancel()
        return [workers[i] for i in range(len(setups))]

    def _exit_status(self, ref):
        async def status() -> str:
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(ref.future()), 5)
            except TimeoutError:
                return "its connection closed (the actor did not say why)"
            except Exception as exc:  # noqa: BLE001 - Ray's errors for a dead actor or node vary
                return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return f"its actor ended early ({result})"
        return status

    @staticmethod
    async def _watch(writer: asyncio.StreamWriter, ref) -> None:
        """A node that hangs or drops off the network closes no connection, and the driver would wait
        on its worker for ever. Ray's health checks find such a node and fail its actors: when this
        actor's task ends and its connection is still open, the connection is cut, so the worker
        counts as lost (with Ray's error as the reason)."""
        try:
            await asyncio.wrap_future(ref.future())
        except Exception:  # noqa: BLE001 - every way of ending is handled alike
            pass
        await asyncio.sleep(SILENT_LOSS_GRACE_S)
        if not writer.is_closing():
            writer.transport.abort()

    def _reaper(self, actor, ref, watch: asyncio.Future):
        async def reap() -> None:
            watch.cancel()
            try:
                await asyncio.wait_for(asyncio.wrap_future(ref.future()), 10)
            except Exception:  # noqa: BLE001 - gone already, or stuck: killed below either way
                pass
            self.ray.kill(actor, no_restart=True)
        return reap
